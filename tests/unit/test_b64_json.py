"""The private codec helpers: canonical base64url and strict JSON."""

from __future__ import annotations

import base64
import json
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authgate.errors import MalformedToken
from authgate.jose import _b64, _json
from authgate.jose._b64 import b64decode, b64decode_checked, b64encode, b64encode_str
from authgate.jose._json import MAX_DEPTH, dumps, loads_object

ALPHABET = string.ascii_letters + string.digits + "-_"


def _malformed(excinfo: pytest.ExceptionInfo[MalformedToken]) -> None:
    assert type(excinfo.value) is MalformedToken
    assert excinfo.value.code == "malformed_token"


# --- base64url ------------------------------------------------------------------------------


@pytest.mark.parametrize("length", range(0, 40))
def test_b64_round_trip_every_length(length: int) -> None:
    data = bytes((i * 37 + 11) % 256 for i in range(length))
    encoded = b64encode(data)
    assert b"=" not in encoded
    assert encoded == base64.urlsafe_b64encode(data).rstrip(b"=")
    assert b64encode_str(data) == encoded.decode("ascii")
    assert b64decode(encoded) == data
    assert b64decode(encoded.decode("ascii")) == data
    assert b64decode_checked(encoded) == data


def test_b64_uses_url_alphabet() -> None:
    data = b"\xfb\xff\xbf"  # standard base64 would be "+/+/"
    assert b64encode(data) == b"-_-_"
    assert b64decode("-_-_") == data


@pytest.mark.parametrize(
    "segment",
    [
        "AA==",  # padding
        "AAA=",
        "AA=",
        "+/+/",  # standard alphabet
        "ab/c",
        "ab+c",
        "ab cd",  # whitespace
        "abcd\n",
        "\nabcd",
        "ab\tc",
        "ab.c",
        "abc%",
        "abcé",  # non-ASCII
        "\uff41\uff42\uff43\uff44",  # full-width letters
        "A",  # impossible length (1 mod 4)
        "AAAAA",
    ],
)
def test_b64_refuses_non_canonical(segment: str) -> None:
    with pytest.raises(MalformedToken) as excinfo:
        b64decode(segment)
    _malformed(excinfo)
    if segment.isascii():
        with pytest.raises(MalformedToken) as excinfo:
            b64decode(segment.encode("ascii"))
        _malformed(excinfo)


@pytest.mark.parametrize("value", [None, 12, bytearray(b"AAAA"), memoryview(b"AAAA"), ["AAAA"]])
def test_b64_refuses_other_types(value: object) -> None:
    with pytest.raises(MalformedToken) as excinfo:
        b64decode(value)  # type: ignore[arg-type]
    _malformed(excinfo)


@pytest.mark.parametrize("prefix", ["", "AAAA", "QUJD"])
@pytest.mark.parametrize("rem", [2, 3])
def test_b64_stray_bits_exhaustive(prefix: str, rem: int) -> None:
    """A 2- or 3-character tail decodes only when its unused low bits are zero.

    Canonical means: decoding and re-encoding gives back the same text.
    """
    head = "Q" if rem == 2 else "QU"
    accepted = set()
    for last in ALPHABET:
        segment = prefix + head + last
        try:
            decoded = b64decode(segment)
        except MalformedToken:
            # The lenient stdlib decoder would have taken it: the refusal is ours.
            lenient = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
            assert b64encode_str(lenient) != segment
        else:
            assert b64encode_str(decoded) == segment
            accepted.add(last)
    assert accepted == (set("AQgw") if rem == 2 else set("AEIMQUYcgkosw048"))


@given(st.binary(max_size=64))
def test_b64_property_round_trip(data: bytes) -> None:
    assert b64decode(b64encode_str(data)) == data


@given(st.text(alphabet=ALPHABET, max_size=24))
def test_b64_property_only_canonical_decodes(segment: str) -> None:
    try:
        decoded = b64decode(segment)
    except MalformedToken:
        if len(segment) % 4 != 1:
            lenient = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
            assert b64encode_str(lenient) != segment
    else:
        assert b64encode_str(decoded) == segment


def test_b64_module_exposes_helpers() -> None:
    assert _b64.b64decode is b64decode


# --- strict JSON ------------------------------------------------------------------------------


def test_json_accepts_a_plain_object() -> None:
    assert loads_object(b'{"a":1,"b":[true,false,null],"c":{"d":"e"},"f":1.5}') == {
        "a": 1,
        "b": [True, False, None],
        "c": {"d": "e"},
        "f": 1.5,
    }
    assert loads_object(b"{}") == {}
    assert loads_object(b' \n{"a" : 1}\t') == {"a": 1}


def test_json_accepts_utf8_and_surrogate_pairs() -> None:
    assert loads_object('{"name":"Zoë ✓"}'.encode()) == {"name": "Zoë ✓"}
    assert loads_object(b'{"e":"\\ud83d\\ude00"}') == {"e": "\U0001f600"}
    assert loads_object(b'{"e":"\\u00e9"}') == {"e": "é"}


@pytest.mark.parametrize(
    "data",
    [
        b'\xef\xbb\xbf{"a":1}',  # BOM
        '{"a":1}'.encode("utf-16"),
        '{"a":1}'.encode("utf-16-le"),
        '{"a":1}'.encode("utf-32"),
        b'{"a":"\xff"}',  # invalid UTF-8
        b'{"a":"\xc0\xaf"}',  # overlong encoding
        b'{"a":"\xed\xa0\x80"}',  # encoded surrogate
        b'{"a":1,"a":2}',  # duplicate member
        b'{"a":1,"a":1}',
        b'{"x":{"a":1,"a":2}}',  # nested duplicate
        b'{"x":[{"a":1,"a":2}]}',
        b'{"a":1,"\\u0061":2}',  # duplicate through an escape
        b'{"a":NaN}',
        b'{"a":Infinity}',
        b'{"a":-Infinity}',
        b'{"a":1e999}',  # overflows to inf
        b'{"a":-1e999}',
        b'{"a":"\\ud800"}',  # lone surrogate
        b'{"a":"\\udc00x"}',
        b'{"\\ud800":1}',
        b'{"a":["\\ud800"]}',
        b"[]",  # not an object
        b"[{}]",
        b'"a"',
        b"1",
        b"null",
        b"true",
        b"",
        b"{",
        b'{"a":1',
        b'{"a":1}{"b":2}',
        b'{"a":1} x',
        b"{'a':1}",
        b'{"a":01}',
        b'{"a":1,}',
        b'{"a":"\x01"}',  # raw control character
        b'{"a":' + b"9" * 5000 + b"}",  # over Python's int digit limit
    ],
)
def test_json_refuses(data: bytes) -> None:
    with pytest.raises(MalformedToken) as excinfo:
        loads_object(data)
    _malformed(excinfo)


def _nested(depth: int, *, opener: str = "{", leaf: str = "1") -> str:
    """A top-level object whose nesting depth (top level counts as 1) is ``depth``."""
    text = leaf
    for level in range(depth - 1):
        kind = opener if opener != "mix" else "[{"[level % 2]
        text = f'{{"k":{text}}}' if kind == "{" else f"[{text}]"
    return f'{{"k":{text}}}'


@pytest.mark.parametrize("opener", ["{", "[", "mix"])
def test_json_depth_cap(opener: str) -> None:
    assert loads_object(_nested(MAX_DEPTH, opener=opener).encode())
    with pytest.raises(MalformedToken) as excinfo:
        loads_object(_nested(MAX_DEPTH + 1, opener=opener).encode())
    _malformed(excinfo)


@pytest.mark.parametrize("cap", [1, 2, 5])
def test_json_depth_cap_is_a_parameter(cap: int) -> None:
    assert loads_object(_nested(cap).encode(), max_depth=cap)
    with pytest.raises(MalformedToken) as excinfo:
        loads_object(_nested(cap + 1).encode(), max_depth=cap)
    _malformed(excinfo)


def test_json_very_deep_input_is_malformed_not_recursion_error() -> None:
    deep = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(MalformedToken) as excinfo:
        loads_object(deep)
    _malformed(excinfo)
    with pytest.raises(MalformedToken) as excinfo:
        loads_object(deep, max_depth=10**6)
    _malformed(excinfo)


def test_json_many_shallow_brackets_are_not_deep() -> None:
    """The bracket count exceeds the cap (fast path fails), but the real depth is 3."""
    text = '{"a":[' + ",".join(["[]"] * 200) + '],"b":[' + ",".join(["{}"] * 200) + "]}"
    assert text.count("[") + text.count("{") > MAX_DEPTH
    assert loads_object(text.encode()) == {"a": [[]] * 200, "b": [{}] * 200}


@pytest.mark.parametrize(
    "inner",
    [
        "[" * 100,
        "{" * 100,
        "[{" * 100,
        '\\"' + "[" * 100,  # an escaped quote does not end the string
        "\\\\" + "{" * 100,  # an escaped backslash does not escape the quote after it
        '\\\\\\"[[[[' * 30,
        "]" * 50 + "[" * 100,
    ],
)
def test_json_brackets_inside_strings_do_not_count(inner: str) -> None:
    text = '{"s":"' + inner + '","t":["' + inner + '"],"' + inner + '":1}'
    assert text.count("[") + text.count("{") > MAX_DEPTH
    expected = json.loads(text)
    assert loads_object(text.encode()) == expected
    assert _json._depth_exceeds(text, MAX_DEPTH) is False


def test_json_deep_nesting_after_a_bracket_string_is_still_caught() -> None:
    """A string full of closing brackets must not hide real depth after it."""
    text = '{"s":"' + "]}" * 50 + '","d":' + _nested(MAX_DEPTH) + "}"
    with pytest.raises(MalformedToken) as excinfo:
        loads_object(text.encode())
    _malformed(excinfo)
    assert _json._depth_exceeds(text, MAX_DEPTH) is True


def _true_depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_true_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_true_depth(v) for v in value), default=0)
    return 0


_JSON_STRINGS = st.text(alphabet='[]{}"\\ab\u00e9\n', max_size=8)
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | _JSON_STRINGS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(_JSON_STRINGS, children, max_size=3)
    ),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_JSON_STRINGS, _JSON_VALUES, max_size=4), st.integers(1, 8))
def test_json_fast_path_matches_precise_scan(obj: dict[str, object], cap: int) -> None:
    """Whatever the bracket count, the answer is the true depth against the cap."""
    for text in (json.dumps(obj), json.dumps(obj, ensure_ascii=False), json.dumps(obj, indent=1)):
        depth = _true_depth(obj)
        assert _json._depth_exceeds(text, cap) is (depth > cap)
        if depth > cap:
            with pytest.raises(MalformedToken) as excinfo:
                loads_object(text.encode(), max_depth=cap)
            _malformed(excinfo)
        else:
            assert loads_object(text.encode(), max_depth=cap) == obj


def test_json_dumps_is_compact_utf8() -> None:
    assert dumps({"a": 1, "b": [1, 2], "c": "é"}) == '{"a":1,"b":[1,2],"c":"é"}'.encode()
    assert loads_object(dumps({"x": {"y": None}})) == {"x": {"y": None}}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_json_dumps_refuses_non_finite(value: float) -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        dumps({"a": value})


@pytest.mark.parametrize("value", [{1, 2}, b"bytes", object()])
def test_json_dumps_refuses_non_json_types(value: object) -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        dumps({"a": value})
