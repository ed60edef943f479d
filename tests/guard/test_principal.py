"""Principal, Requirement, the RFC 6750 challenges and reading the bearer token."""

from __future__ import annotations

from typing import Any

import pytest

from authgate.errors import (
    AuthenticationRequired,
    AuthgateError,
    ConfigurationError,
    InsufficientScope,
    InvalidClaims,
    InvalidRequest,
    InvalidToken,
    TokenExpired,
    TokenRevoked,
)
from authgate.guard import Principal, Requirement, challenge, parse_bearer

NOW = 1_700_000_000


def user_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": "https://auth.example.com",
        "sub": "usr_1",
        "aud": "api",
        "exp": NOW + 600,
        "iat": NOW,
        "jti": "j1",
        "sid": "sid_1",
        "client_id": "authgate",
        "roles": ["editor", "admin"],
        "scope": "posts:read posts:write",
    }
    claims.update(changes)
    return claims


def principal(**changes: Any) -> Principal:
    return Principal.from_claims(user_claims(**changes), "tok")


def test_principal_of_a_user_token() -> None:
    p = principal()
    assert p.sub == "usr_1"
    assert p.sid == "sid_1"
    assert p.jti == "j1"
    assert p.roles == ("editor", "admin")
    assert p.permissions == frozenset({"posts:read", "posts:write"})
    assert p.client_id == "authgate"
    assert p.token == "tok"
    assert p.exp == NOW + 600
    assert p.iat == NOW
    assert p.nbf is None
    assert p.claims["aud"] == "api"
    assert p.is_authenticated is True
    assert p.display_name == p.identity == "usr_1"
    assert p.has("posts:read")
    assert p.has("posts:read", "posts:write")
    assert not p.has("posts:delete")


def test_principal_of_a_client_credentials_token_has_no_sid_or_roles() -> None:
    claims = user_claims(sub="cli_x", client_id="cli_x", scope="reports:read")
    del claims["sid"], claims["roles"]
    p = Principal.from_claims(claims, "tok")
    assert p.sid is None
    assert p.roles == ()
    assert p.sub == p.client_id == "cli_x"
    assert p.permissions == frozenset({"reports:read"})


def test_principal_without_scope_has_no_permissions() -> None:
    claims = user_claims()
    del claims["scope"]
    assert Principal.from_claims(claims, "t").permissions == frozenset()


def test_principal_claims_are_read_only_and_the_principal_frozen() -> None:
    p = principal()
    with pytest.raises(TypeError):
        p.claims["sub"] = "other"  # type: ignore[index]
    with pytest.raises(AttributeError):
        p.sub = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("sid", ""),
        ("sid", 1),
        ("sid", None),
        ("client_id", ["x"]),
        ("client_id", ""),
        ("roles", "admin"),
        ("roles", ["admin", 1]),
        ("roles", None),
        ("roles", {"admin": True}),
        ("scope", ["posts:read"]),
        ("scope", None),
        ("scope", 1),
    ],
    ids=repr,
)
def test_ill_typed_authgate_claims_are_refused(claim: str, value: Any) -> None:
    with pytest.raises(InvalidClaims) as info:
        principal(**{claim: value})
    assert type(info.value) is InvalidClaims
    assert info.value.code == "invalid_claims"
    assert info.value.context["claim"] == claim


# --- Requirement -----------------------------------------------------------------------------


def refused_scope(req: Requirement, p: Principal) -> tuple[str, ...]:
    with pytest.raises(InsufficientScope) as info:
        req.check(p)
    assert type(info.value) is InsufficientScope
    assert info.value.code == "insufficient_scope"
    scope: tuple[str, ...] = info.value.context["scope"]
    return scope


def test_requirement_all_of_permissions() -> None:
    p = principal()
    Requirement.of(["posts:read"]).check(p)
    Requirement.of(["posts:read", "posts:write"]).check(p)
    Requirement.of([]).check(p)
    req = Requirement.of(["posts:read", "posts:delete"])
    assert refused_scope(req, p) == ("posts:read", "posts:delete")


def test_requirement_any_of() -> None:
    p = principal()
    Requirement.of([], any_of=["posts:delete", "posts:write"]).check(p)
    req = Requirement.of(["posts:read"], any_of=["users:read", "users:write"])
    assert refused_scope(req, p) == ("posts:read", "users:read", "users:write")


def test_requirement_roles_are_all_required() -> None:
    p = principal()
    Requirement.of([], roles=["editor"]).check(p)
    Requirement.of([], roles=["editor", "admin"]).check(p)
    assert refused_scope(Requirement.of([], roles=["owner"]), p) == ()
    client = Principal.from_claims(
        {k: v for k, v in user_claims().items() if k not in ("roles", "sid")}, "t"
    )
    assert refused_scope(Requirement.of([], roles=["editor"]), client) == ()


def test_requirement_takes_a_single_string_as_one_name() -> None:
    assert Requirement.of("posts:read").permissions == ("posts:read",)
    assert Requirement.of([], roles="admin").roles == ("admin",)


@pytest.mark.parametrize("bad", ["", "a b", 'a"b', "a\\b", "a\tb", 1, None])
def test_requirement_names_must_be_plain_tokens(bad: Any) -> None:
    with pytest.raises(ValueError, match="must be a non-empty string"):
        Requirement.of([bad])


# --- challenges ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status", "header", "error"),
    [
        (AuthenticationRequired("x"), 401, "Bearer", "authentication_required"),
        (InvalidToken("x"), 401, 'Bearer error="invalid_token"', "invalid_token"),
        (TokenExpired("x"), 401, 'Bearer error="invalid_token"', "invalid_token"),
        (TokenRevoked("x"), 401, 'Bearer error="invalid_token"', "invalid_token"),
        (InvalidRequest("x"), 400, 'Bearer error="invalid_request"', "invalid_request"),
        (
            InsufficientScope("x", scope=("posts:read", "posts:write")),
            403,
            'Bearer error="insufficient_scope", scope="posts:read posts:write"',
            "insufficient_scope",
        ),
        (InsufficientScope("x", scope=()), 403, 'Bearer error="insufficient_scope"', None),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else None,
)
def test_rfc_6750_challenges(
    exc: AuthgateError, status: int, header: str, error: str | None
) -> None:
    ch = challenge(exc)
    assert ch.status == status
    assert ch.www_authenticate == header
    assert ch.headers["WWW-Authenticate"] == header
    assert ch.headers["Cache-Control"] == "no-store"
    assert ch.body == b'{"error":"' + ch.error.encode() + b'"}'
    if error is not None:
        assert ch.error == error


def test_challenge_with_a_realm() -> None:
    assert challenge(AuthenticationRequired("x"), realm="api").www_authenticate == (
        'Bearer realm="api"'
    )
    assert challenge(InvalidToken("x"), realm="api").www_authenticate == (
        'Bearer realm="api", error="invalid_token"'
    )


def test_a_challenge_never_carries_the_reason() -> None:
    ch = challenge(InvalidToken("signature of kid abc does not verify"))
    assert b"signature" not in ch.body
    assert "signature" not in ch.www_authenticate


# --- reading the token -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "token"),
    [
        (["Bearer abc.def.ghi"], "abc.def.ghi"),
        (["bearer abc"], "abc"),
        (["BEARER   abc  "], "abc"),
        (["  Bearer abc"], "abc"),
    ],
)
def test_bearer_token_from_the_authorization_header(values: list[str], token: str) -> None:
    assert parse_bearer(values) == token


@pytest.mark.parametrize("values", [[], ["Basic dXNlcjpwdw=="], ["Token abc"], ["Bearerabc"]])
def test_no_bearer_token_is_authentication_required(values: list[str]) -> None:
    with pytest.raises(AuthenticationRequired) as info:
        parse_bearer(values)
    assert info.value.code == "authentication_required"


@pytest.mark.parametrize("values", [["Bearer"], ["Bearer "], ["Bearer   "]])
def test_an_empty_bearer_token_is_invalid(values: list[str]) -> None:
    with pytest.raises(InvalidToken) as info:
        parse_bearer(values)
    assert type(info.value) is InvalidToken
    assert info.value.code == "invalid_token"


def test_a_repeated_authorization_header_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_bearer(["Bearer a", "Bearer b"])
    assert info.value.code == "invalid_request"


def test_the_cookie_is_used_only_without_an_authorization_header() -> None:
    assert parse_bearer([], cookie="from-cookie") == "from-cookie"
    assert parse_bearer(["Bearer from-header"], cookie="from-cookie") == "from-header"


def test_errors_used_here_are_authgate_errors() -> None:
    # The guard adds no error classes: its refusals are the core's.
    for cls in (InvalidToken, InsufficientScope, InvalidRequest, AuthenticationRequired):
        assert issubclass(cls, AuthgateError)
    assert ConfigurationError.code == "invalid_configuration"
