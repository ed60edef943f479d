"""Signature values that are out of range or in the wrong format.

CVE-2022-21449 ("psychic signatures", Java 15-18): an ECDSA signature with r = s = 0
verified for any message and any key. The same class covers r or s equal to (or above)
the curve order n, DER instead of the JOSE raw R||S form (RFC 7518 section 3.4), wrong
lengths, and the degenerate values of the other families.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from _support.tokens import b64, claims, unb64
from authgate.errors import InvalidSignature
from authgate.jose import Key, encode

from ._helpers import (
    ALL_ALGS,
    CURVE_ORDER,
    EC_ALGS,
    EC_SIZE,
    ENTRY_POINTS,
    RSA_ALGS,
    attacker_key_for,
    key_for,
    private_of,
    refused,
)

_HASHES = {"ES256": "SHA256", "ES384": "SHA384", "ES512": "SHA512"}


def with_signature(token: str, signature: bytes) -> str:
    head_seg, payload_seg, _ = token.split(".")
    return f"{head_seg}.{payload_seg}.{b64(signature)}"


def genuine(alg: str) -> tuple[str, bytes]:
    token = encode(claims(), key_for(alg))
    return token, unb64(token.split(".")[2])


def rs(alg: str) -> tuple[str, int, int]:
    token, sig = genuine(alg)
    size = EC_SIZE[alg]
    return token, int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")


def raw(alg: str, r: int, s: int) -> bytes:
    size = EC_SIZE[alg]
    return r.to_bytes(size, "big") + s.to_bytes(size, "big")


def assert_bad_signature(token: str, key: Key) -> None:
    for entry in ENTRY_POINTS.values():
        for keys in (key, key.public()):
            with refused(InvalidSignature):
                entry(token, keys)


@pytest.mark.parametrize("alg", EC_ALGS)
def test_cve_2022_21449_r_and_s_zero(alg: str) -> None:
    token, _, _ = rs(alg)
    assert_bad_signature(with_signature(token, bytes(2 * EC_SIZE[alg])), key_for(alg))


@pytest.mark.parametrize("alg", EC_ALGS)
@pytest.mark.parametrize(
    "case",
    [
        "r=0",
        "s=0",
        "r=n",
        "s=n",
        "r=s=n",
        "r=0,s=n",
        "r=n,s=0",
        "r=n-1",
        "r=1,s=1",
        "r=s=max",
        "r=max",
        "s=max",
        "swapped",
    ],
)
def test_cve_2022_21449_out_of_range_components(alg: str, case: str) -> None:
    token, r, s = rs(alg)
    n = CURVE_ORDER[alg]
    top = 2 ** (8 * EC_SIZE[alg]) - 1
    values = {
        "r=0": (0, s),
        "s=0": (r, 0),
        "r=n": (n, s),
        "s=n": (r, n),
        "r=s=n": (n, n),
        "r=0,s=n": (0, n),
        "r=n,s=0": (n, 0),
        "r=n-1": (n - 1, s),
        "r=1,s=1": (1, 1),
        "r=s=max": (top, top),
        "r=max": (top, s),
        "s=max": (r, top),
        "swapped": (s, r),
    }
    bad_r, bad_s = values[case]
    assert_bad_signature(with_signature(token, raw(alg, bad_r, bad_s)), key_for(alg))


def test_cve_2022_21449_components_above_n_are_not_reduced() -> None:
    # r + n and s + n name the same residues: a verifier that reduced mod n would accept
    # them. Only P-521 has room for them in its 66-byte fields (n is a 521-bit number).
    token, r, s = rs("ES512")
    n = CURVE_ORDER["ES512"]
    for bad_r, bad_s in ((r + n, s), (r, s + n), (r + n, s + n)):
        assert max(bad_r, bad_s) < 2 ** (8 * EC_SIZE["ES512"])
        assert_bad_signature(with_signature(token, raw("ES512", bad_r, bad_s)), key_for("ES512"))


@pytest.mark.parametrize("alg", EC_ALGS)
def test_curve_orders_used_here_are_right(alg: str) -> None:
    # Sanity check of this module's constants, against pyca directly: (r, n - s) is the
    # other valid ECDSA signature of the same message, which holds only for the true n.
    token, r, s = rs(alg)
    signing_input = token.rsplit(".", 1)[0].encode()
    public = private_of(key_for(alg)).public_key()
    algorithm = ec.ECDSA(getattr(hashes, _HASHES[alg])())
    public.verify(encode_dss_signature(r, CURVE_ORDER[alg] - s), signing_input, algorithm)


@pytest.mark.parametrize("alg", EC_ALGS)
def test_der_encoded_ecdsa_signature_is_refused(alg: str) -> None:
    # RFC 7518 section 3.4: JWS carries R||S; a DER SEQUENCE is a different, refused format,
    # even when it is a genuine signature over the right signing input.
    token, r, s = rs(alg)
    signing_input = token.rsplit(".", 1)[0].encode()
    der = private_of(key_for(alg)).sign(signing_input, ec.ECDSA(getattr(hashes, _HASHES[alg])()))
    for signature in (
        der,
        encode_dss_signature(r, s),
        encode_dss_signature(0, 0),
        b"\x30\x06\x02\x01\x00\x02\x01\x00",
    ):
        assert_bad_signature(with_signature(token, signature), key_for(alg))


@pytest.mark.parametrize("alg", EC_ALGS)
def test_ecdsa_signature_of_a_wrong_length_is_refused(alg: str) -> None:
    token, sig = genuine(alg)
    size = EC_SIZE[alg]
    r, s = sig[:size], sig[size:]
    candidates = [
        sig[:-1],
        sig[1:],
        sig + b"\x00",
        b"\x00" + sig,
        b"\x00" + r + b"\x00" + s,  # each half left-padded by one byte
        r.lstrip(b"\x00")[:-1] + s,
        sig[: size * 2 - 2],
        b"\x00",
        sig[:size],
        sig * 2,
        *(bytes(2 * other) for other in EC_SIZE.values() if other != size),
    ]
    for signature in candidates:
        assert_bad_signature(with_signature(token, signature), key_for(alg))


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_degenerate_signatures_of_the_right_length_are_refused(alg: str) -> None:
    token, sig = genuine(alg)
    size = len(sig)
    key = key_for(alg)
    candidates = [bytes(size), b"\xff" * size, b"\x01" + bytes(size - 1), bytes(size - 1) + b"\x01"]
    if alg in RSA_ALGS:
        n = key.public().to_jwk()["n"]
        modulus = int.from_bytes(unb64(n), "big")
        candidates += [(modulus - 1).to_bytes(size, "big"), modulus.to_bytes(size, "big")]
    for signature in candidates:
        token_with = with_signature(token, signature)
        for entry in ENTRY_POINTS.values():
            with refused(InvalidSignature):
                entry(token_with, key if key.is_symmetric else key.public())


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_signature_of_a_wrong_length_is_refused(alg: str) -> None:
    token, sig = genuine(alg)
    key = key_for(alg)
    keys = key if key.is_symmetric else key.public()
    for signature in (
        sig[:-1],
        sig + b"\x00",
        b"\x00" + sig,
        sig[1:],
        sig[: len(sig) // 2],
        b"\x00",
    ):
        for entry in ENTRY_POINTS.values():
            with refused(InvalidSignature):
                entry(with_signature(token, signature), keys)


@pytest.mark.parametrize("alg", RSA_ALGS)
def test_rsa_signature_with_its_leading_zero_dropped_is_refused(alg: str) -> None:
    """RFC 8017 8.1.2/8.2.2 step 1: an RSA signature is exactly k octets. A genuine one that
    starts with a zero byte keeps its value without it, and OpenSSL's PSS check took that
    shorter form: a second encoding of the same signature. (The test above meets this
    case once in 256 runs; here it is made.)"""
    key = key_for(alg)
    for attempt in range(5000):
        token = encode({**claims(), "n": attempt}, key)
        sig = unb64(token.split(".")[2])
        if sig[0] == 0:
            break
    else:
        pytest.fail("no signature with a leading zero byte in 5000 tokens")
    for entry in ENTRY_POINTS.values():
        entry(token, key.public())  # the genuine token verifies
        with refused(InvalidSignature):
            entry(with_signature(token, sig[1:]), key.public())


def test_ed25519_non_canonical_s_is_refused() -> None:
    # S + L verifies under a lax check (S is reduced mod L); RFC 8032 requires S < L.
    group_order = 2**252 + 27742317777372353535851937790883648493
    token, sig = genuine("EdDSA")
    s = int.from_bytes(sig[32:], "little")
    malleated = sig[:32] + (s + group_order).to_bytes(32, "little")
    assert_bad_signature(with_signature(token, malleated), key_for("EdDSA"))


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_signature_from_another_key_or_token_is_refused(alg: str) -> None:
    key = key_for(alg)
    keys = key if key.is_symmetric else key.public()
    token, _ = genuine(alg)
    # Same kid, same header, signed by the attacker's key of the same algorithm.
    attacker = Key.from_jwk({**attacker_key_for(alg).to_jwk(private=True), "kid": key.kid})
    forged = encode(claims(), attacker)
    # A genuine signature transplanted from another token of the same key.
    other = encode(claims(sub="admin"), key)
    transplanted = with_signature(token, unb64(other.split(".")[2]))
    # A genuine token whose payload was swapped.
    swapped = ".".join([token.split(".")[0], other.split(".")[1], token.split(".")[2]])
    for bad in (forged, transplanted, swapped):
        for entry in ENTRY_POINTS.values():
            with refused(InvalidSignature):
                entry(bad, keys)
