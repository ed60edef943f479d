"""A key is bound to exactly one algorithm (RFC 8725 sections 2.1, 3.1, 3.2, 3.4, 3.5).

- cross-family and cross-size algorithms: a token that says PS256 for an RS256 key,
  ES384 for an ES256 key, EdDSA for an ES256 key... is AlgorithmNotAllowed, even when its
  signature is genuine for the same key material;
- CVE-2022-23539 (jsonwebtoken): legacy or weak key types are refused when a key is made;
- invalid-curve inputs and short HMAC secrets are refused when a key is made.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import cryptography
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa, x25519
from cryptography.utils import CryptographyDeprecationWarning

from _support.tokens import b64, claims, forge, header_for, unb64
from authgate.errors import AlgorithmNotAllowed, InvalidKey
from authgate.jose import ALGORITHMS, Key, KeySet, decode, encode, verify

from ._helpers import (
    ALL_ALGS,
    ASYM_ALGS,
    EC_ALGS,
    EC_SIZE,
    HMAC_ALGS,
    POLICY,
    RSA_ALGS,
    attacker_key_for,
    key_for,
    refused,
)

PAIRS = [(k, t) for k in ALL_ALGS for t in ALL_ALGS if k != t]


def signer_for(target: Key, token_alg: str) -> Key:
    """A key that signs ``token_alg`` under ``target``'s kid, reusing target's material
    when the family allows it (so the signature is genuine for that material)."""
    jwk = {**target.to_jwk(private=True), "alg": token_alg, "kid": target.kid}
    try:
        return Key.from_jwk(jwk)
    except InvalidKey:
        other = {**attacker_key_for(token_alg).to_jwk(private=True), "kid": target.kid}
        return Key.from_jwk(other)


def verifier(key: Key) -> Key:
    return key if key.is_symmetric else key.public()


@pytest.mark.parametrize(
    ("key_alg", "token_alg"), PAIRS, ids=[f"{k}-key-{t}-token" for k, t in PAIRS]
)
def test_token_alg_other_than_the_key_alg_is_not_allowed(key_alg: str, token_alg: str) -> None:
    target = key_for(key_alg)
    token = encode(claims(), signer_for(target, token_alg))
    keys = verifier(target)
    for verify_keys in (keys, KeySet([keys])):
        for algorithms in ([key_alg, token_alg], sorted(ALGORITHMS)):
            with refused(AlgorithmNotAllowed):
                decode(token, verify_keys, algorithms=algorithms, policy=POLICY, now=0)
            with refused(AlgorithmNotAllowed):
                verify(token, verify_keys, algorithms=algorithms)


@pytest.mark.parametrize("rsa_alg", RSA_ALGS)
def test_same_rsa_material_under_every_other_rsa_alg_is_refused(rsa_alg: str) -> None:
    # PS256 vs RS256 and friends: the same private key, a perfectly valid signature.
    target = key_for(rsa_alg)
    for other in RSA_ALGS:
        if other == rsa_alg:
            continue
        signer = Key.from_pem(target.to_pem(private=True), alg=other, kid=target.kid)
        token = encode(claims(), signer)
        with refused(AlgorithmNotAllowed):
            decode(token, target.public(), algorithms=sorted(ALGORITHMS), policy=POLICY, now=0)


@pytest.mark.parametrize("key_alg", ALL_ALGS)
def test_key_alg_missing_from_the_allowlist_is_not_allowed(key_alg: str) -> None:
    key = key_for(key_alg)
    token = encode(claims(), key)
    others = sorted(ALGORITHMS - {key_alg})
    with refused(AlgorithmNotAllowed):
        decode(token, key, algorithms=others, policy=POLICY, now=0)
    with refused(AlgorithmNotAllowed):
        verify(token, key, algorithms=others[:1])


ALG_LOOKALIKES = (
    "hs256",
    "Hs256",
    "HS-256",
    "HS256 ",
    " HS256",
    "HS256\u0000",
    "HS 256",
    "HMAC256",
    "HS1",
    "HS128",
    "rs256",
    "RS256\n",
    "RSA256",
    "RSA-OAEP",
    "RS1",
    "ps256",
    "ES256K",
    "es256",
    "ECDSA",
    "EDDSA",
    "eddsa",
    "Ed25519",
    "Ed448",
    "ES256\u200b",
    "\uff28S256",
    "dir",
    "A256GCM",
)


@pytest.mark.parametrize("alg_name", ALG_LOOKALIKES, ids=repr)
def test_alg_lookalikes_are_not_allowed(alg_name: str) -> None:
    # Compared exactly: no case folding, trimming or aliasing, even with a valid signature.
    keyset = KeySet([key_for(a) for a in ALL_ALGS])
    for alg in ("HS256", "RS256", "ES256", "EdDSA"):
        key = key_for(alg)
        token = forge(key, header=header_for(key, alg=alg_name))
        with refused(AlgorithmNotAllowed):
            decode(token, keyset, algorithms=sorted(ALGORITHMS), policy=POLICY, now=0)
        with refused(AlgorithmNotAllowed):
            verify(token, key, algorithms=[alg])


# --- key construction refuses the wrong family (no silent re-binding) --------------------


@pytest.mark.parametrize("source", ASYM_ALGS)
@pytest.mark.parametrize("alg", ALL_ALGS)
def test_from_pem_refuses_a_key_of_another_family(source: str, alg: str) -> None:
    key = key_for(source)
    same_family = source[:2] == alg[:2] or {source[:2], alg[:2]} <= {"RS", "PS"}
    if same_family and (source not in EC_ALGS or source == alg):
        # The same material under a sibling algorithm is a deliberate operator choice.
        assert Key.from_pem(key.to_pem(), alg=alg).alg == alg
        return
    for pem in (key.to_pem(), key.to_pem(private=True)):
        with refused(InvalidKey):
            Key.from_pem(pem, alg=alg)


@pytest.mark.parametrize("source", ALL_ALGS)
@pytest.mark.parametrize("alg", ALL_ALGS)
def test_from_jwk_refuses_disagreeing_algorithms(source: str, alg: str) -> None:
    if source == alg:
        return
    jwk = key_for(source).to_jwk(private=True)
    # The JWK says one algorithm and the caller another: never guess.
    with refused(InvalidKey):
        Key.from_jwk(jwk, alg=alg)


@pytest.mark.parametrize("ec_alg", EC_ALGS)
def test_ec_jwk_with_a_curve_for_another_alg_is_refused(ec_alg: str) -> None:
    jwk = key_for(ec_alg).public().to_jwk()
    for other in EC_ALGS:
        if other != ec_alg:
            with refused(InvalidKey):
                Key.from_jwk({**jwk, "alg": other})
            without_alg = {k: v for k, v in jwk.items() if k != "alg"}
            with refused(InvalidKey):
                Key.from_jwk(without_alg, alg=other)


@pytest.mark.parametrize("use", ["enc", "", "SIG", "sig ", 1])
def test_jwk_use_other_than_sig_is_refused(use: Any) -> None:
    jwk = {**key_for("ES256").public().to_jwk(), "use": use}
    with refused(InvalidKey):
        Key.from_jwk(jwk)


@pytest.mark.parametrize("alg", ["RS256", "PS256", "HS256"])
def test_jwk_that_does_not_say_its_algorithm_is_refused(alg: str) -> None:
    # RSA and oct keys do not imply an algorithm: guessing one is how confusion starts.
    jwk = {k: v for k, v in key_for(alg).to_jwk(private=True).items() if k != "alg"}
    with refused(InvalidKey):
        Key.from_jwk(jwk)
    with refused(InvalidKey):
        KeySet.from_jwks({"keys": [jwk]})


# --- CVE-2022-23539: legacy and weak key types -------------------------------------------


# DSA is deprecated by cryptography (51+), so the legacy key is a fixed PEM file: no test calls
# the deprecated key generator, and loading it is expected to warn from 51 on (see
# _legacy_warning); before 51 it must load silently (filterwarnings = error).
_DSA_PEM = (Path(__file__).parent / "data" / "dsa1024.pem").read_bytes()
_DSA_WARNS = int(cryptography.__version__.split(".")[0]) >= 51


def _dsa_warning() -> contextlib.AbstractContextManager[Any]:
    """The deprecation warning of loading a DSA key, where this cryptography gives one."""
    if not _DSA_WARNS:
        return contextlib.nullcontext()
    return pytest.warns(CryptographyDeprecationWarning, match="DSA")


def _pem(private: Any, *, public: bool) -> bytes:
    if isinstance(private, bytes):  # the fixed DSA key: only its public half is derived
        if not public:
            return private
        with _dsa_warning():
            loaded = serialization.load_pem_private_key(private, password=None)
        return loaded.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    if public:
        return private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def weak_keys() -> dict[str, Any]:
    return {
        "rsa1024": rsa.generate_private_key(public_exponent=65537, key_size=1024),
        "dsa1024": _DSA_PEM,
        "secp256k1": ec.generate_private_key(ec.SECP256K1()),
        "secp192r1": ec.generate_private_key(ec.SECP192R1()),
        "secp224r1": ec.generate_private_key(ec.SECP224R1()),
        "brainpoolP256r1": ec.generate_private_key(ec.BrainpoolP256R1()),
        "ed448": ed448.Ed448PrivateKey.generate(),
        "x25519": x25519.X25519PrivateKey.generate(),
    }


WEAK = (
    "rsa1024",
    "dsa1024",
    "secp256k1",
    "secp192r1",
    "secp224r1",
    "brainpoolP256r1",
    "ed448",
    "x25519",
)


@pytest.mark.parametrize("weak", WEAK)
@pytest.mark.parametrize("alg", ASYM_ALGS)
@pytest.mark.parametrize("public", [True, False], ids=["public", "private"])
def test_cve_2022_23539_legacy_or_weak_key_types_are_refused(
    weak_keys: dict[str, Any], weak: str, alg: str, public: bool
) -> None:
    pem = _pem(weak_keys[weak], public=public)
    with _legacy_warning(weak), refused(InvalidKey):
        Key.from_pem(pem, alg=alg)


def _legacy_warning(weak: str) -> contextlib.AbstractContextManager[Any]:
    """Loading a DSA key warns (deprecated in cryptography 51); it must still be refused."""
    if weak != "dsa1024":
        return contextlib.nullcontext()
    return _dsa_warning()


@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_cve_2022_23539_rsa_jwk_under_2048_bits_is_refused(
    weak_keys: dict[str, Any], alg: str
) -> None:
    numbers = weak_keys["rsa1024"].public_key().public_numbers()
    n = numbers.n.to_bytes(128, "big")
    jwk = {"kty": "RSA", "alg": alg, "n": b64(n), "e": b64(b"\x01\x00\x01")}
    with refused(InvalidKey):
        Key.from_jwk(jwk)


@pytest.mark.parametrize("alg", HMAC_ALGS)
def test_hmac_secret_shorter_than_the_hash_is_refused(alg: str) -> None:
    # RFC 8725 section 3.5 / RFC 7518 section 3.2: at least the hash output size.
    size = int(alg[2:]) // 8
    for short in (b"", b"k", b"\x00" * (size - 1), bytes(range(size - 1))):
        with refused(InvalidKey):
            Key.from_secret(short, alg=alg)
        with refused(InvalidKey):
            Key.from_jwk({"kty": "oct", "alg": alg, "k": b64(short) or "AA"})
    assert Key.from_secret(bytes(range(size)), alg=alg).alg == alg


@pytest.mark.parametrize("alg", ASYM_ALGS)
def test_from_secret_refuses_asymmetric_algorithms(alg: str) -> None:
    with refused(InvalidKey):
        Key.from_secret(b"s" * 64, alg=alg)


# --- RFC 8725 section 3.4: validate cryptographic inputs (invalid-curve points) ------------


def _ec_jwk(alg: str, x: int, y: int) -> dict[str, str]:
    size = EC_SIZE[alg]
    crv = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg]
    return {
        "kty": "EC",
        "crv": crv,
        "alg": alg,
        "x": b64(x.to_bytes(size, "big")),
        "y": b64(y.to_bytes(size, "big")),
    }


FIELD_PRIME = {
    "ES256": 2**256 - 2**224 + 2**192 + 2**96 - 1,
    "ES384": 2**384 - 2**128 - 2**96 + 2**32 - 1,
    "ES512": 2**521 - 1,
}


def _xy(alg: str) -> tuple[dict[str, str], int, int]:
    jwk = key_for(alg).public().to_jwk()
    return jwk, int.from_bytes(unb64(jwk["x"]), "big"), int.from_bytes(unb64(jwk["y"]), "big")


@pytest.mark.parametrize("alg", EC_ALGS)
def test_ec_points_off_the_curve_are_refused(alg: str) -> None:
    jwk, x, y = _xy(alg)
    prime = FIELD_PRIME[alg]
    for bad_x, bad_y in ((x, y ^ 1), (x ^ 1, y), (0, 0), (x, 0), (0, y), (prime, y), (x, prime)):
        with refused(InvalidKey):
            Key.from_jwk(_ec_jwk(alg, bad_x, bad_y))
    # Coordinates of the wrong length (another curve's point under this crv).
    other = key_for("ES384" if alg != "ES384" else "ES256").public().to_jwk()
    with refused(InvalidKey):
        Key.from_jwk({**jwk, "x": other["x"], "y": other["y"]})
    with refused(InvalidKey):
        Key.from_jwk({**jwk, "y": b64(unb64(jwk["y"])[1:])})


def test_ec_coordinates_not_reduced_below_the_field_prime_are_refused() -> None:
    # Only P-521 leaves room: 66 bytes hold 528 bits, p = 2**521 - 1. x + p names the same
    # point, but it is not a field element (SEC 1 section 2.3.6), so the JWK is not canonical.
    _, x, y = _xy("ES512")
    for bad_x, bad_y in ((x + FIELD_PRIME["ES512"], y), (x, y + FIELD_PRIME["ES512"])):
        with refused(InvalidKey):
            Key.from_jwk(_ec_jwk("ES512", bad_x, bad_y))


def test_ed25519_public_key_of_the_wrong_length_is_refused() -> None:
    jwk = key_for("EdDSA").public().to_jwk()
    raw = unb64(jwk["x"])
    for bad in (raw[:31], raw + b"\x00", b"", raw * 2):
        with refused(InvalidKey):
            Key.from_jwk({**jwk, "x": b64(bad) or "AA"})
    with refused(InvalidKey):
        Key.from_jwk({**jwk, "crv": "Ed448"})
    with refused(InvalidKey):
        Key.from_jwk({**jwk, "crv": "X25519"})
