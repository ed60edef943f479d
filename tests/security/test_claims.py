"""Every claim rule, applied after the signature (RFC 7519 section 4; RFC 8725 sections
2.7 substitution, 2.8 cross-JWT confusion, 3.8 issuer, 3.9 audience, 3.11 explicit typing,
3.12 mutually exclusive validation rules).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import pytest

from _support.tokens import AUD, DROP, ISS, NOW, b64, claims, forge, header_for, jbytes, unb64
from authgate.clock import FixedClock
from authgate.errors import (
    ConfigurationError,
    InvalidAudience,
    InvalidClaims,
    InvalidIssuer,
    InvalidSignature,
    InvalidToken,
    InvalidType,
    IssuedInFuture,
    LifetimeTooLong,
    MalformedToken,
    MissingClaim,
    TokenExpired,
    TokenNotYetValid,
)
from authgate.jose import DEFAULT_REQUIRED, ClaimsPolicy, Key, KeySet, decode, encode

from ._helpers import AT_POLICY, CODES, FAMILY_ALGS, POLICY, decode_as, key_for, refused

REQUIRED = ("exp", "iat", "iss", "aud", "sub", "jti")


def hs256() -> Key:
    return key_for("HS256")


def token_with(typ: Any = "JWT", **changes: Any) -> str:
    key = hs256()
    return forge(key, header=header_for(key, typ=typ), payload=claims(**changes))


def test_default_required_claims() -> None:
    assert frozenset(REQUIRED) == DEFAULT_REQUIRED
    assert POLICY.required == DEFAULT_REQUIRED
    assert AT_POLICY.required == DEFAULT_REQUIRED


@pytest.mark.parametrize("alg", FAMILY_ALGS)
def test_valid_claims_pass(alg: str) -> None:
    # The positive control for the whole module.
    key = key_for(alg)
    assert decode_as(encode(claims(), key), key) == claims()
    assert decode_as(encode(claims(), key, typ="at+jwt"), key, policy=AT_POLICY) == claims()


# --- presence -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REQUIRED)
@pytest.mark.parametrize("policy", [POLICY, AT_POLICY], ids=["jwt", "at+jwt"])
def test_missing_required_claim(name: str, policy: ClaimsPolicy) -> None:
    typ = "at+jwt" if policy is AT_POLICY else "JWT"
    with refused(MissingClaim) as info:
        decode_as(token_with(typ=typ, **{name: DROP}), hs256(), policy=policy)
    assert info.value.context.get("claim") == name


def test_every_required_claim_missing_is_still_missing_claim() -> None:
    with refused(MissingClaim):
        decode_as(forge(hs256(), payload={}), hs256())


@pytest.mark.parametrize("name", ["nbf", "sid", "client_id", "scope"])
def test_extra_required_claim_is_enforced(name: str) -> None:
    policy = ClaimsPolicy(issuer=ISS, audience=AUD, required=DEFAULT_REQUIRED | {name})
    with refused(MissingClaim):
        decode_as(token_with(), hs256(), policy=policy)


def test_issuer_and_audience_are_checked_even_when_not_in_required() -> None:
    policy = ClaimsPolicy(issuer=ISS, audience=AUD, required=frozenset())
    with refused(MissingClaim):
        decode_as(token_with(iss=DROP), hs256(), policy=policy)
    with refused(MissingClaim):
        decode_as(token_with(aud=DROP), hs256(), policy=policy)


# --- NumericDate types and ranges ------------------------------------------------------------

NOT_NUMERIC_DATES: tuple[Any, ...] = (
    str(NOW + 600),
    "",
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "1e10",
    "2023-11-14T22:13:20Z",
    True,
    False,
    None,
    [NOW + 600],
    [],
    {},
    {"$date": NOW},
    -1,
    -1.5,
    -(2**31),
    -1e300,
    2**53 + 1,
    2**63,
    2**64 + 1,
    10**20,
    10**300,
    1e300,
    1.7976931348623157e308,
)


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", NOT_NUMERIC_DATES, ids=lambda v: repr(v)[:24])
def test_numeric_date_of_wrong_type_or_range(name: str, value: Any) -> None:
    with refused(InvalidClaims) as info:
        decode_as(token_with(**{name: value}), hs256())
    assert info.value.context.get("claim") == name


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("digits", [310, 400, 4000])
@pytest.mark.parametrize("sign", ["", "-"])
def test_numeric_date_beyond_the_double_range_is_refused(name: str, digits: int, sign: str) -> None:
    # An integer too large for a double: the JSON layer may refuse it as a number it will
    # not represent (MalformedToken), or the claim layer as out of range (InvalidClaims).
    # Either is a refusal with its own code; an acceptance or a crash is not.
    text = jbytes(claims(**{name: 0}))
    huge = f'"{name}":{sign}{"9" * digits}'.encode()
    body = re.sub(rb'"' + name.encode() + rb'":0(?=[,}])', lambda _m: huge, text)
    assert body != text
    token = forge(hs256(), payload=body)
    with pytest.raises(InvalidToken) as info:
        decode_as(token, hs256())
    assert type(info.value) in (InvalidClaims, MalformedToken)
    assert info.value.code == CODES[type(info.value)]


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
def test_numeric_dates_may_be_fractional(name: str) -> None:
    value = {"exp": NOW + 600.5, "nbf": NOW - 0.25, "iat": NOW - 10.75}[name]
    assert decode_as(token_with(**{name: value}), hs256())[name] == value


# --- time: expiry, not-before, issued-at, lifetime -------------------------------------------

LEEWAYS = (0, 1, 59.5, 60, 300)


@pytest.mark.parametrize("leeway", LEEWAYS)
def test_exactly_at_exp_plus_leeway_is_expired(leeway: float) -> None:
    policy = ClaimsPolicy(issuer=ISS, audience=AUD, leeway=leeway)
    exp = NOW + 600
    token = token_with(exp=exp)
    for now in (exp + leeway, exp + leeway + 0.001, exp + leeway + 1, exp + 10**6):
        with refused(TokenExpired):
            decode_as(token, hs256(), policy=policy, now=now)
    for now in (exp + leeway - 0.001, exp + leeway - 1, exp - 1, NOW):
        assert decode_as(token, hs256(), policy=policy, now=now)["exp"] == exp


@pytest.mark.parametrize("exp", [0, 1, NOW - 1, NOW, 0.5])
def test_expired_tokens(exp: float) -> None:
    with refused(TokenExpired):
        decode_as(
            token_with(exp=exp, iat=0),
            hs256(),
            policy=ClaimsPolicy(issuer=ISS, audience=AUD, max_lifetime=None),
        )


def _bounded_by_now_plus_leeway(
    claim: str, error: type[InvalidToken], leeway: float, accepted: tuple[float, ...]
) -> None:
    """``claim`` after NOW + leeway is refused with ``error``; the ``accepted`` values pass."""
    policy = ClaimsPolicy(issuer=ISS, audience=AUD, leeway=leeway)
    for value in (NOW + leeway + 0.001, NOW + leeway + 1, NOW + 500):
        with refused(error):
            decode_as(token_with(**{claim: value}), hs256(), policy=policy)
    for value in accepted:
        assert decode_as(token_with(**{claim: value}), hs256(), policy=policy)[claim] == value


@pytest.mark.parametrize("leeway", LEEWAYS)
def test_nbf_after_now_plus_leeway_is_not_yet_valid(leeway: float) -> None:
    _bounded_by_now_plus_leeway("nbf", TokenNotYetValid, leeway, (NOW + leeway, NOW, NOW - 1, 0))


@pytest.mark.parametrize("leeway", LEEWAYS)
def test_iat_after_now_plus_leeway_is_issued_in_future(leeway: float) -> None:
    _bounded_by_now_plus_leeway("iat", IssuedInFuture, leeway, (NOW + leeway, NOW, NOW - 1))


@pytest.mark.parametrize("max_lifetime", [1, 600, 3600, 86400])
def test_lifetime_over_the_maximum(max_lifetime: float) -> None:
    policy = ClaimsPolicy(issuer=ISS, audience=AUD, max_lifetime=max_lifetime)
    iat = NOW - 0.5
    exact = token_with(iat=iat, exp=iat + max_lifetime)
    assert decode_as(exact, hs256(), policy=policy)["exp"] == iat + max_lifetime
    for over in (0.001, 1, 10**6):
        with refused(LifetimeTooLong):
            decode_as(token_with(iat=iat, exp=iat + max_lifetime + over), hs256(), policy=policy)


def test_lifetime_without_iat_is_measured_from_now() -> None:
    policy = ClaimsPolicy(
        issuer=ISS, audience=AUD, required=DEFAULT_REQUIRED - {"iat"}, max_lifetime=600
    )
    assert decode_as(token_with(iat=DROP, exp=NOW + 600), hs256(), policy=policy)
    with refused(LifetimeTooLong):
        decode_as(token_with(iat=DROP, exp=NOW + 601), hs256(), policy=policy)


def test_default_max_lifetime_is_one_day() -> None:
    with refused(LifetimeTooLong):
        decode_as(token_with(iat=NOW, exp=NOW + 86401), hs256())
    assert decode_as(token_with(iat=NOW, exp=NOW + 86400), hs256())


def test_now_wins_over_clock_and_clock_over_the_system() -> None:
    token = token_with()
    key = hs256()
    late = FixedClock(NOW + 10_000)
    with refused(TokenExpired):
        decode(token, key, algorithms=["HS256"], policy=POLICY, clock=late)
    assert decode(token, key, algorithms=["HS256"], policy=POLICY, clock=late, now=NOW)
    assert decode(token, key, algorithms=["HS256"], policy=POLICY, clock=FixedClock(NOW))
    # The real clock is far past NOW: this suite's tokens are long expired for it.
    with refused(TokenExpired):
        decode(token, key, algorithms=["HS256"], policy=POLICY)


# --- issuer ---------------------------------------------------------------------------------

ISSUER_LOOKALIKES = (
    ISS + "/",
    ISS.upper(),
    ISS.replace("auth", "Auth"),
    " " + ISS,
    ISS + " ",
    ISS + "\n",
    ISS + "\u0000",
    "\ufeff" + ISS,
    ISS.replace("https", "http"),
    ISS + ".evil.example",
    ISS[:-1],
    ISS.replace("a", "\u0430", 1),  # Cyrillic a
    ISS + "#",
    ISS + "?x=1",
    ISS + ":443",
    ISS.replace("https://", "https://user@"),
    "https://evil.example",
)


@pytest.mark.parametrize("iss", ISSUER_LOOKALIKES, ids=repr)
def test_issuer_must_match_exactly(iss: str) -> None:
    with refused(InvalidIssuer):
        decode_as(token_with(iss=iss), hs256())


NOT_NON_EMPTY_STRINGS: tuple[Any, ...] = ("", None, 1, 0, 1.5, True, False, [], {}, ["x"], {"x": 1})


@pytest.mark.parametrize("name", ["iss", "sub", "jti"])
@pytest.mark.parametrize("value", NOT_NON_EMPTY_STRINGS, ids=repr)
def test_iss_sub_jti_must_be_non_empty_strings(name: str, value: Any) -> None:
    with refused(InvalidClaims) as info:
        decode_as(token_with(**{name: value}), hs256())
    assert info.value.context.get("claim") == name


@pytest.mark.parametrize("container", [[ISS], {"iss": ISS}, [ISS, ISS]], ids=repr)
def test_issuer_inside_a_container_is_not_the_issuer(container: Any) -> None:
    with refused(InvalidClaims):
        decode_as(token_with(iss=container), hs256())


def test_sub_and_jti_need_no_particular_value() -> None:
    # Any non-empty string passes: what they mean is the caller's business.
    for value in ("x", " ", "0", "\u00e9", "a" * 1000):
        assert decode_as(token_with(sub=value, jti=value), hs256())["sub"] == value


# --- audience -------------------------------------------------------------------------------


@pytest.mark.parametrize("aud", [AUD, [AUD], ["other", AUD], [AUD, "other"], [AUD, AUD]], ids=repr)
def test_audience_accepted(aud: Any) -> None:
    assert decode_as(token_with(aud=aud), hs256())["aud"] == aud


AUD_MISMATCH = (
    "other",
    "API",
    "Api",
    " api",
    "api ",
    "ap",
    "apix",
    "api\u0000",
    ["other"],
    ["API"],
    ["api ", " api"],
    ["other", "also-other"],
    ["ap", "i"],
)


@pytest.mark.parametrize("aud", AUD_MISMATCH, ids=repr)
def test_audience_not_containing_ours(aud: Any) -> None:
    with refused(InvalidAudience):
        decode_as(token_with(aud=aud), hs256())


AUD_MALFORMED = (
    [],
    "",
    [""],
    [AUD, ""],
    [AUD, 1],
    [AUD, None],
    [AUD, []],
    [AUD, {}],
    [AUD, True],
    [[AUD]],
    [1],
    None,
    1,
    True,
    {},
    {AUD: True},
    {"aud": AUD},
)


@pytest.mark.parametrize("aud", AUD_MALFORMED, ids=repr)
def test_audience_of_wrong_shape(aud: Any) -> None:
    # An array that holds our audience next to a non-string is still refused: no lenient
    # "any element matches" over garbage.
    with refused(InvalidClaims) as info:
        decode_as(token_with(aud=aud), hs256())
    assert info.value.context.get("claim") == "aud"


def test_cross_audience_substitution_is_refused() -> None:
    # RFC 8725 section 2.7: one issuer, one key, two services. A token for "billing" must
    # not be accepted by "api".
    key = hs256()
    for_billing = forge(key, payload=claims(aud="billing"))
    assert decode_as(for_billing, key, policy=ClaimsPolicy(issuer=ISS, audience="billing"))
    with refused(InvalidAudience):
        decode_as(for_billing, key)


def test_cross_issuer_substitution_is_refused() -> None:
    # Two issuers publish keys to the same verifier: a token from one is not the other's.
    other_issuer_key = Key.generate("ES256")
    keyset = KeySet([key_for("ES256"), other_issuer_key])
    token = encode(claims(iss="https://other-tenant.example.com"), other_issuer_key)
    with refused(InvalidIssuer):
        decode_as(token, keyset)


# --- typ (RFC 8725 section 3.11) -------------------------------------------------------------

JWT_TYPS_ACCEPTED = (
    DROP,
    "JWT",
    "jwt",
    "Jwt",
    "application/jwt",
    "application/JWT",
    "APPLICATION/JWT",
)
JWT_TYPS_REFUSED = (
    "at+jwt",
    "application/at+jwt",
    "AT+JWT",
    "JOSE",
    "JOSE+JSON",
    "JWS",
    "JWE",
    "secevent+jwt",
    "dpop+jwt",
    "logout+jwt",
    "jwt ",
    " jwt",
    "JWT\u0000",
    "application/",
    "applicationjwt",
    "application/application/jwt",
    "application/jwt; charset=utf-8",
    "text/jwt",
    "x-jwt",
    "jwt+json",
)
AT_TYPS_ACCEPTED = (
    "at+jwt",
    "AT+JWT",
    "At+Jwt",
    "application/at+jwt",
    "Application/At+JWT",
    "APPLICATION/AT+JWT",
)
AT_TYPS_REFUSED = (
    DROP,
    "JWT",
    "jwt",
    "application/jwt",
    "at+jwt ",
    " at+jwt",
    "at jwt",
    "at+jws",
    "jwt+at",
    "atjwt",
    "at+jwt+x",
    "x-at+jwt",
    "application/at+jwt; charset=utf-8",
    "application/application/at+jwt",
    "text/at+jwt",
    "rt+jwt",
    "id+jwt",
)


@pytest.mark.parametrize("typ", JWT_TYPS_ACCEPTED, ids=repr)
def test_plain_policy_accepts_absent_or_jwt_typ(typ: Any) -> None:
    assert decode_as(token_with(typ=typ), hs256())["sub"] == "user-1"


@pytest.mark.parametrize("typ", JWT_TYPS_REFUSED, ids=repr)
def test_plain_policy_refuses_other_typ(typ: str) -> None:
    # An access token (or any typed token) cannot pass as a plain JWT, and vice versa.
    with refused(InvalidType):
        decode_as(token_with(typ=typ), hs256())


@pytest.mark.parametrize("typ", AT_TYPS_ACCEPTED, ids=repr)
def test_access_token_policy_accepts_at_jwt_in_any_case(typ: str) -> None:
    assert decode_as(token_with(typ=typ), hs256(), policy=AT_POLICY)["sub"] == "user-1"


@pytest.mark.parametrize("typ", AT_TYPS_REFUSED, ids=repr)
def test_access_token_policy_refuses_other_typ(typ: Any) -> None:
    with refused(InvalidType):
        decode_as(token_with(typ=typ), hs256(), policy=AT_POLICY)


def test_encode_default_typ_is_a_plain_jwt_not_an_access_token() -> None:
    key = hs256()
    with refused(InvalidType):
        decode_as(encode(claims(), key), key, policy=AT_POLICY)
    with refused(InvalidType):
        decode_as(encode(claims(), key, typ="at+jwt"), key)


def test_custom_policy_typ() -> None:
    policy = ClaimsPolicy(issuer=ISS, audience=AUD, typ="secevent+jwt")
    for typ in ("secevent+jwt", "application/secevent+jwt", "SECEVENT+JWT"):
        assert decode_as(token_with(typ=typ), hs256(), policy=policy)
    for typ in (DROP, "JWT", "at+jwt"):
        with refused(InvalidType):
            decode_as(token_with(typ=typ), hs256(), policy=policy)


# --- the policy itself -----------------------------------------------------------------------

BAD_LEEWAYS: tuple[Any, ...] = (
    300.001,
    301,
    3600,
    1e9,
    math.inf,
    -1,
    -0.001,
    math.nan,
    -math.inf,
    "10",
    None,
    [],
)


@pytest.mark.parametrize("leeway", BAD_LEEWAYS, ids=repr)
def test_leeway_outside_0_to_300_is_refused(leeway: Any) -> None:
    with refused(ConfigurationError):
        ClaimsPolicy(issuer=ISS, audience=AUD, leeway=leeway)
    with refused(ConfigurationError):
        ClaimsPolicy.access_token(issuer=ISS, audience=AUD, leeway=leeway)


@pytest.mark.parametrize("leeway", [0, 0.5, 300, 300.0])
def test_leeway_up_to_300_is_accepted(leeway: float) -> None:
    assert ClaimsPolicy(issuer=ISS, audience=AUD, leeway=leeway).leeway == leeway


@pytest.mark.parametrize("max_lifetime", [0, -1, -0.5, math.nan, -math.inf])
def test_non_positive_max_lifetime_is_refused(max_lifetime: float) -> None:
    with refused(ConfigurationError):
        ClaimsPolicy(issuer=ISS, audience=AUD, max_lifetime=max_lifetime)


def test_policy_requiring_iss_or_aud_must_name_them() -> None:
    with refused(ConfigurationError):
        ClaimsPolicy(audience=AUD)
    with refused(ConfigurationError):
        ClaimsPolicy(issuer=ISS)


def test_policy_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        POLICY.leeway = 300  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        POLICY.issuer = "https://evil.example"  # type: ignore[misc]


# --- order: claims are judged only after the signature ---------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": 1},
        {"iss": "https://evil.example"},
        {"aud": "other"},
        {"sub": 1},
        {"exp": DROP},
        {"nbf": NOW + 10**6},
    ],
    ids=repr,
)
def test_bad_signature_wins_over_bad_claims(changes: dict[str, Any]) -> None:
    key = hs256()
    token = forge(key, payload=claims(**changes))
    head, payload, sig = token.split(".")
    flipped = bytes([unb64(sig)[0] ^ 1]) + unb64(sig)[1:]
    with refused(InvalidSignature):
        decode_as(f"{head}.{payload}.{b64(flipped)}", key)


def test_bad_type_wins_over_bad_claims() -> None:
    with refused(InvalidType):
        decode_as(token_with(typ="at+jwt", exp=1, iss="x"), hs256())
