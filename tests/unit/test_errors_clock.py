"""The error tree and the injected clocks."""

from __future__ import annotations

import re
import time

import pytest

from authgate import clock as clock_module
from authgate import errors
from authgate.clock import FixedClock, SystemClock
from authgate.errors import AuthgateError

ERROR_CLASSES = [getattr(errors, name) for name in errors.__all__]


def _documented_tree() -> dict[str, tuple[str | None, str]]:
    """Read the tree drawn in the module docstring: name -> (parent name, code)."""
    tree: dict[str, tuple[str | None, str]] = {}
    stack: list[tuple[int, str]] = []  # (column of the name, name)
    for line in (errors.__doc__ or "").splitlines():
        match = re.fullmatch(r"([\s│├└─]*?)([A-Z]\w*)(?:\s+([a-z_]+))?\s*", line)
        if match is None or (not stack and match.group(2) != "AuthgateError"):
            continue
        column = len(match.group(1))
        while stack and stack[-1][0] >= column:
            stack.pop()
        parent = stack[-1][1] if stack else None
        tree[match.group(2)] = (parent, match.group(3) or "authgate_error")
        stack.append((column, match.group(2)))
    return tree


def test_all_lists_only_exception_classes() -> None:
    assert ERROR_CLASSES
    for cls in ERROR_CLASSES:
        assert isinstance(cls, type)
        assert issubclass(cls, AuthgateError)
        assert issubclass(cls, Exception)


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_code_is_snake_case_and_own(cls: type[AuthgateError]) -> None:
    code = cls.code
    assert isinstance(code, str)
    assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", code), code
    # Each class states its own code rather than inheriting its parent's.
    assert "code" in vars(cls)


def test_codes_are_unique() -> None:
    codes = [cls.code for cls in ERROR_CLASSES]
    assert len(codes) == len(set(codes))


def test_every_authgate_error_subclass_is_exported() -> None:
    def walk(cls: type) -> set[type]:
        found = set()
        for sub in cls.__subclasses__():
            if sub.__module__ == errors.__name__:
                found.add(sub)
            found |= walk(sub)
        return found

    assert walk(AuthgateError) | {AuthgateError} == set(ERROR_CLASSES)


def test_tree_matches_documentation() -> None:
    tree = _documented_tree()
    assert {cls.__name__ for cls in ERROR_CLASSES} == set(tree)
    for name, (parent, code) in tree.items():
        cls = getattr(errors, name)
        assert cls.code == code, name
        if parent is None:
            assert cls is AuthgateError
        else:
            assert cls.__bases__ == (getattr(errors, parent),), name


def test_documented_tree_parser_reads_the_codec_branch() -> None:
    # Guards the parser above: these relations are the API contract of the codec.
    tree = _documented_tree()
    assert tree["TokenTooLarge"] == ("MalformedToken", "token_too_large")
    assert tree["MalformedToken"] == ("InvalidToken", "malformed_token")
    assert tree["LifetimeTooLong"] == ("InvalidClaims", "lifetime_too_long")
    assert tree["UnsupportedAlgorithm"] == ("InvalidKey", "unsupported_algorithm")
    assert tree["InvalidToken"] == ("AuthgateError", "invalid_token")
    assert tree["ConfigurationError"] == ("AuthgateError", "invalid_configuration")


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_reason_and_context_are_stored(cls: type[AuthgateError]) -> None:
    err = cls("the detail", kid="abc", limit=8192)
    assert err.reason == "the detail"
    assert str(err) == "the detail"
    assert err.context == {"kid": "abc", "limit": 8192}
    assert err.code == cls.code
    assert repr(err) == f"{cls.__name__}(code={cls.code!r}, reason='the detail')"
    with pytest.raises(AuthgateError) as excinfo:
        raise err
    assert excinfo.value is err


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_reason_defaults_to_code(cls: type[AuthgateError]) -> None:
    err = cls()
    assert err.reason == cls.code
    assert str(err) == cls.code
    assert err.context == {}


def test_context_is_per_instance() -> None:
    a = errors.UnknownKey("x", kid="a")
    b = errors.UnknownKey("y")
    assert a.context == {"kid": "a"}
    assert b.context == {}


def test_catching_by_branch() -> None:
    with pytest.raises(errors.InvalidClaims) as excinfo:
        raise errors.TokenExpired("expired", exp=1.0)
    assert excinfo.value.code == "token_expired"
    with pytest.raises(errors.InvalidToken) as excinfo2:
        raise errors.TokenTooLarge("big")
    assert excinfo2.value.code == "token_too_large"
    assert not issubclass(errors.InvalidKey, errors.InvalidToken)
    assert not issubclass(errors.ConfigurationError, errors.InvalidToken)


# --- clocks ------------------------------------------------------------------------------------


def test_fixed_clock_default_and_start() -> None:
    assert FixedClock().now() == 1_700_000_000.0
    clock = FixedClock(1234)
    assert clock.now() == 1234.0
    assert isinstance(clock.now(), float)
    assert clock.now() == clock.now()


def test_fixed_clock_advance() -> None:
    clock = FixedClock(1000.0)
    clock.advance(60)
    assert clock.now() == 1060.0
    clock.advance(0.5)
    assert clock.now() == 1060.5
    clock.advance(-10.5)
    assert clock.now() == 1050.0


def test_fixed_clock_set() -> None:
    clock = FixedClock(1000.0)
    clock.set(5)
    assert clock.now() == 5.0
    assert isinstance(clock.now(), float)
    clock.set(2_000_000_000)
    assert clock.now() == 2_000_000_000.0


def test_system_clock_tracks_time() -> None:
    clock = SystemClock()
    before = time.time()
    now = clock.now()
    after = time.time()
    assert isinstance(now, float)
    assert before <= now <= after


@pytest.mark.parametrize("cls", [SystemClock, FixedClock])
def test_clocks_satisfy_the_protocol(cls: type) -> None:
    # Clock is a structural Protocol: a clock is anything with a callable now().
    instance = cls()
    assert callable(instance.now)
    assert isinstance(instance.now(), float)
    assert "now" in vars(clock_module.Clock)
