"""JWT encode/decode and the frozen ClaimsPolicy."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Any

import pytest

from _support.tokens import AUD, DROP, ISS, NOW
from _support.tokens import claims as valid_claims
from authgate import errors
from authgate.clock import FixedClock
from authgate.jose import DEFAULT_REQUIRED, ClaimsPolicy, Key, KeySet, decode, encode
from authgate.jose._b64 import b64decode, b64encode_str


def _refused(excinfo: pytest.ExceptionInfo[Any], cls: type, code: str) -> None:
    assert type(excinfo.value) is cls, repr(excinfo.value)
    assert excinfo.value.code == code


def _claims(**overrides: Any) -> dict[str, Any]:
    return valid_claims(**{"iat": NOW, "jti": "id-1", **overrides})


@pytest.fixture(scope="module")
def key() -> Key:
    return Key.generate("ES256")


@pytest.fixture(scope="module")
def hkey() -> Key:
    return Key.from_secret(b"s" * 32)


@pytest.fixture(scope="module")
def policy() -> ClaimsPolicy:
    return ClaimsPolicy(issuer=ISS, audience=AUD)


def _decode(token: str, key: Key, policy: ClaimsPolicy, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("now", NOW)
    return decode(token, key, algorithms=[key.alg], policy=policy, **kwargs)


# --- round trip -----------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["HS256", "HS512", "RS256", "PS384", "ES256", "ES512", "EdDSA"])
def test_round_trip(alg: str, policy: ClaimsPolicy) -> None:
    key = Key.generate(alg)
    claims = _claims(roles=["admin"], scope="a b", nested={"x": [1, 2.5, None, True]})
    token = encode(claims, key)
    assert _decode(token, key, policy) == claims
    header = json.loads(b64decode(token.split(".")[0]))
    assert header == {"alg": alg, "kid": key.kid, "typ": "JWT"}


def test_encode_is_compact_utf8(key: Key) -> None:
    token = encode({"name": "Zoë", "n": 1}, key)
    assert b64decode(token.split(".")[1]) == '{"name":"Zoë","n":1}'.encode()


def test_encode_with_keyset_uses_current(policy: ClaimsPolicy) -> None:
    a, b = Key.generate("ES256"), Key.generate("EdDSA")
    ks = KeySet([a, b], current=b.kid)
    token = encode(_claims(), ks)
    header = json.loads(b64decode(token.split(".")[0]))
    assert header["kid"] == b.kid
    assert decode(token, ks, algorithms=["ES256", "EdDSA"], policy=policy, now=NOW) == _claims()


@pytest.mark.parametrize("typ", ["at+jwt", "JWT", None])
def test_encode_typ(key: Key, typ: str | None) -> None:
    token = encode(_claims(), key, typ=typ)
    header = json.loads(b64decode(token.split(".")[0]))
    assert header.get("typ") == typ
    assert ("typ" in header) is (typ is not None)


# --- encode refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "x", "roles": {"a", "b"}},  # a set
        {"sub": "x", "exp": float("nan")},
        {"sub": "x", "exp": float("inf")},
        {"sub": "x", "n": -math.inf},
        {"sub": "x", "raw": b"bytes"},
        {"sub": "x", "when": object()},
        {("a", "b"): 1},  # non-str key
        {1: "a"},  # non-str key that json would coerce to "1"
        {None: "a", "null": "b"},  # would coerce to a duplicate member
        {1.5: "a"},
        {True: "a"},
        {"sub": "x", "nested": {"deep": {2: "y"}}},
    ],
    ids=[
        "set",
        "nan",
        "inf",
        "-inf",
        "bytes",
        "object",
        "tuple-key",
        "int-key",
        "none-key-duplicate",
        "float-key",
        "bool-key",
        "nested-int-key",
    ],
)
def test_encode_non_serializable_claims(key: Key, claims: dict[Any, Any]) -> None:
    with pytest.raises(errors.InvalidClaims) as excinfo:
        encode(claims, key)
    _refused(excinfo, errors.InvalidClaims, "invalid_claims")


@pytest.mark.parametrize("claims", [["sub"], "sub", None, 5])
def test_encode_non_mapping(key: Key, claims: Any) -> None:
    with pytest.raises(errors.InvalidClaims) as excinfo:
        encode(claims, key)
    _refused(excinfo, errors.InvalidClaims, "invalid_claims")


# --- time sources ---------------------------------------------------------------------------------


def test_decode_with_clock(key: Key, policy: ClaimsPolicy) -> None:
    clock = FixedClock(NOW)
    token = encode(_claims(), key)
    assert decode(token, key, algorithms=["ES256"], policy=policy, clock=clock) == _claims()
    clock.advance(599)
    assert decode(token, key, algorithms=["ES256"], policy=policy, clock=clock) == _claims()
    clock.advance(1)
    with pytest.raises(errors.TokenExpired) as excinfo:
        decode(token, key, algorithms=["ES256"], policy=policy, clock=clock)
    _refused(excinfo, errors.TokenExpired, "token_expired")
    clock.set(NOW - 1)
    with pytest.raises(errors.IssuedInFuture) as excinfo:
        decode(token, key, algorithms=["ES256"], policy=policy, clock=clock)
    _refused(excinfo, errors.IssuedInFuture, "issued_in_future")


def test_decode_with_now(key: Key, policy: ClaimsPolicy) -> None:
    token = encode(_claims(), key)
    assert _decode(token, key, policy, now=NOW + 599.999) == _claims()
    with pytest.raises(errors.TokenExpired) as excinfo:
        _decode(token, key, policy, now=NOW + 600)
    _refused(excinfo, errors.TokenExpired, "token_expired")


def test_now_wins_over_clock(key: Key, policy: ClaimsPolicy) -> None:
    token = encode(_claims(), key)
    late = FixedClock(NOW + 10_000)
    assert _decode(token, key, policy, now=NOW, clock=late) == _claims()
    with pytest.raises(errors.TokenExpired) as excinfo:
        _decode(token, key, policy, now=NOW + 10_000, clock=FixedClock(NOW))
    _refused(excinfo, errors.TokenExpired, "token_expired")


def test_decode_defaults_to_system_time(key: Key, policy: ClaimsPolicy) -> None:
    now = int(time.time())
    token = encode(_claims(iat=now - 5, exp=now + 600), key)
    assert decode(token, key, algorithms=["ES256"], policy=policy)["exp"] == now + 600
    old = encode(_claims(), key)  # expired in 2023
    with pytest.raises(errors.TokenExpired) as excinfo:
        decode(old, key, algorithms=["ES256"], policy=policy)
    _refused(excinfo, errors.TokenExpired, "token_expired")


# --- ClaimsPolicy ---------------------------------------------------------------------------------


def test_policy_is_frozen(policy: ClaimsPolicy) -> None:
    for name, value in [
        ("issuer", "other"),
        ("audience", "other"),
        ("leeway", 10),
        ("typ", "at+jwt"),
        ("required", frozenset()),
        ("max_lifetime", None),
    ]:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(policy, name, value)
    assert policy.issuer == ISS
    assert policy.leeway == 0


def test_policy_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        ClaimsPolicy(ISS, AUD)  # type: ignore[misc]


def test_policy_defaults() -> None:
    policy = ClaimsPolicy(issuer=ISS, audience=AUD)
    assert (
        policy.required == DEFAULT_REQUIRED == frozenset({"exp", "iat", "iss", "aud", "sub", "jti"})
    )
    assert policy.leeway == 0
    assert policy.max_lifetime == 86400
    assert policy.typ is None


def test_policy_required_is_frozen_copy() -> None:
    required = {"exp", "sub"}
    policy = ClaimsPolicy(required=required)  # type: ignore[arg-type]
    assert isinstance(policy.required, frozenset)
    required.add("jti")
    assert policy.required == frozenset({"exp", "sub"})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"audience": AUD},  # iss required, no issuer
        {"issuer": ISS},  # aud required, no audience
        {},
        {"required": frozenset({"iss"}), "audience": AUD},
        {"required": frozenset({"aud"}), "issuer": ISS},
    ],
)
def test_policy_required_without_value(kwargs: dict[str, Any]) -> None:
    with pytest.raises(errors.ConfigurationError) as excinfo:
        ClaimsPolicy(**kwargs)
    _refused(excinfo, errors.ConfigurationError, "invalid_configuration")


def test_policy_without_iss_aud_requirements() -> None:
    policy = ClaimsPolicy(required=frozenset({"exp", "sub"}))
    assert policy.issuer is None
    assert policy.audience is None


@pytest.mark.parametrize(
    "leeway", [-1, -0.001, 300.001, 301, 10_000, math.nan, math.inf, "5", None]
)
def test_policy_leeway_out_of_range(leeway: Any) -> None:
    with pytest.raises(errors.ConfigurationError) as excinfo:
        ClaimsPolicy(issuer=ISS, audience=AUD, leeway=leeway)
    _refused(excinfo, errors.ConfigurationError, "invalid_configuration")


@pytest.mark.parametrize("leeway", [0, 0.5, 60, 300, 300.0])
def test_policy_leeway_in_range(leeway: float) -> None:
    assert ClaimsPolicy(issuer=ISS, audience=AUD, leeway=leeway).leeway == leeway


@pytest.mark.parametrize("max_lifetime", [0, -1, -0.5, math.nan])
def test_policy_max_lifetime_must_be_positive(max_lifetime: float) -> None:
    with pytest.raises(errors.ConfigurationError) as excinfo:
        ClaimsPolicy(issuer=ISS, audience=AUD, max_lifetime=max_lifetime)
    _refused(excinfo, errors.ConfigurationError, "invalid_configuration")


def test_access_token_policy() -> None:
    policy = ClaimsPolicy.access_token(issuer=ISS, audience=AUD)
    assert policy.typ == "at+jwt"
    assert policy.required == DEFAULT_REQUIRED
    assert policy.issuer == ISS
    assert policy.audience == AUD
    with pytest.raises(errors.ConfigurationError) as excinfo:
        ClaimsPolicy.access_token(issuer=ISS, audience=AUD, leeway=301)
    _refused(excinfo, errors.ConfigurationError, "invalid_configuration")
    assert ClaimsPolicy.access_token(issuer=ISS, audience=AUD, leeway=30).leeway == 30


# --- leeway and lifetime --------------------------------------------------------------------------


def test_leeway_on_exp(key: Key) -> None:
    token = encode(_claims(), key)
    lenient = ClaimsPolicy(issuer=ISS, audience=AUD, leeway=30)
    assert _decode(token, key, lenient, now=NOW + 629)
    with pytest.raises(errors.TokenExpired) as excinfo:
        _decode(token, key, lenient, now=NOW + 630)
    _refused(excinfo, errors.TokenExpired, "token_expired")


def test_leeway_on_nbf(key: Key, policy: ClaimsPolicy) -> None:
    token = encode(_claims(nbf=NOW + 20), key)
    with pytest.raises(errors.TokenNotYetValid) as excinfo:
        _decode(token, key, policy, now=NOW + 19)
    _refused(excinfo, errors.TokenNotYetValid, "token_not_yet_valid")
    assert _decode(token, key, policy, now=NOW + 20)
    lenient = ClaimsPolicy(issuer=ISS, audience=AUD, leeway=20)
    assert _decode(token, key, lenient, now=NOW)
    with pytest.raises(errors.TokenNotYetValid) as excinfo:
        _decode(token, key, lenient, now=NOW - 1)
    _refused(excinfo, errors.TokenNotYetValid, "token_not_yet_valid")


def test_leeway_on_iat(key: Key, policy: ClaimsPolicy) -> None:
    token = encode(_claims(iat=NOW + 10, exp=NOW + 600), key)
    with pytest.raises(errors.IssuedInFuture) as excinfo:
        _decode(token, key, policy, now=NOW)
    _refused(excinfo, errors.IssuedInFuture, "issued_in_future")
    assert _decode(token, key, policy, now=NOW + 10)
    lenient = ClaimsPolicy(issuer=ISS, audience=AUD, leeway=10)
    assert _decode(token, key, lenient, now=NOW)


def test_max_lifetime(key: Key) -> None:
    policy = ClaimsPolicy(issuer=ISS, audience=AUD, max_lifetime=600)
    assert _decode(encode(_claims(exp=NOW + 600), key), key, policy)
    with pytest.raises(errors.LifetimeTooLong) as excinfo:
        _decode(encode(_claims(exp=NOW + 601), key), key, policy)
    _refused(excinfo, errors.LifetimeTooLong, "lifetime_too_long")


def test_max_lifetime_default_is_one_day(key: Key, policy: ClaimsPolicy) -> None:
    assert _decode(encode(_claims(exp=NOW + 86400), key), key, policy)
    with pytest.raises(errors.LifetimeTooLong) as excinfo:
        _decode(encode(_claims(exp=NOW + 86401), key), key, policy)
    _refused(excinfo, errors.LifetimeTooLong, "lifetime_too_long")


def test_max_lifetime_without_iat_counts_from_now(key: Key) -> None:
    policy = ClaimsPolicy(
        issuer=ISS, audience=AUD, required=frozenset({"exp", "iss", "aud"}), max_lifetime=600
    )
    token = encode(_claims(iat=DROP, exp=NOW + 700), key)
    with pytest.raises(errors.LifetimeTooLong) as excinfo:
        _decode(token, key, policy, now=NOW)
    _refused(excinfo, errors.LifetimeTooLong, "lifetime_too_long")
    assert _decode(token, key, policy, now=NOW + 100)


def test_max_lifetime_none_disables_the_cap(key: Key) -> None:
    policy = ClaimsPolicy(issuer=ISS, audience=AUD, max_lifetime=None)
    assert _decode(encode(_claims(exp=NOW + 10 * 365 * 86400), key), key, policy)


# --- claims ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DEFAULT_REQUIRED))
def test_missing_required_claim(key: Key, policy: ClaimsPolicy, name: str) -> None:
    token = encode(_claims(**{name: DROP}), key)
    with pytest.raises(errors.MissingClaim) as excinfo:
        _decode(token, key, policy)
    _refused(excinfo, errors.MissingClaim, "missing_claim")
    assert excinfo.value.context["claim"] == name


def test_issuer_and_audience(key: Key, policy: ClaimsPolicy) -> None:
    with pytest.raises(errors.InvalidIssuer) as excinfo:
        _decode(encode(_claims(iss="https://evil.example"), key), key, policy)
    _refused(excinfo, errors.InvalidIssuer, "invalid_issuer")
    with pytest.raises(errors.InvalidAudience) as excinfo:
        _decode(encode(_claims(aud="other"), key), key, policy)
    _refused(excinfo, errors.InvalidAudience, "invalid_audience")
    with pytest.raises(errors.InvalidAudience) as excinfo:
        _decode(encode(_claims(aud=["other", "more"]), key), key, policy)
    _refused(excinfo, errors.InvalidAudience, "invalid_audience")
    assert _decode(encode(_claims(aud=["other", AUD]), key), key, policy)["aud"] == ["other", AUD]


@pytest.mark.parametrize("aud", [[], "", [""], [AUD, 1], 5, {"a": AUD}, None])
def test_audience_shape(key: Key, policy: ClaimsPolicy, aud: Any) -> None:
    with pytest.raises(errors.InvalidClaims) as excinfo:
        _decode(encode(_claims(aud=aud), key), key, policy)
    _refused(excinfo, errors.InvalidClaims, "invalid_claims")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("exp", str(NOW + 600)),
        ("exp", True),
        ("exp", None),
        ("exp", [NOW + 600]),
        ("exp", -1),
        ("exp", 2**60),
        ("iat", "now"),
        ("iat", -5),
        ("nbf", False),
        ("nbf", None),
        ("iss", 5),
        ("iss", ""),
        ("sub", None),
        ("sub", 123),
        ("jti", ""),
        ("jti", ["a"]),
    ],
)
def test_claim_types(key: Key, policy: ClaimsPolicy, name: str, value: Any) -> None:
    with pytest.raises(errors.InvalidClaims) as excinfo:
        _decode(encode(_claims(**{name: value}), key), key, policy)
    _refused(excinfo, errors.InvalidClaims, "invalid_claims")


def test_float_dates_accepted(key: Key, policy: ClaimsPolicy) -> None:
    claims = _claims(iat=NOW + 0.5, exp=NOW + 600.25, nbf=NOW - 0.5)
    assert _decode(encode(claims, key), key, policy, now=NOW + 1) == claims


def test_typ_default_policy(key: Key, policy: ClaimsPolicy) -> None:
    for typ in ("JWT", "jwt", "application/jwt", None):
        assert _decode(encode(_claims(), key, typ=typ), key, policy)
    for typ in ("at+jwt", "application/at+jwt", "dpop+jwt", "JOSE"):
        with pytest.raises(errors.InvalidType) as excinfo:
            _decode(encode(_claims(), key, typ=typ), key, policy)
        _refused(excinfo, errors.InvalidType, "invalid_type")


def test_typ_access_token_policy(key: Key) -> None:
    policy = ClaimsPolicy.access_token(issuer=ISS, audience=AUD)
    for typ in ("at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"):
        assert _decode(encode(_claims(), key, typ=typ), key, policy)
    for typ in ("JWT", None, "at+jws", "application/jwt", "x-at+jwt"):
        with pytest.raises(errors.InvalidType) as excinfo:
            _decode(encode(_claims(), key, typ=typ), key, policy)
        _refused(excinfo, errors.InvalidType, "invalid_type")


# --- codec errors surface through decode ----------------------------------------------------------


def test_decode_refuses_bad_signature(key: Key, policy: ClaimsPolicy) -> None:
    token = encode(_claims(), key)
    head, _, sig = token.split(".")
    forged = f"{head}.{b64encode_str(json.dumps(_claims(sub='admin')).encode())}.{sig}"
    with pytest.raises(errors.InvalidSignature) as excinfo:
        _decode(forged, key, policy)
    _refused(excinfo, errors.InvalidSignature, "invalid_signature")


def test_decode_refuses_other_alg(key: Key, hkey: Key, policy: ClaimsPolicy) -> None:
    token = encode(_claims(), hkey)
    with pytest.raises(errors.AlgorithmNotAllowed) as excinfo:
        decode(token, hkey, algorithms=["ES256"], policy=policy, now=NOW)
    _refused(excinfo, errors.AlgorithmNotAllowed, "algorithm_not_allowed")


def test_decode_refuses_non_object_payload(hkey: Key, policy: ClaimsPolicy) -> None:
    from authgate.jose import sign

    for payload in (b"[]", b'"x"', b"", b'{"a":1,"a":2}', b"\xef\xbb\xbf{}"):
        token = sign(payload, hkey)
        with pytest.raises(errors.MalformedToken) as excinfo:
            _decode(token, hkey, policy)
        _refused(excinfo, errors.MalformedToken, "malformed_token")


def test_decode_max_size(hkey: Key, policy: ClaimsPolicy) -> None:
    token = encode(_claims(pad="x" * 100), hkey)
    assert _decode(token, hkey, policy, max_size=len(token))
    with pytest.raises(errors.TokenTooLarge) as excinfo:
        _decode(token, hkey, policy, max_size=len(token) - 1)
    _refused(excinfo, errors.TokenTooLarge, "token_too_large")
