"""Property tests (hypothesis).

- sign-then-decode round-trips arbitrary JSON claims for every algorithm family;
- any single-byte or single-character change to a valid token is refused with an
  InvalidToken subclass: never accepted, never another exception type;
- the claim rules agree with an independent oracle written from the rules themselves.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from _support.tokens import AUD, ISS, NOW, claims, forge, header_for
from authgate.errors import (
    InvalidAudience,
    InvalidClaims,
    InvalidIssuer,
    InvalidToken,
    InvalidType,
    IssuedInFuture,
    LifetimeTooLong,
    MissingClaim,
    TokenExpired,
    TokenNotYetValid,
)
from authgate.jose import ClaimsPolicy, decode, encode, sign, verify

from ._helpers import CODES, FAMILY_ALGS, POLICY, attempt, key_for

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
REGISTERED = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})
BIG = 1 << 20

# Text without lone surrogates: those cannot be UTF-8, so they are not JSON strings.
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)
extra_claims = st.dictionaries(text.filter(lambda k: k not in REGISTERED), json_values, max_size=8)


@pytest.mark.parametrize("alg", FAMILY_ALGS)
@SETTINGS
@given(extra=extra_claims)
def test_sign_then_decode_round_trips_any_json_claims(alg: str, extra: dict[str, Any]) -> None:
    key = key_for(alg)
    payload = {**extra, **claims()}
    token = encode(payload, key)
    assert decode(token, key, algorithms=[alg], policy=POLICY, now=NOW, max_size=BIG) == payload
    public = key if key.is_symmetric else key.public()
    assert decode(token, public, algorithms=[alg], policy=POLICY, now=NOW, max_size=BIG) == payload


@pytest.mark.parametrize("alg", FAMILY_ALGS)
@SETTINGS
@given(payload=st.binary(max_size=512), typ=st.sampled_from([None, "JWT", "at+jwt", "x"]))
def test_sign_then_verify_round_trips_any_bytes(alg: str, payload: bytes, typ: str | None) -> None:
    key = key_for(alg)
    header, out = verify(sign(payload, key, typ=typ), key, algorithms=[alg])
    assert out == payload
    assert header == {"alg": alg, "kid": key.kid, **({"typ": typ} if typ else {})}


# --- single-change mutations -----------------------------------------------------------------

_VALID: dict[str, str] = {}


def valid_token(alg: str) -> str:
    if alg not in _VALID:
        _VALID[alg] = encode(claims(), key_for(alg))
    return _VALID[alg]


def assert_refused(token: str | bytes, alg: str) -> None:
    key = key_for(alg)
    for call in (
        lambda: decode(token, key, algorithms=[alg], policy=POLICY, now=NOW),
        lambda: verify(token, key, algorithms=[alg]),
    ):
        with pytest.raises(InvalidToken) as info:
            call()
        assert info.value.code == CODES[type(info.value)]


any_char = st.characters()  # every code point, surrogates included


@pytest.mark.parametrize("alg", FAMILY_ALGS)
@SETTINGS
@given(data=st.data())
def test_any_single_char_change_is_refused(alg: str, data: st.DataObject) -> None:
    token = valid_token(alg)
    op = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    if op == "insert":
        pos = data.draw(st.integers(0, len(token)))
        mutated = token[:pos] + data.draw(any_char) + token[pos:]
    else:
        pos = data.draw(st.integers(0, len(token) - 1))
        if op == "delete":
            mutated = token[:pos] + token[pos + 1 :]
        else:
            char = data.draw(any_char.filter(lambda c: c != token[pos]))
            mutated = token[:pos] + char + token[pos + 1 :]
    assume(mutated != token)
    assert_refused(mutated, alg)


@pytest.mark.parametrize("alg", FAMILY_ALGS)
@SETTINGS
@given(data=st.data())
def test_any_single_byte_change_is_refused(alg: str, data: st.DataObject) -> None:
    token = valid_token(alg).encode()
    op = data.draw(st.sampled_from(["flip", "replace", "insert", "delete"]))
    if op == "insert":
        pos = data.draw(st.integers(0, len(token)))
        mutated = token[:pos] + bytes([data.draw(st.integers(0, 255))]) + token[pos:]
    else:
        pos = data.draw(st.integers(0, len(token) - 1))
        if op == "delete":
            mutated = token[:pos] + token[pos + 1 :]
        elif op == "flip":
            mask = data.draw(st.integers(1, 255))
            mutated = token[:pos] + bytes([token[pos] ^ mask]) + token[pos + 1 :]
        else:
            byte = data.draw(st.integers(0, 255).filter(lambda b: b != token[pos]))
            mutated = token[:pos] + bytes([byte]) + token[pos + 1 :]
    assume(mutated != token)
    assert_refused(mutated, alg)
    try:
        as_text = mutated.decode("utf-8")
    except UnicodeDecodeError:
        return
    assert_refused(as_text, alg)


FULL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ "


@pytest.mark.parametrize(
    ("alg", "alphabet"),
    [("HS256", FULL_ALPHABET), ("ES256", "AQgw9-_.=+/ "), ("EdDSA", "AQgw9-_.=+/ ")],
    ids=["HS256", "ES256", "EdDSA"],
)
def test_every_single_char_substitution_deletion_and_insertion_is_refused(
    alg: str, alphabet: str
) -> None:
    # Exhaustive over the token and a set of likely characters: no lucky survivor. (The
    # cheap HMAC gets the whole alphabet; the others get the characters that matter most.)
    token = valid_token(alg)
    key = key_for(alg)
    count = 0
    for pos in range(len(token) + 1):
        candidates = [token[:pos] + c + token[pos:] for c in alphabet]
        if pos < len(token):
            candidates.append(token[:pos] + token[pos + 1 :])
            candidates += [token[:pos] + c + token[pos + 1 :] for c in alphabet if c != token[pos]]
        for mutated in candidates:
            _, error = attempt(lambda: verify(mutated, key, algorithms=[alg]))  # noqa: B023
            if error is None:
                pytest.fail(f"mutated token accepted at position {pos}: {mutated!r}")
            assert error.code == CODES[type(error)]
            count += 1
    assert count >= (2 * len(alphabet) - 1) * len(token)


# --- the claim rules against an oracle --------------------------------------------------------

ABSENT = object()
TIME_VALUES = [
    ABSENT,
    NOW,
    NOW - 1,
    NOW + 1,
    NOW - 600,
    NOW + 600,
    NOW + 601,
    NOW - 86400,
    NOW + 86400,
    NOW + 86401,
    NOW + 0.5,
    NOW - 30,
    NOW + 30,
    NOW + 300,
    NOW - 300,
    0,
    -1,
    2**53,
    2**53 + 1,
    1e300,
    str(NOW),
    True,
    None,
    [NOW],
]
STRING_VALUES = [ABSENT, "x", "", 1, None, [], ["x"], True]
ISS_VALUES = [ABSENT, ISS, ISS, ISS + "/", ISS.upper(), "", 1, None, [ISS]]
AUD_VALUES = [
    ABSENT,
    AUD,
    AUD,
    [AUD],
    ["x", AUD],
    ["x"],
    [],
    [AUD, 1],
    [AUD, ""],
    "",
    "x",
    None,
    1,
    {AUD: 1},
]
TYP_VALUES = [None, "JWT", "jwt", "application/jwt", "at+jwt", "AT+JWT", "application/at+jwt", "x"]


def is_number(value: Any) -> bool:
    return type(value) in (int, float) and 0 <= value <= 2**53


def expected_refusals(
    body: dict[str, Any], typ: str | None, policy: ClaimsPolicy, now: float
) -> set[type[InvalidToken]]:
    """Every rule the claims break, written independently from the rules in the brief."""
    broken: set[type[InvalidToken]] = set()
    want = (policy.typ or "JWT").lower()
    seen = (typ or "JWT").lower().removeprefix("application/")
    if seen != want:
        broken.add(InvalidType)
    broken |= {MissingClaim for name in policy.required if name not in body}
    for name in ("iss", "sub", "jti"):
        if name in body and not (type(body[name]) is str and body[name]):
            broken.add(InvalidClaims)
    dates = {}
    for name in ("exp", "nbf", "iat"):
        if name in body:
            if is_number(body[name]):
                dates[name] = body[name]
            else:
                broken.add(InvalidClaims)
    leeway = policy.leeway
    if "exp" in dates and now >= dates["exp"] + leeway:
        broken.add(TokenExpired)
    if "nbf" in dates and now + leeway < dates["nbf"]:
        broken.add(TokenNotYetValid)
    if "iat" in dates and dates["iat"] > now + leeway:
        broken.add(IssuedInFuture)
    if policy.max_lifetime is not None and "exp" in dates:
        start = dates.get("iat", now)
        if dates["exp"] - start > policy.max_lifetime:
            broken.add(LifetimeTooLong)
    if "iss" in body and type(body["iss"]) is str and body["iss"] and body["iss"] != ISS:
        broken.add(InvalidIssuer)
    if "aud" in body:
        aud = body["aud"]
        if type(aud) is str and aud:
            values = [aud]
        elif type(aud) is list and aud and all(type(a) is str and a for a in aud):
            values = aud
        else:
            values = None
            broken.add(InvalidClaims)
        if values is not None and AUD not in values:
            broken.add(InvalidAudience)
    return broken


@SETTINGS
@given(
    exp=st.sampled_from(TIME_VALUES),
    nbf=st.sampled_from([ABSENT] * 6 + TIME_VALUES),
    iat=st.sampled_from(TIME_VALUES),
    iss=st.sampled_from(ISS_VALUES),
    aud=st.sampled_from(AUD_VALUES),
    sub=st.sampled_from(["user-1"] * 4 + STRING_VALUES),
    jti=st.sampled_from(["jti-1"] * 4 + STRING_VALUES),
    typ=st.sampled_from(TYP_VALUES),
    access=st.booleans(),
    leeway=st.sampled_from([0, 1, 30, 300]),
    max_lifetime=st.sampled_from([None, 600, 86400]),
    now_offset=st.sampled_from([0, 1, -1, 30, 299, 300, 301, 600, 601]) | st.floats(-1000, 1000),
)
def test_claim_rules_agree_with_the_oracle(
    exp: Any,
    nbf: Any,
    iat: Any,
    iss: Any,
    aud: Any,
    sub: Any,
    jti: Any,
    typ: str | None,
    access: bool,
    leeway: float,
    max_lifetime: float | None,
    now_offset: float,
) -> None:
    values = {"exp": exp, "nbf": nbf, "iat": iat, "iss": iss, "aud": aud, "sub": sub, "jti": jti}
    body = {name: value for name, value in values.items() if value is not ABSENT}
    policy = ClaimsPolicy(
        issuer=ISS,
        audience=AUD,
        typ="at+jwt" if access else None,
        leeway=leeway,
        max_lifetime=max_lifetime,
    )
    now = NOW + now_offset
    assert math.isfinite(now)
    key = key_for("HS256")
    token = forge(
        key,
        header=header_for(key, typ=typ) if typ else {"alg": "HS256", "kid": key.kid},
        payload=body,
    )
    broken = expected_refusals(body, typ, policy, now)
    out, error = attempt(lambda: decode(token, key, algorithms=["HS256"], policy=policy, now=now))
    if error is not None:
        assert broken, f"refused a token the rules accept: {error!r}"
        assert type(error) in broken, f"{error!r} is not among {sorted(c.__name__ for c in broken)}"
        assert error.code == CODES[type(error)]
    else:
        assert not broken, f"accepted a token that breaks {sorted(c.__name__ for c in broken)}"
        assert out == body
