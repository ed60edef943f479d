"""RS/ES/EdDSA -> HS key confusion (RFC 8725 sections 2.1 and 3.1).

The attacker takes the verifier's PUBLIC key in whatever encoding it can find (PEM, DER,
OpenSSH, JWK, certificate, raw point) and uses those bytes as an HMAC secret:

- CVE-2015-9235 (jsonwebtoken): an RS256 public key used as the HS256 secret;
- CVE-2017-11424 (PyJWT): the same with a PKCS#1 "BEGIN RSA PUBLIC KEY" PEM;
- CVE-2022-29217 (PyJWT) and CVE-2024-33663 (python-jose): OpenSSH ECDSA keys and other formats;
- CVE-2022-23541 (jsonwebtoken): a key-lookup path that lets the token pick an HMAC verification.

authgate binds each key to one algorithm, so a forged HS token is refused as
AlgorithmNotAllowed before any HMAC is computed; and ``Key.from_secret`` refuses every
public-key encoding it can recognise as a secret (defence in depth).
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from _support.tokens import b64, claims, jbytes
from authgate.errors import AlgorithmNotAllowed, InvalidKey, InvalidSignature
from authgate.jose import ALGORITHMS, Key, KeySet, decode, encode, verify

from ._helpers import (
    ASYM_ALGS,
    EC_ALGS,
    FAMILY_ENCODINGS,
    HMAC_ALGS,
    POLICY,
    family_of,
    key_for,
    public_encodings,
    refused,
)

_HASH = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}

CASES = [
    (target, encoding) for target in ASYM_ALGS for encoding in FAMILY_ENCODINGS[family_of(target)]
]


def hmac_forge(secret: bytes, hs_alg: str, head: dict[str, object]) -> str:
    """What an attacker builds with nothing but the public key bytes and the stdlib."""
    signing_input = f"{b64(jbytes(head))}.{b64(jbytes(claims()))}".encode()
    mac = hmac.new(secret, signing_input, _HASH[hs_alg]).digest()
    return f"{signing_input.decode()}.{b64(mac)}"


def assert_refused_everywhere(token: str, public: Key, keyset: KeySet, hs_alg: str) -> None:
    allowlists = ([hs_alg, public.alg], sorted(ALGORITHMS), [public.alg])
    for keys in (public, keyset, KeySet([public])):
        for algorithms in allowlists:
            with refused(AlgorithmNotAllowed):
                decode(token, keys, algorithms=algorithms, policy=POLICY, now=0)
            with refused(AlgorithmNotAllowed):
                verify(token, keys, algorithms=algorithms)


@pytest.mark.parametrize("hs_alg", HMAC_ALGS)
@pytest.mark.parametrize(("target", "encoding"), CASES, ids=[f"{t}-{e}" for t, e in CASES])
def test_hs_token_forged_with_public_key_encoding_is_not_allowed(
    target: str, encoding: str, hs_alg: str, public_keyset: KeySet
) -> None:
    public = key_for(target).public()
    secret = public_encodings(target)[encoding]
    with_kid = {"alg": hs_alg, "kid": public.kid, "typ": "JWT"}
    without_kid = {"alg": hs_alg, "typ": "JWT"}
    # With a kid the key is found and its binding refuses HS; without one, the only key is.
    assert_refused_everywhere(hmac_forge(secret, hs_alg, with_kid), public, public_keyset, hs_alg)
    for keys in (public, KeySet([public])):
        for algorithms in ([hs_alg, target], sorted(ALGORITHMS)):
            with refused(AlgorithmNotAllowed):
                decode(
                    hmac_forge(secret, hs_alg, without_kid),
                    keys,
                    algorithms=algorithms,
                    policy=POLICY,
                    now=0,
                )


SECRET_CASES = [(t, e) for t, e in CASES if e != "ed25519_raw"]


@pytest.mark.parametrize("hs_alg", HMAC_ALGS)
@pytest.mark.parametrize(
    ("target", "encoding"), SECRET_CASES, ids=[f"{t}-{e}" for t, e in SECRET_CASES]
)
def test_from_secret_refuses_public_key_encoding(target: str, encoding: str, hs_alg: str) -> None:
    secret = public_encodings(target)[encoding]
    with refused(InvalidKey):
        Key.from_secret(secret, alg=hs_alg)
    with refused(InvalidKey):
        Key.from_secret(secret, alg=hs_alg, kid="configured")
    try:
        text = secret.decode("utf-8")
    except UnicodeDecodeError:
        return  # binary encodings have no str form
    with refused(InvalidKey):
        Key.from_secret(text, alg=hs_alg)


@pytest.mark.parametrize("hs_alg", HMAC_ALGS)
@pytest.mark.parametrize("encoding", FAMILY_ENCODINGS["RSA"])
def test_from_jwk_oct_refuses_public_key_encoding_as_k(encoding: str, hs_alg: str) -> None:
    # The same secret smuggled through a JWK {"kty": "oct"} must meet the same check.
    secret = public_encodings("RS256")[encoding]
    with refused(InvalidKey):
        Key.from_jwk({"kty": "oct", "k": b64(secret), "alg": hs_alg})


@pytest.mark.parametrize("target", ["PS256", "ES256", "EdDSA"])
@pytest.mark.parametrize("label", ["pem_spki", "x509_pem"])
def test_from_secret_refuses_pem_with_rfc7468_explanatory_text(target: str, label: str) -> None:
    # RFC 7468 section 2: text before the encapsulation boundary is allowed, and tools emit
    # it (`openssl x509 -text`, `openssl pkcs12` "Bag Attributes"). It is still a PEM public
    # key, and PyJWT's is_pem_format (a regex *search*) refuses it as an HMAC secret.
    pem = public_encodings(target)[label]
    preamble = (
        b"Bag Attributes\n"
        b"    localKeyID: 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F 10 11 12 13 14\n"
        b"subject=CN = authgate security test\n"
    )
    for secret in (preamble + pem, b"\n" * 80 + pem):
        with refused(InvalidKey):
            Key.from_secret(secret, alg="HS256")


def test_ed25519_raw_public_key_is_indistinguishable_from_a_random_secret() -> None:
    # 32 raw bytes of an Ed25519 public key look exactly like 32 random bytes, so
    # from_secret cannot refuse them (documented limitation) ...
    raw = public_encodings("EdDSA")["ed25519_raw"]
    assert len(raw) == 32
    accepted = Key.from_secret(raw, alg="HS256")
    assert accepted.alg == "HS256"
    # ... but the algorithm binding still blocks the attack: the verifier holds an
    # EdDSA key, and an HS256 token forged with those bytes never reaches an HMAC.
    public = key_for("EdDSA").public()
    forged = encode(claims(), Key.from_secret(raw, alg="HS256", kid=public.kid))
    for keys in (public, KeySet([public])):
        with refused(AlgorithmNotAllowed):
            decode(forged, keys, algorithms=["HS256", "EdDSA"], policy=POLICY, now=0)
        with refused(AlgorithmNotAllowed):
            verify(forged, keys, algorithms=sorted(ALGORITHMS))


def test_cve_2015_9235_rs256_public_key_as_hs256_secret() -> None:
    public = key_for("RS256").public()
    pem = public.to_pem()
    token = hmac_forge(pem, "HS256", {"alg": "HS256", "typ": "JWT"})
    with refused(AlgorithmNotAllowed):
        decode(token, public, algorithms=["HS256", "RS256"], policy=POLICY, now=0)
    with refused(InvalidKey):
        Key.from_secret(pem)


def test_cve_2017_11424_pkcs1_pem_public_key_as_hmac_secret() -> None:
    # PyJWT's blocklist knew "BEGIN PUBLIC KEY" but not "BEGIN RSA PUBLIC KEY".
    pkcs1 = public_encodings("RS256")["pem_pkcs1"]
    assert pkcs1.startswith(b"-----BEGIN RSA PUBLIC KEY-----")
    public = key_for("RS256").public()
    token = hmac_forge(pkcs1, "HS256", {"alg": "HS256", "kid": public.kid})
    with refused(AlgorithmNotAllowed):
        decode(token, public, algorithms=["HS256", "RS256"], policy=POLICY, now=0)
    for hs_alg in HMAC_ALGS:
        with refused(InvalidKey):
            Key.from_secret(pkcs1, alg=hs_alg)


@pytest.mark.parametrize("target", EC_ALGS)
def test_cve_2022_29217_openssh_ecdsa_public_key_as_hmac_secret(target: str) -> None:
    # PyJWT's is_ssh_key missed "ecdsa-sha2-nistp*" keys.
    openssh = public_encodings(target)["openssh"]
    assert openssh.startswith(b"ecdsa-sha2-nistp")
    public = key_for(target).public()
    for hs_alg in HMAC_ALGS:
        token = hmac_forge(openssh, hs_alg, {"alg": hs_alg, "kid": public.kid})
        with refused(AlgorithmNotAllowed):
            decode(token, public, algorithms=sorted(ALGORITHMS), policy=POLICY, now=0)
        with refused(InvalidKey):
            Key.from_secret(openssh, alg=hs_alg)


@pytest.mark.parametrize("target", ASYM_ALGS)
@pytest.mark.parametrize(
    "encoding", ["openssh", "openssh_with_comment", "ssh2_rfc4716", "x509_pem", "x509_der"]
)
def test_cve_2024_33663_other_key_formats_as_hmac_secret(target: str, encoding: str) -> None:
    # python-jose's fix covered only some formats; every one must be refused.
    secret = public_encodings(target)[encoding]
    public = key_for(target).public()
    token = hmac_forge(secret, "HS256", {"alg": "HS256", "kid": public.kid})
    with refused(AlgorithmNotAllowed):
        verify(token, public, algorithms=["HS256", target])
    with refused(InvalidKey):
        Key.from_secret(secret)


def test_cve_2022_23541_key_lookup_cannot_switch_a_kid_to_hmac() -> None:
    # A key set legitimately holds an HMAC key and an RSA key; the token names one by kid
    # and claims the other's algorithm. The key decides; the token never does.
    rsa_key = key_for("RS256")
    hs_key = key_for("HS256")
    keyset = KeySet([hs_key, rsa_key.public()])
    everything = sorted(ALGORITHMS)
    pem = rsa_key.public().to_pem()
    # HS256 under the RSA key's kid, MACed with its public PEM.
    token = hmac_forge(pem, "HS256", {"alg": "HS256", "kid": rsa_key.kid})
    with refused(AlgorithmNotAllowed):
        decode(token, keyset, algorithms=everything, policy=POLICY, now=0)
    # HS256 under the HMAC key's kid, MACed with the public PEM: a plain bad signature.
    token = hmac_forge(pem, "HS256", {"alg": "HS256", "kid": hs_key.kid})
    with refused(InvalidSignature):
        decode(token, keyset, algorithms=everything, policy=POLICY, now=0)
    # RS256 under the HMAC key's kid, with a genuine RSA signature: refused on the binding.
    genuine = encode(
        claims(), Key.from_pem(rsa_key.to_pem(private=True), alg="RS256", kid=hs_key.kid)
    )
    with refused(AlgorithmNotAllowed):
        decode(genuine, keyset, algorithms=everything, policy=POLICY, now=0)
