"""alg "none" (CVE-2015-9235 in jsonwebtoken; RFC 8725 sections 2.1 and 3.1).

"none" does not exist in authgate: a token that says so is refused whatever its
signature, and an allowlist that names it is itself refused.
"""

from __future__ import annotations

import json

import pytest

from _support.tokens import b64, claims, header_for, jbytes, unb64
from authgate.errors import AlgorithmNotAllowed, MalformedToken, UnsupportedAlgorithm
from authgate.jose import ALGORITHMS, Key, KeySet, decode, encode, verify

from ._helpers import ALL_ALGS, ENTRY_POINTS, FAMILY_ALGS, POLICY, key_for, refused

NONE_VARIANTS = ("none", "None", "NONE", "nOnE", "nONE", "NoNe", "none ", " none", "none\u0000")


def none_token(key: Key, alg: str, signature: bytes, *, kid: bool = True) -> str:
    head = header_for(key, alg=alg) if kid else {"alg": alg, "typ": "JWT"}
    return f"{b64(jbytes(head))}.{b64(jbytes(claims()))}.{b64(signature)}"


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("alg_name", NONE_VARIANTS)
@pytest.mark.parametrize("key_alg", FAMILY_ALGS)
@pytest.mark.parametrize("with_kid", [True, False], ids=["kid", "no-kid"])
def test_none_with_a_signature_is_not_allowed(
    entry: str, alg_name: str, key_alg: str, with_kid: bool
) -> None:
    key = key_for(key_alg)
    # The attacker reuses a genuine signature from another token: still refused on alg.
    genuine = key.sign(b"another.token")
    for signature in (b"\x00", b"x" * 32, genuine):
        token = none_token(key, alg_name, signature, kid=with_kid)
        with refused(AlgorithmNotAllowed):
            ENTRY_POINTS[entry](token, key)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("alg_name", NONE_VARIANTS)
def test_none_with_an_empty_signature_is_malformed(entry: str, alg_name: str) -> None:
    # "header.payload." has an empty third segment, which the compact-form rule refuses
    # before the header is even read (order of checks: segments first).
    key = key_for("HS256")
    token = none_token(key, alg_name, b"")
    assert token.endswith(".")
    with refused(MalformedToken):
        ENTRY_POINTS[entry](token, key)


@pytest.mark.parametrize("alg_name", NONE_VARIANTS[:4])
def test_none_is_refused_even_when_every_real_algorithm_is_allowed(alg_name: str) -> None:
    keyset = KeySet([key_for(alg) for alg in ALL_ALGS])
    for alg in ALL_ALGS:
        token = none_token(key_for(alg), alg_name, b"sig")
        with refused(AlgorithmNotAllowed):
            decode(token, keyset, algorithms=sorted(ALGORITHMS), policy=POLICY, now=0)
        with refused(AlgorithmNotAllowed):
            verify(token, keyset, algorithms=sorted(ALGORITHMS))


def test_a_stripped_real_token_rewritten_to_none_is_refused() -> None:
    # The classic attack: take a real token, set alg none, drop or keep the signature.
    key = key_for("ES256")
    real = encode(claims(), key)
    head_seg, payload_seg, sig_seg = real.split(".")
    head = {**json.loads(unb64(head_seg)), "alg": "none"}
    forged = f"{b64(jbytes(head))}.{payload_seg}.{sig_seg}"
    with refused(AlgorithmNotAllowed):
        decode(forged, key, algorithms=["ES256"], policy=POLICY, now=0)
    with refused(MalformedToken):
        decode(f"{b64(jbytes(head))}.{payload_seg}.", key, algorithms=["ES256"], policy=POLICY)


ALLOWLISTS_NAMING_NONE = (
    ["none"],
    ["None"],
    ["NONE"],
    ["nOnE"],
    ["HS256", "none"],
    ["none", "RS256"],
    ("ES256", "none"),
    frozenset({"EdDSA", "none"}),
    [""],
    ["hs256"],
    ["HS256 "],
    ["*"],
)


@pytest.mark.parametrize("algorithms", ALLOWLISTS_NAMING_NONE, ids=repr)
def test_allowlist_naming_none_or_an_unknown_alg_is_refused(algorithms: object) -> None:
    key = key_for("HS256")
    valid = encode(claims(), key)  # a genuine token: only the allowlist is at fault
    for call in (
        lambda: decode(valid, key, algorithms=algorithms, policy=POLICY),
        lambda: verify(valid, key, algorithms=algorithms),
    ):
        with refused(UnsupportedAlgorithm):
            call()


@pytest.mark.parametrize("algorithms", [[], (), set(), "", "HS256", None], ids=repr)
def test_allowlist_must_be_a_non_empty_collection(algorithms: object) -> None:
    # A bare string would be a collection of letters; None and [] mean "anything" elsewhere.
    key = key_for("HS256")
    token = none_token(key, "HS256", b"x")
    with refused(UnsupportedAlgorithm):
        decode(token, key, algorithms=algorithms, policy=POLICY)  # type: ignore[arg-type]
    with refused(UnsupportedAlgorithm):
        verify(token, key, algorithms=algorithms)  # type: ignore[arg-type]


@pytest.mark.parametrize("alg_name", NONE_VARIANTS[:4])
def test_no_key_can_be_made_for_none(alg_name: str) -> None:
    with refused(UnsupportedAlgorithm):
        Key.generate(alg_name)
    with refused(UnsupportedAlgorithm):
        Key.from_secret(b"k" * 64, alg=alg_name)
    with refused(UnsupportedAlgorithm):
        Key.from_jwk({"kty": "oct", "k": b64(b"k" * 64), "alg": alg_name})
    with refused(UnsupportedAlgorithm):
        Key.from_jwk({"kty": "oct", "k": b64(b"k" * 64)}, alg=alg_name)
    with refused(UnsupportedAlgorithm):
        KeySet.from_jwks({"keys": [{"kty": "oct", "k": b64(b"k" * 64), "alg": alg_name}]})
    with refused(UnsupportedAlgorithm):
        Key.from_pem(key_for("ES256").to_pem(), alg=alg_name)
