"""Codec fuzzing with hypothesis: ``authgate.jose.decode`` and ``verify`` on hostile input.

Two properties, over arbitrary bytes and text, random three-segment tokens, structured
mutations of valid tokens, and tokens signed by keys that are NOT in the verifier's set:

- nothing but an authgate error escapes: every refusal is an ``InvalidToken`` subclass
  (an ``AuthgateError``) whose ``code`` is its class's stable code;
- nothing is accepted unless a key in the set signed it: whenever ``decode`` or ``verify``
  returns, the input is, byte for byte, a token that this module signed with a trusted key.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _support.tokens import AUD, ISS, NOW, b64
from _support.tokens import claims as valid_claims
from authgate.errors import (
    AlgorithmNotAllowed,
    AuthgateError,
    InvalidHeader,
    InvalidSignature,
    InvalidToken,
    MalformedToken,
    UnknownKey,
)
from authgate.jose import ClaimsPolicy, Key, KeySet, decode, encode, sign, verify

POLICY = ClaimsPolicy(issuer=ISS, audience=AUD)
ALGS = ("HS256", "RS256", "PS384", "ES256", "ES512", "EdDSA")
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Every token this module signs with a trusted key: the only inputs that may be accepted.
SIGNED_BY_TRUSTED: set[str] = set()


@functools.cache
def trusted_key(alg: str) -> Key:
    """The verifier's private key for ``alg`` (its public half is what the set holds)."""
    return Key.generate(alg)


@functools.cache
def attacker_key(alg: str, kid: str | None = None) -> Key:
    """A key for ``alg`` that is not in the set; ``kid`` may copy a trusted key's kid."""
    if alg.startswith("HS"):
        return Key.from_secret(b"attacker-" + alg.encode() * 8, alg=alg, kid=kid)
    return Key.generate(alg, kid=kid)


@functools.cache
def trusted_set() -> KeySet:
    """What a verifier holds: the HMAC secret and the public halves of the others."""
    return KeySet([trusted_key(a) if a.startswith("HS") else trusted_key(a).public() for a in ALGS])


def claims(**overrides: Any) -> dict[str, Any]:
    return valid_claims(**{"sub": "usr_1", **overrides})


def trusted_token(alg: str, **overrides: Any) -> str:
    token = encode(claims(**overrides), trusted_key(alg))
    SIGNED_BY_TRUSTED.add(token)
    return token


def as_text(token: str | bytes) -> str | None:
    if isinstance(token, str):
        return token
    try:
        return token.decode("ascii")
    except UnicodeDecodeError:
        return None


def outcome(call: Callable[[], Any]) -> AuthgateError | None:
    """None when ``call`` accepted; the error when it refused. Anything else propagates."""
    try:
        call()
    except AuthgateError as exc:
        return exc
    return None


def check_refused_or_trusted(token: str | bytes) -> list[AuthgateError]:
    """Run decode and verify against the trusted set (and against each trusted key alone).

    Each call either refuses with an InvalidToken subclass carrying its class's code, or
    accepts; acceptance is allowed only for a token this module signed with a trusted key.
    """
    keysets: list[Key | KeySet] = [trusted_set()]
    keysets += [k for k in trusted_set() if k.alg in ("HS256", "ES256")]
    errors = []
    for keys in keysets:
        for call in (
            lambda: decode(token, keys, algorithms=ALGS, policy=POLICY, now=NOW),  # noqa: B023
            lambda: verify(token, keys, algorithms=ALGS),  # noqa: B023
        ):
            error = outcome(call)
            if error is None:
                assert as_text(token) in SIGNED_BY_TRUSTED, f"accepted a forged token: {token!r}"
                continue
            assert isinstance(error, InvalidToken), repr(error)
            assert error.code == type(error).code
            assert isinstance(error.code, str)
            assert error.code
            errors.append(error)
    return errors


# --- arbitrary input -------------------------------------------------------------------------


@SETTINGS
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_are_refused_with_our_errors(data: bytes) -> None:
    assert len(check_refused_or_trusted(data)) == 6


@SETTINGS
@given(text=st.text(st.characters(), max_size=1024))  # every code point, surrogates too
def test_arbitrary_text_is_refused_with_our_errors(text: str) -> None:
    assert len(check_refused_or_trusted(text)) == 6


@given(size=st.integers(min_value=8193, max_value=70_000), kind=st.sampled_from(["str", "bytes"]))
@settings(max_examples=20, deadline=None, database=None)
def test_oversized_input_is_refused_before_parsing(size: int, kind: str) -> None:
    token = trusted_token("HS256")
    padded = token + "A" * (size - len(token))
    value: str | bytes = padded if kind == "str" else padded.encode()
    errors = check_refused_or_trusted(value)
    assert len(errors) == 6
    assert {error.code for error in errors} == {"token_too_large"}


# --- random three-segment tokens -------------------------------------------------------------

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
header_values = st.one_of(
    st.sampled_from([*ALGS, "none", "None", "HS512", "RSA-OAEP", ""]),
    st.deferred(lambda: st.sampled_from([k.kid for k in trusted_set()])),  # keys made lazily
    st.text(max_size=12),
    st.integers(),
    st.none(),
    st.booleans(),
    st.lists(st.text(max_size=4), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
header_names = st.sampled_from(
    ["alg", "kid", "typ", "cty", "crit", "jku", "jwk", "x5u", "x5c", "b64", "zip", "enc"]
) | st.text(max_size=6)
headers = st.dictionaries(header_names, header_values, max_size=5)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
segments = st.one_of(
    st.text(alphabet=B64URL, max_size=120),
    st.binary(max_size=90).map(b64),
    headers.map(lambda h: b64(json.dumps(h).encode())),
    st.dictionaries(st.text(max_size=5), json_values, max_size=6).map(
        lambda c: b64(json.dumps({**claims(), **c}).encode())
    ),
    st.sampled_from(["", "e30", "bnVsbA", "W10", "IiI", "MQ"]),  # {}, null, [], "", 1
)


@SETTINGS
@given(head=segments, payload=segments, signature=segments)
def test_random_three_segment_tokens_are_refused(head: str, payload: str, signature: str) -> None:
    token = f"{head}.{payload}.{signature}"
    assert len(check_refused_or_trusted(token)) == 6


# --- structured mutations of valid tokens ----------------------------------------------------


def _parts(token: str) -> list[str]:
    parts = token.split(".")
    return [*parts, "", "", ""][:3] if len(parts) < 3 else parts


def _header_of(token: str) -> dict[str, Any]:
    """The header as a dict, or {} when earlier mutations made it unreadable."""
    segment = _parts(token)[0]
    try:
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _with_header(token: str, header: dict[str, Any]) -> str:
    _, payload, signature, *rest = _parts(token)
    return ".".join([b64(json.dumps(header).encode()), payload, signature, *rest])


def _replace(token: str, index: int, segment: str) -> str:
    parts = _parts(token)
    parts[index] = segment
    return ".".join(parts)


def _m_header_member(d: st.DataObject, t: str) -> str:
    return _with_header(t, {**_header_of(t), d.draw(header_names): d.draw(header_values)})


def _m_header_alg(d: st.DataObject, t: str) -> str:
    alg = d.draw(st.sampled_from([*ALGS, "none", "hs256", "ES256K", "HS512"]))
    return _with_header(t, {**_header_of(t), "alg": alg})


def _m_header_kid(d: st.DataObject, t: str) -> str:
    kid = d.draw(st.sampled_from([k.kid for k in trusted_set()]) | st.text(max_size=8))
    return _with_header(t, {**_header_of(t), "kid": kid})


def _m_header_raw(d: st.DataObject, t: str) -> str:
    # Same members, other bytes: whitespace, a BOM, a duplicate member, UTF-16.
    header = json.dumps(_header_of(t))
    variants = [
        " " + header,
        "\ufeff" + header,
        header[:-1] + ', "alg": "none"}' if len(header) > 2 else header,
        header.replace(":", " : "),
    ]
    raw = d.draw(st.sampled_from(variants)).encode("utf-8")
    raw = d.draw(st.sampled_from([raw, raw.decode("utf-8").encode("utf-16")]))
    return _replace(t, 0, b64(raw))


def _m_claims(d: st.DataObject, t: str) -> str:
    changes = d.draw(st.dictionaries(st.sampled_from([*claims(), "nbf", "typ"]), json_values))
    return _replace(t, 1, b64(json.dumps(claims(**changes)).encode()))


def _m_signature_from_other(d: st.DataObject, t: str) -> str:
    other = trusted_token(d.draw(st.sampled_from(ALGS)), jti="other")
    return _replace(t, 2, _parts(other)[2])


def _m_payload_from_other(d: st.DataObject, t: str) -> str:
    other = trusted_token(d.draw(st.sampled_from(ALGS)), sub="other")
    return _replace(t, 1, _parts(other)[1])


def _m_signature_bytes(d: st.DataObject, t: str) -> str:
    raw = d.draw(st.binary(max_size=600) | st.sampled_from([b"", bytes(64), b"\xff" * 64]))
    return _replace(t, 2, b64(raw))


def _m_padding(d: st.DataObject, t: str) -> str:
    return ".".join(seg + "=" * d.draw(st.integers(0, 2)) for seg in t.split("."))


def _m_standard_alphabet(d: st.DataObject, t: str) -> str:
    return t.replace("-", "+").replace("_", "/")


def _m_whitespace(d: st.DataObject, t: str) -> str:
    at = d.draw(st.integers(0, len(t)))
    return t[:at] + d.draw(st.sampled_from([" ", "\n", "\t", "\r\n", "\x00"])) + t[at:]


def _m_segments(d: st.DataObject, t: str) -> str:
    pool = [*t.split("."), ""]
    return ".".join(d.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=5)))


def _m_splice(d: st.DataObject, t: str) -> str:
    start = d.draw(st.integers(0, len(t)))
    stop = d.draw(st.integers(start, len(t)))
    return t[:start] + d.draw(st.text(alphabet=B64URL + ".=+/", max_size=8)) + t[stop:]


def _m_truncate(d: st.DataObject, t: str) -> str:
    return t[: d.draw(st.integers(0, max(0, len(t) - 1)))]


def _m_case(d: st.DataObject, t: str) -> str:
    return t.swapcase()


def _m_unicode_dot(d: st.DataObject, t: str) -> str:
    return t.replace(".", d.draw(st.sampled_from(["\uff0e", "\u2024", "\u3002"])), 1)


def _m_last_bits(d: st.DataObject, t: str) -> str:
    # Non-canonical base64url: same bytes, other trailing bits in the last character.
    index = d.draw(st.integers(0, 2))
    segment = _parts(t)[index]
    if not segment:
        return t
    alphabet = B64URL
    last = alphabet.index(segment[-1]) if segment[-1] in alphabet else 0
    flipped = alphabet[last ^ d.draw(st.integers(1, 15))]
    return _replace(t, index, segment[:-1] + flipped)


MUTATIONS: dict[str, Callable[[st.DataObject, str], str]] = {
    name[3:]: func for name, func in globals().items() if name.startswith("_m_")
}


@SETTINGS
@given(
    alg=st.sampled_from(ALGS),
    names=st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=3),
    data=st.data(),
)
def test_structured_mutations_of_valid_tokens(
    alg: str, names: list[str], data: st.DataObject
) -> None:
    token = trusted_token(alg)
    mutated = token
    for name in names:
        mutated = MUTATIONS[name](data, mutated)
    errors = check_refused_or_trusted(mutated)
    check_refused_or_trusted(mutated.encode("utf-8"))
    if mutated != token:
        # Any other string is refused by every call, whatever the mutation.
        assert len(errors) == 6, mutated


def test_the_harness_accepts_unmutated_tokens() -> None:
    # The control: each trusted token is accepted by the set and by its own key, so the
    # refusals above are the codec's doing, not the harness's.
    for alg in ALGS:
        token = trusted_token(alg)
        own = trusted_key(alg) if alg.startswith("HS") else trusted_key(alg).public()
        for keys in (trusted_set(), own):
            assert decode(token, keys, algorithms=ALGS, policy=POLICY, now=NOW) == claims()
            header, payload = verify(token.encode(), keys, algorithms=ALGS)
            assert header["alg"] == alg
            assert json.loads(payload) == claims()


# --- tokens signed by keys that are not in the set -------------------------------------------

KID_CHOICES = ("own", "trusted_same_alg", "trusted_other_alg", "none")


def _expected(alg: str, kid_choice: str) -> type[InvalidToken]:
    if kid_choice == "own":
        return UnknownKey  # no published key has the attacker's kid
    if kid_choice == "trusted_same_alg":
        return InvalidSignature  # right key found, wrong signer
    if kid_choice == "trusted_other_alg":
        return AlgorithmNotAllowed  # the key is bound to another algorithm
    return UnknownKey  # no kid, and the set holds several keys


def _other_alg(alg: str) -> str:
    return next(a for a in ALGS if a != alg and a[:2] != alg[:2])


def forged_token(alg: str, kid_choice: str, extra: dict[str, Any]) -> str:
    """Claims a verifier would accept, signed by a key outside its set."""
    if kid_choice == "own":
        key = attacker_key(alg)
    elif kid_choice == "trusted_same_alg":
        key = attacker_key(alg, trusted_key(alg).kid)
    elif kid_choice == "trusted_other_alg":
        key = attacker_key(alg, trusted_key(_other_alg(alg)).kid)
    else:
        key = attacker_key(alg)
    payload = json.dumps(claims(**extra)).encode()
    header: dict[str, str] = {"alg": alg, "typ": "JWT"}
    if kid_choice != "none":
        header["kid"] = key.kid
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(payload)}"
    return f"{signing_input}.{b64(key.sign(signing_input.encode()))}"


extra_claims = st.dictionaries(
    st.text(max_size=8).filter(lambda k: k not in claims() and k != "nbf"),
    st.text(max_size=8) | st.integers(-1000, 1000),
    max_size=4,
)


@SETTINGS
@given(alg=st.sampled_from(ALGS), kid_choice=st.sampled_from(KID_CHOICES), extra=extra_claims)
def test_tokens_signed_by_keys_outside_the_set_are_refused(
    alg: str, kid_choice: str, extra: dict[str, Any]
) -> None:
    token = forged_token(alg, kid_choice, extra)
    expected = _expected(alg, kid_choice)
    for call in (
        lambda: decode(token, trusted_set(), algorithms=ALGS, policy=POLICY, now=NOW),
        lambda: verify(token, trusted_set(), algorithms=ALGS),
    ):
        with pytest.raises(InvalidToken) as info:
            call()
        assert type(info.value) is expected
        assert info.value.code == expected.code
    # The same claims signed by the trusted key pass: only the signer differs.
    good = encode(claims(**extra), trusted_key(alg))
    decode(good, trusted_set(), algorithms=ALGS, policy=POLICY, now=NOW)


@SETTINGS
@given(alg=st.sampled_from(ALGS), extra=extra_claims)
def test_a_single_key_refuses_a_look_alike_signer(alg: str, extra: dict[str, Any]) -> None:
    # Verifying with one Key (no set): the forged token copies its kid; the signature decides.
    token = forged_token(alg, "trusted_same_alg", extra)
    own = trusted_key(alg)
    key = own if own.is_symmetric else own.public()
    with pytest.raises(InvalidSignature) as info:
        decode(token, key, algorithms=[alg], policy=POLICY, now=NOW)
    assert info.value.code == "invalid_signature"


PUBLIC_FORMS: dict[str, Callable[[Key], bytes]] = {
    "pem": lambda k: k.to_pem(),
    "jwk": lambda k: json.dumps(k.to_jwk()).encode(),
    "jwk_sorted": lambda k: json.dumps(k.to_jwk(), sort_keys=True, separators=(",", ":")).encode(),
    "kid": lambda k: k.kid.encode(),
}


@SETTINGS
@given(
    target=st.sampled_from([a for a in ALGS if not a.startswith("HS")]),
    hs=st.sampled_from(["HS256", "HS384", "HS512"]),
    form=st.sampled_from(sorted(PUBLIC_FORMS)),
    with_kid=st.booleans(),
)
def test_hmac_keyed_with_a_published_public_key_is_refused(
    target: str, hs: str, form: str, with_kid: bool
) -> None:
    # The classic key confusion: HMAC over the token with the verifier's public key as secret.
    public = trusted_key(target).public()
    secret = PUBLIC_FORMS[form](public)
    header = {"alg": hs, **({"kid": public.kid} if with_kid else {})}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}"
    digest = getattr(hashlib, f"sha{hs[2:]}")
    mac = hmac.new(secret, signing_input.encode(), digest).digest()
    token = f"{signing_input}.{b64(mac)}"
    for keys in (trusted_set(), public):
        # An HMAC algorithm outside the allowlist stops first; then the key found by kid (or
        # the only key) is bound to its own algorithm; without a kid, a set of several keys
        # names none.
        named = with_kid or keys is public
        expected = AlgorithmNotAllowed if hs not in ALGS or named else UnknownKey
        with pytest.raises(InvalidToken) as info:
            decode(token, keys, algorithms=ALGS, policy=POLICY, now=NOW)
        assert type(info.value) is expected
        assert info.value.code == expected.code


@SETTINGS
@given(alg=st.sampled_from(ALGS), signature=st.sampled_from(["", "AA", "e30"]))
def test_embedded_keys_and_alg_none_are_refused(alg: str, signature: str) -> None:
    # The attacker ships its own key in the header, or claims no signature at all.
    attacker = attacker_key(alg)
    jwk = attacker.to_jwk() if not attacker.is_symmetric else {"kty": "oct", "k": "AAAA"}
    cases = [
        ({"alg": alg, "jwk": jwk}, InvalidHeader),
        ({"alg": alg, "jku": "https://evil.example/jwks"}, InvalidHeader),
        ({"alg": "none"}, AlgorithmNotAllowed),
        ({"alg": "none", "kid": trusted_key(alg).kid}, AlgorithmNotAllowed),
    ]
    for header, expected in cases:
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}"
        sig = b64(attacker.sign(signing_input.encode())) if header["alg"] != "none" else signature
        token = f"{signing_input}.{sig}"
        if not sig:
            expected = MalformedToken  # an empty signature segment is a malformed token
        with pytest.raises(InvalidToken) as info:
            decode(token, trusted_set(), algorithms=ALGS, policy=POLICY, now=NOW)
        assert type(info.value) is expected, (header, info.value)
        assert info.value.code == expected.code


def test_sign_cannot_produce_an_accepted_token_with_an_outside_key() -> None:
    # ``sign`` with an attacker's key that copies every trusted kid: all refused.
    for alg in ALGS:
        forged = sign(json.dumps(claims()).encode(), attacker_key(alg, trusted_key(alg).kid))
        with pytest.raises(InvalidSignature) as info:
            verify(forged, trusted_set(), algorithms=ALGS)
        assert info.value.code == "invalid_signature"
