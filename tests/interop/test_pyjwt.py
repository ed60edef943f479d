"""Interop with PyJWT: our tokens verify there, theirs verify here, and JWKs cross over."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms
from jwt.utils import base64url_decode

from authgate.errors import InvalidAudience, InvalidIssuer, InvalidSignature
from authgate.jose import ALGORITHMS, Key, KeySet, encode

ALGS = sorted(ALGORITHMS)
REQUIRED = ["exp", "iat", "iss", "aud", "sub", "jti"]
PYJWT_ALGS = get_default_algorithms()


def test_every_algorithm_is_covered() -> None:
    # The parametrized tests below run over ALGORITHMS; this pins what that set is.
    assert set(ALGS) == {
        "HS256", "HS384", "HS512",
        "RS256", "RS384", "RS512",
        "PS256", "PS384", "PS512",
        "ES256", "ES384", "ES512",
        "EdDSA",
    }  # fmt: skip
    assert set(ALGS) <= set(PYJWT_ALGS)


# --- helpers ----------------------------------------------------------------------------------


def pyjwt_verify_key(key: Key) -> Any:
    """The key object PyJWT verifies with: the secret bytes, or a loaded public key."""
    if key.is_symmetric:
        return base64url_decode(key.to_jwk(private=True)["k"])
    return serialization.load_pem_public_key(key.to_pem())


def pyjwt_sign_key(key: Key) -> Any:
    """The key object PyJWT signs with: the secret bytes, or a loaded private key."""
    if key.is_symmetric:
        return base64url_decode(key.to_jwk(private=True)["k"])
    return serialization.load_pem_private_key(key.to_pem(private=True), password=None)


def pyjwt_decode(token: str, key: Any, alg: str, interop: Any) -> dict[str, Any]:
    return jwt.decode_complete(
        token,
        key,
        algorithms=[alg],
        audience=interop.audience,
        issuer=interop.issuer,
        options={"require": REQUIRED},
    )


@pytest.fixture(scope="module")
def verify_set(interop: Any) -> KeySet:
    """Every key of the session, public only where there is a public part: kid selects."""
    return KeySet(k if k.is_symmetric else k.public() for k in interop.keys.values())


@pytest.fixture(scope="module")
def native_keys() -> dict[str, Any]:
    """Keys made by cryptography (not by us), one per family; one RSA key serves RS* and PS*."""
    return {
        "HS": b"\x5a" * 17 + bytes(range(47)),  # 64 bytes: long enough for HS512
        "RS": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "PS": None,
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "ES384": ec.generate_private_key(ec.SECP384R1()),
        "ES512": ec.generate_private_key(ec.SECP521R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
    }


def signed_by_pyjwt(interop: Any, alg: str, claims: dict[str, Any]) -> str:
    """``claims`` signed by PyJWT with our private key for ``alg`` (and its kid)."""
    key = interop.keys[alg]
    token: str = jwt.encode(claims, pyjwt_sign_key(key), algorithm=alg, headers={"kid": key.kid})
    return token


def native_for(native_keys: dict[str, Any], alg: str) -> Any:
    family = alg[:2]
    if family in ("HS", "RS"):
        return native_keys[family]
    if family == "PS":
        return native_keys["RS"]
    return native_keys[alg]


# --- our tokens in PyJWT ----------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_our_token_verifies_in_pyjwt(interop: Any, alg: str) -> None:
    key, claims, token = interop.signed_here(alg)

    result = pyjwt_decode(token, pyjwt_verify_key(key), alg, interop)

    assert result["payload"] == claims
    assert result["header"] == {"alg": alg, "kid": key.kid, "typ": "JWT"}


def test_our_access_token_verifies_in_pyjwt(interop: Any) -> None:
    key, claims, token = interop.access_token_here("ES256")

    result = pyjwt_decode(token, pyjwt_verify_key(key), "ES256", interop)

    assert result["payload"] == claims
    assert result["header"]["typ"] == "at+jwt"


@pytest.mark.parametrize("alg", ALGS)
def test_pyjwt_refuses_our_token_with_a_swapped_payload(interop: Any, alg: str) -> None:
    token = interop.swapped_payload(alg)

    with pytest.raises(jwt.InvalidSignatureError):
        pyjwt_decode(token, pyjwt_verify_key(interop.keys[alg]), alg, interop)


def test_pyjwt_refuses_our_token_for_another_audience(interop: Any) -> None:
    key = interop.keys["ES256"]
    token = encode(interop.claims(aud="other-api"), key)

    with pytest.raises(jwt.InvalidAudienceError):
        pyjwt_decode(token, pyjwt_verify_key(key), "ES256", interop)


# --- PyJWT's tokens here ----------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_pyjwt_token_verifies_here(interop: Any, verify_set: KeySet, alg: str) -> None:
    claims = interop.claims()
    token = signed_by_pyjwt(interop, alg, claims)

    assert interop.decode_here(token, verify_set, alg) == claims


def test_pyjwt_access_token_verifies_here(interop: Any, verify_set: KeySet) -> None:
    key = interop.keys["ES256"]
    claims = interop.claims(client_id="authgate", sid="sid-1")
    token = jwt.encode(
        claims, pyjwt_sign_key(key), algorithm="ES256", headers={"kid": key.kid, "typ": "at+jwt"}
    )

    assert interop.decode_here(token, verify_set, "ES256", access=True) == claims


@pytest.mark.parametrize("alg", ALGS)
def test_pyjwt_token_signed_with_another_key_is_refused_here(
    interop: Any, verify_set: KeySet, alg: str
) -> None:
    key = interop.keys[alg]
    impostor = interop.other_key(alg)
    token = jwt.encode(
        interop.claims(), pyjwt_sign_key(impostor), algorithm=alg, headers={"kid": key.kid}
    )

    interop.refused_here(token, verify_set, alg, InvalidSignature, "invalid_signature")


def test_pyjwt_token_from_another_issuer_is_refused_here(interop: Any, verify_set: KeySet) -> None:
    token = signed_by_pyjwt(interop, "ES256", interop.claims(iss="https://evil.example.com"))

    interop.refused_here(token, verify_set, "ES256", InvalidIssuer, "invalid_issuer")


def test_pyjwt_token_for_another_audience_is_refused_here(interop: Any, verify_set: KeySet) -> None:
    token = signed_by_pyjwt(interop, "ES256", interop.claims(aud=["other-api", "another-api"]))

    interop.refused_here(token, verify_set, "ES256", InvalidAudience, "invalid_audience")


def test_pyjwt_token_with_an_audience_list_verifies_here(interop: Any, verify_set: KeySet) -> None:
    claims = interop.claims(aud=["other-api", interop.audience])
    token = signed_by_pyjwt(interop, "ES256", claims)

    assert interop.decode_here(token, verify_set, "ES256") == claims


# --- JWKs across ------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_our_jwk_loads_in_pyjwk(interop: Any, alg: str) -> None:
    key = interop.keys[alg]
    exported = interop.secret_or_public_jwk(alg)

    pyjwk = jwt.PyJWK(exported)

    assert pyjwk.key_id == key.kid
    assert pyjwk.algorithm_name == alg
    claims = interop.claims()
    assert pyjwt_decode(encode(claims, key), pyjwk.key, alg, interop)["payload"] == claims


@pytest.mark.parametrize("alg", ALGS)
def test_our_private_jwk_signs_in_pyjwk(interop: Any, verify_set: KeySet, alg: str) -> None:
    key = interop.keys[alg]
    pyjwk = jwt.PyJWK(key.to_jwk(private=True))
    claims = interop.claims()

    token = jwt.encode(claims, pyjwk.key, algorithm=alg, headers={"kid": pyjwk.key_id})

    assert interop.decode_here(token, verify_set, alg) == claims


@pytest.mark.parametrize("alg", ALGS)
def test_pyjwt_jwk_loads_here(interop: Any, native_keys: dict[str, Any], alg: str) -> None:
    native = native_for(native_keys, alg)
    pyjwt_alg = PYJWT_ALGS[alg]
    private_jwk = pyjwt_alg.to_jwk(native, as_dict=True)

    ours = Key.from_jwk(private_jwk, alg=alg)

    assert ours.alg == alg
    assert ours.can_sign
    if not ours.is_symmetric:
        public_jwk = pyjwt_alg.to_jwk(native.public_key(), as_dict=True)
        from_public = Key.from_jwk(public_jwk, alg=alg)
        assert not from_public.can_sign
        assert from_public.kid == ours.kid  # the RFC 7638 thumbprint of the same public key
        exported = ours.to_jwk()
        members = [m for m in ("kty", "crv", "n", "e", "x", "y") if m in public_jwk]
        assert len(members) >= 3
        assert {m: exported[m] for m in members} == {m: public_jwk[m] for m in members}
        verify_key: Any = native.public_key()
    else:
        verify_key = native
    claims = interop.claims()

    # PyJWT signs with its own key object; ours, loaded from PyJWT's JWK, verifies.
    theirs = jwt.encode(claims, native, algorithm=alg, headers={"kid": ours.kid})
    assert interop.decode_here(theirs, ours, alg) == claims
    # And the other way round.
    assert pyjwt_decode(encode(claims, ours), verify_key, alg, interop)["payload"] == claims
