"""Key and KeySet: generation, JWK and PEM import/export, validation, alg binding."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519

from _support.tokens import forge
from authgate.errors import (
    AlgorithmNotAllowed,
    InvalidKey,
    InvalidSignature,
    UnknownKey,
    UnsupportedAlgorithm,
)
from authgate.jose import ALGORITHMS, Key, KeySet, sign, verify
from authgate.jose._b64 import b64decode, b64encode_str

ALL_ALGS = sorted(ALGORITHMS)
ASYMMETRIC_ALGS = [a for a in ALL_ALGS if not a.startswith("HS")]
KTY = {"HS": "oct", "RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}
EC_SIZES = {"ES256": 32, "ES384": 48, "ES512": 66}

# RFC 7638 section 3.1.
RFC7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
    "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY3"
    "68QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4l"
    "Fd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def _refused(excinfo: pytest.ExceptionInfo[Any], cls: type, code: str) -> None:
    assert type(excinfo.value) is cls, repr(excinfo.value)
    assert excinfo.value.code == code


def _pkcs8(private: Any) -> bytes:
    """An unencrypted PKCS#8 PEM of a pyca private key."""
    pem: bytes = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem


def _pem_refused(pem: bytes | str, *algs: str) -> None:
    """``Key.from_pem`` refuses ``pem`` for each of ``algs``, with invalid_key."""
    for alg in algs:
        with pytest.raises(InvalidKey) as excinfo:
            Key.from_pem(pem, alg=alg)
        _refused(excinfo, InvalidKey, "invalid_key")


def _jwk_refused(jwk: Any, **options: Any) -> None:
    """``Key.from_jwk`` refuses ``jwk``, with invalid_key."""
    with pytest.raises(InvalidKey) as excinfo:
        Key.from_jwk(jwk, **options)
    _refused(excinfo, InvalidKey, "invalid_key")


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    return {alg: Key.generate(alg) for alg in ALL_ALGS}


@pytest.fixture(scope="module")
def rsa_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --- generate --------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_generate_every_alg(keys: dict[str, Key], alg: str) -> None:
    key = keys[alg]
    assert key.alg == alg
    assert key.kty == KTY[alg[:2]]
    assert key.can_sign
    assert key.is_symmetric is alg.startswith("HS")
    assert key.kid == key.thumbprint()
    signature = key.sign(b"payload")
    key.verify(b"payload", signature)
    with pytest.raises(InvalidSignature) as excinfo:
        key.verify(b"payloaD", signature)
    _refused(excinfo, InvalidSignature, "invalid_signature")
    bad = bytes([signature[0] ^ 1]) + signature[1:]
    with pytest.raises(InvalidSignature) as excinfo:
        key.verify(b"payload", bad)
    _refused(excinfo, InvalidSignature, "invalid_signature")


# RSA generation is slow; it is the same call for every RSA alg, so RS256 stands for them.
@pytest.mark.parametrize(
    "alg", [a for a in ALL_ALGS if not a.startswith("PS") and a[:3] != "RS3" and a[:3] != "RS5"]
)
def test_generate_gives_fresh_material(keys: dict[str, Key], alg: str) -> None:
    other = Key.generate(alg)
    assert other.kid != keys[alg].kid


def test_generate_sizes(keys: dict[str, Key]) -> None:
    assert len(b64decode(keys["HS256"].to_jwk(private=True)["k"])) == 32
    assert len(b64decode(keys["HS384"].to_jwk(private=True)["k"])) == 48
    assert len(b64decode(keys["HS512"].to_jwk(private=True)["k"])) == 64
    assert len(b64decode(keys["RS256"].to_jwk()["n"])) == 256
    for alg, size in EC_SIZES.items():
        assert len(keys[alg].sign(b"x")) == 2 * size
    assert len(keys["EdDSA"].sign(b"x")) == 64


def test_generate_with_kid() -> None:
    key = Key.generate("ES256", kid="my-key")
    assert key.kid == "my-key"
    assert key.thumbprint() != "my-key"
    assert key.to_jwk()["kid"] == "my-key"


@pytest.mark.parametrize(
    "alg", ["none", "None", "hs256", "HS1", "RS1024", "ES256K", "Ed25519", "Ed448", "", None, 256]
)
def test_generate_unsupported(alg: Any) -> None:
    with pytest.raises(UnsupportedAlgorithm) as excinfo:
        Key.generate(alg)
    _refused(excinfo, UnsupportedAlgorithm, "unsupported_algorithm")
    assert isinstance(excinfo.value, InvalidKey)


# --- JWK --------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ASYMMETRIC_ALGS)
def test_jwk_public_round_trip(keys: dict[str, Key], alg: str) -> None:
    key = keys[alg]
    jwk = key.to_jwk()
    assert jwk["kty"] == KTY[alg[:2]]
    assert jwk["kid"] == key.kid
    assert jwk["alg"] == alg
    assert jwk["use"] == "sig"
    assert not PRIVATE_MEMBERS & jwk.keys()
    loaded = Key.from_jwk(jwk)
    assert loaded.alg == alg
    assert loaded.kid == key.kid
    assert not loaded.can_sign
    assert loaded.to_jwk() == jwk
    loaded.verify(b"data", key.sign(b"data"))
    with pytest.raises(InvalidKey) as excinfo:
        loaded.sign(b"data")
    _refused(excinfo, InvalidKey, "invalid_key")
    with pytest.raises(InvalidKey) as excinfo:
        loaded.to_jwk(private=True)
    _refused(excinfo, InvalidKey, "invalid_key")
    # JSON text and bytes load the same.
    assert Key.from_jwk(json.dumps(jwk)).to_jwk() == jwk
    assert Key.from_jwk(json.dumps(jwk).encode()).to_jwk() == jwk


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_jwk_private_round_trip(keys: dict[str, Key], alg: str) -> None:
    key = keys[alg]
    jwk = key.to_jwk(private=True)
    expected_private = {
        "oct": {"k"},
        "RSA": {"d", "p", "q", "dp", "dq", "qi"},
        "EC": {"d"},
        "OKP": {"d"},
    }[jwk["kty"]]
    assert expected_private <= jwk.keys()
    loaded = Key.from_jwk(jwk)
    assert loaded.alg == alg
    assert loaded.kid == key.kid
    assert loaded.can_sign
    assert loaded.to_jwk(private=True) == jwk
    key.verify(b"data", loaded.sign(b"data"))
    loaded.verify(b"data", key.sign(b"data"))


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512", "EdDSA"])
def test_jwk_fixed_width_members(keys: dict[str, Key], alg: str) -> None:
    jwk = keys[alg].to_jwk(private=True)
    size = EC_SIZES.get(alg, 32)
    for member in ("x", "y", "d"):
        if member in jwk:
            assert len(b64decode(jwk[member])) == size


def test_jwk_alg_implied_by_crv(keys: dict[str, Key]) -> None:
    for alg in ["ES256", "ES384", "ES512", "EdDSA"]:
        jwk = keys[alg].to_jwk()
        del jwk["alg"]
        assert Key.from_jwk(jwk).alg == alg


@pytest.mark.parametrize("alg", ["HS256", "RS256", "PS384"])
def test_jwk_rsa_and_oct_must_name_alg(keys: dict[str, Key], alg: str) -> None:
    jwk = keys[alg].to_jwk(private=True)
    del jwk["alg"]
    _jwk_refused(jwk)
    assert Key.from_jwk(jwk, alg=alg).alg == alg


def test_jwk_rsa_with_only_n_e_d(keys: dict[str, Key]) -> None:
    key = keys["RS256"]
    full = key.to_jwk(private=True)
    minimal = {m: full[m] for m in ("kty", "n", "e", "d", "alg")}
    loaded = Key.from_jwk(minimal)
    assert loaded.can_sign
    assert loaded.kid == key.kid
    key.verify(b"data", loaded.sign(b"data"))
    exported = loaded.to_jwk(private=True)
    assert exported["d"] == full["d"]
    assert {exported["p"], exported["q"]} == {full["p"], full["q"]}


def test_jwk_rsa_partial_crt_falls_back_to_recovery(keys: dict[str, Key]) -> None:
    key = keys["PS256"]
    full = key.to_jwk(private=True)
    partial = {m: full[m] for m in ("kty", "n", "e", "d", "p", "alg")}
    loaded = Key.from_jwk(partial)
    key.verify(b"data", loaded.sign(b"data"))


def test_jwk_rsa_inconsistent_private_refused(keys: dict[str, Key]) -> None:
    jwk = keys["RS256"].to_jwk(private=True)
    other = keys["RS384"].to_jwk(private=True)
    jwk["d"] = other["d"]
    _jwk_refused(jwk)
    minimal = {m: jwk[m] for m in ("kty", "n", "e", "d", "alg")}
    _jwk_refused(minimal)


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
@pytest.mark.parametrize("member", ["x", "y"])
@pytest.mark.parametrize("delta", [-1, +1])
def test_jwk_ec_wrong_coordinate_length(
    keys: dict[str, Key], alg: str, member: str, delta: int
) -> None:
    jwk = keys[alg].to_jwk()
    raw = b64decode(jwk[member])
    jwk[member] = b64encode_str(raw[1:] if delta < 0 else b"\x00" + raw)
    _jwk_refused(jwk)


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_jwk_ec_wrong_private_length(keys: dict[str, Key], alg: str) -> None:
    jwk = keys[alg].to_jwk(private=True)
    jwk["d"] = b64encode_str(b"\x00" + b64decode(jwk["d"]))
    _jwk_refused(jwk)


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512"])
def test_jwk_ec_point_not_on_curve(keys: dict[str, Key], alg: str) -> None:
    jwk = keys[alg].to_jwk()
    y = int.from_bytes(b64decode(jwk["y"]), "big")
    jwk["y"] = b64encode_str(((y + 1) % (1 << (8 * EC_SIZES[alg]))).to_bytes(EC_SIZES[alg], "big"))
    _jwk_refused(jwk)


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512", "EdDSA"])
def test_jwk_private_not_matching_public(keys: dict[str, Key], alg: str) -> None:
    jwk = keys[alg].to_jwk(private=True)
    jwk["d"] = Key.generate(alg).to_jwk(private=True)["d"]
    _jwk_refused(jwk)


def test_jwk_eddsa_wrong_lengths(keys: dict[str, Key]) -> None:
    jwk = keys["EdDSA"].to_jwk(private=True)
    for member in ("x", "d"):
        bad = dict(jwk)
        bad[member] = b64encode_str(b64decode(jwk[member])[1:])
        _jwk_refused(bad)


@pytest.mark.parametrize("use", ["enc", "", "SIG", 1])
def test_jwk_use_must_be_sig(keys: dict[str, Key], use: Any) -> None:
    jwk = keys["ES256"].to_jwk()
    jwk["use"] = use
    _jwk_refused(jwk)
    del jwk["use"]
    assert Key.from_jwk(jwk).alg == "ES256"


@pytest.mark.parametrize(
    ("source", "argument"),
    [
        ("ES256", "ES384"),
        ("RS256", "PS256"),
        ("RS256", "RS512"),
        ("HS256", "HS512"),
        ("EdDSA", "ES256"),
    ],
)
def test_jwk_alg_mismatch_between_argument_and_jwk(
    keys: dict[str, Key], source: str, argument: str
) -> None:
    jwk = keys[source].to_jwk(private=source.startswith("HS"))
    _jwk_refused(jwk, alg=argument)
    assert Key.from_jwk(jwk, alg=source).alg == source


@pytest.mark.parametrize(
    ("source", "argument"),
    [
        ("ES384", "ES256"),
        ("ES256", "ES512"),
        ("EdDSA", "ES256"),
        ("ES256", "EdDSA"),
        ("RS256", "ES256"),
        ("ES256", "RS256"),
        ("HS256", "RS256"),
    ],
)
def test_jwk_kty_or_crv_wrong_for_alg(keys: dict[str, Key], source: str, argument: str) -> None:
    jwk = keys[source].to_jwk(private=source.startswith("HS"))
    del jwk["alg"]
    _jwk_refused(jwk, alg=argument)


def test_jwk_rsa_too_small() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    nums = small.public_key().public_numbers()

    def b64int(i: int) -> str:
        return b64encode_str(i.to_bytes((i.bit_length() + 7) // 8, "big"))

    jwk = {"kty": "RSA", "n": b64int(nums.n), "e": b64int(nums.e), "alg": "RS256"}
    _jwk_refused(jwk)
    _pem_refused(_pkcs8(small), "RS256", "PS256")


@pytest.mark.parametrize(
    "private",
    [
        ed448.Ed448PrivateKey.generate(),
        x25519.X25519PrivateKey.generate(),
    ],
    ids=["Ed448", "X25519"],
)
def test_okp_other_than_ed25519_refused(private: Any) -> None:
    crv = "Ed448" if isinstance(private, ed448.Ed448PrivateKey) else "X25519"
    x = b64encode_str(
        private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    )
    d = b64encode_str(
        private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    )
    for jwk in ({"kty": "OKP", "crv": crv, "x": x}, {"kty": "OKP", "crv": crv, "x": x, "d": d}):
        for kwargs in ({}, {"alg": "EdDSA"}):
            _jwk_refused(jwk, **kwargs)
        _jwk_refused({**jwk, "alg": "EdDSA"})
    pems = [
        _pkcs8(private),
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    ]
    for pem in pems:
        _pem_refused(pem, "EdDSA")


@pytest.mark.parametrize(
    "jwk",
    [
        [],
        "not json",
        b"\xff",
        "[1]",
        {"kty": "RSA"},
        {"kty": "EC", "crv": "P-256"},
        {"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"},
        {"kty": "oct", "alg": "HS256"},
        {"kty": "oct", "alg": "HS256", "k": ""},
        {"kty": "oct", "alg": "HS256", "k": 123},
        {"kty": "oct", "alg": "HS256", "k": "A" * 43 + "="},
        {"kty": "oct", "alg": "HS256", "k": "+" * 44},
        {"kty": "oct", "alg": "none", "k": "A" * 44},
        {"kty": "RSA", "alg": "HS256", "k": "A" * 44},
        {"kty": "OKP", "alg": "EdDSA", "crv": "Ed25519"},
    ],
)
def test_jwk_garbage_refused(jwk: Any) -> None:
    with pytest.raises(InvalidKey) as excinfo:
        Key.from_jwk(jwk)
    assert isinstance(excinfo.value, InvalidKey)
    assert excinfo.value.code in ("invalid_key", "unsupported_algorithm")


def test_jwk_unknown_alg_is_unsupported() -> None:
    with pytest.raises(UnsupportedAlgorithm) as excinfo:
        Key.from_jwk({"kty": "oct", "k": "A" * 43}, alg="HS1")
    _refused(excinfo, UnsupportedAlgorithm, "unsupported_algorithm")


def test_jwk_non_canonical_base64_refused(keys: dict[str, Key]) -> None:
    jwk = keys["EdDSA"].to_jwk()
    jwk["x"] = jwk["x"] + "="
    _jwk_refused(jwk)


# --- PEM --------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ASYMMETRIC_ALGS)
def test_pem_round_trip(keys: dict[str, Key], alg: str) -> None:
    key = keys[alg]
    private_pem = key.to_pem(private=True)
    public_pem = key.to_pem()
    assert private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")  # SPKI
    private = Key.from_pem(private_pem, alg=alg)
    public = Key.from_pem(public_pem.decode("ascii"), alg=alg)
    assert private.kid == public.kid == key.kid
    assert private.can_sign
    assert not public.can_sign
    assert private.to_jwk(private=True) == key.to_jwk(private=True)
    assert public.to_jwk() == key.to_jwk()
    public.verify(b"data", private.sign(b"data"))
    with pytest.raises(InvalidKey) as excinfo:
        public.to_pem(private=True)
    _refused(excinfo, InvalidKey, "invalid_key")
    assert public.to_pem() == public_pem


def test_pem_pkcs1_rsa(rsa_private: rsa.RSAPrivateKey) -> None:
    private_pem = rsa_private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public_pem = rsa_private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
    )
    assert private_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert public_pem.startswith(b"-----BEGIN RSA PUBLIC KEY-----")
    private = Key.from_pem(private_pem, alg="RS256")
    public = Key.from_pem(public_pem, alg="RS256")
    assert private.kid == public.kid
    public.verify(b"data", private.sign(b"data"))
    assert private.to_pem(private=True) == _pkcs8(rsa_private)


@pytest.mark.parametrize(
    ("alg", "curve"),
    [("ES256", ec.SECP256R1), ("ES384", ec.SECP384R1), ("ES512", ec.SECP521R1)],
)
def test_pem_sec1_ec(alg: str, curve: type[ec.EllipticCurve]) -> None:
    raw = ec.generate_private_key(curve())
    pem = raw.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert pem.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    key = Key.from_pem(pem, alg=alg)
    assert key.can_sign
    assert key.to_jwk(private=True)["d"] == b64encode_str(
        raw.private_numbers().private_value.to_bytes(EC_SIZES[alg], "big")
    )
    Key.from_pem(
        raw.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        alg=alg,
    ).verify(b"data", key.sign(b"data"))


def test_pem_encrypted(rsa_private: rsa.RSAPrivateKey) -> None:
    pem = rsa_private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"correct horse"),
    )
    assert Key.from_pem(pem, alg="PS256", password=b"correct horse").can_sign
    for password in (None, b"wrong"):
        with pytest.raises(InvalidKey) as excinfo:
            Key.from_pem(pem, alg="PS256", password=password)
        _refused(excinfo, InvalidKey, "invalid_key")


@pytest.mark.parametrize(
    ("alg", "make"),
    [
        ("ES256", lambda: ec.generate_private_key(ec.SECP384R1())),  # P-384 key for ES256
        ("ES384", lambda: ec.generate_private_key(ec.SECP256R1())),
        ("ES512", lambda: ec.generate_private_key(ec.SECP384R1())),
        ("ES256", lambda: ec.generate_private_key(ec.SECP256K1())),
        ("ES256", ed25519.Ed25519PrivateKey.generate),
        ("EdDSA", lambda: ec.generate_private_key(ec.SECP256R1())),
    ],
)
def test_pem_key_type_wrong_for_alg(alg: str, make: Any) -> None:
    private = make()
    for pem in (
        _pkcs8(private),
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    ):
        _pem_refused(pem, alg)


def test_pem_rsa_key_for_ec_alg_refused(rsa_private: rsa.RSAPrivateKey) -> None:
    _pem_refused(_pkcs8(rsa_private), "ES256", "EdDSA")


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"garbage",
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ],
)
def test_pem_garbage_refused(pem: Any) -> None:
    with pytest.raises(InvalidKey) as excinfo:
        Key.from_pem(pem, alg="ES256")
    _refused(excinfo, InvalidKey, "invalid_key")


def test_pem_hmac_refused(keys: dict[str, Key]) -> None:
    with pytest.raises(InvalidKey) as excinfo:
        Key.from_pem(keys["ES256"].to_pem(), alg="HS256")
    _refused(excinfo, InvalidKey, "invalid_key")
    with pytest.raises(InvalidKey) as excinfo:
        keys["HS256"].to_pem()
    _refused(excinfo, InvalidKey, "invalid_key")
    with pytest.raises(InvalidKey) as excinfo:
        keys["HS256"].to_pem(private=True)
    _refused(excinfo, InvalidKey, "invalid_key")


def test_pem_unsupported_alg(keys: dict[str, Key]) -> None:
    with pytest.raises(UnsupportedAlgorithm) as excinfo:
        Key.from_pem(keys["ES256"].to_pem(), alg="ES256K")
    _refused(excinfo, UnsupportedAlgorithm, "unsupported_algorithm")


# --- HMAC secrets -------------------------------------------------------------------------------


@pytest.mark.parametrize(("alg", "minimum"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
def test_hmac_secret_minimum_length(alg: str, minimum: int) -> None:
    secret = bytes(range(7, 7 + minimum))
    key = Key.from_secret(secret, alg=alg)
    assert key.alg == alg
    key.verify(b"m", key.sign(b"m"))
    for short in (secret[:-1], secret[:16], b""):
        with pytest.raises(InvalidKey) as excinfo:
            Key.from_secret(short, alg=alg)
        _refused(excinfo, InvalidKey, "invalid_key")
        jwk = {"kty": "oct", "k": b64encode_str(short) or "AA", "alg": alg}
        _jwk_refused(jwk)


def test_hmac_secret_str_is_utf8() -> None:
    text = "é" * 16  # 32 bytes in UTF-8, 16 characters
    key = Key.from_secret(text)
    assert key.to_jwk(private=True)["k"] == b64encode_str(text.encode("utf-8"))
    with pytest.raises(InvalidKey) as excinfo:
        Key.from_secret("a" * 31)
    _refused(excinfo, InvalidKey, "invalid_key")


def test_hmac_secret_default_alg_and_kid() -> None:
    key = Key.from_secret(b"k" * 32)
    assert key.alg == "HS256"
    assert key.kid == key.thumbprint()
    assert Key.from_secret(b"k" * 32, kid="mine").kid == "mine"


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_hmac_secret_for_asymmetric_alg_refused(alg: str) -> None:
    with pytest.raises(InvalidKey) as excinfo:
        Key.from_secret(b"k" * 64, alg=alg)
    _refused(excinfo, InvalidKey, "invalid_key")


@pytest.mark.parametrize("secret", [None, 123, bytearray(b"k" * 32)])
def test_hmac_secret_type_refused(secret: Any) -> None:
    with pytest.raises(InvalidKey) as excinfo:
        Key.from_secret(secret)
    _refused(excinfo, InvalidKey, "invalid_key")


def test_hmac_secret_that_is_a_public_key_refused(keys: dict[str, Key]) -> None:
    public_pem = keys["RS256"].to_pem()
    public_der = serialization.load_pem_public_key(public_pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk_text = json.dumps(keys["RS256"].to_jwk()).encode()
    for secret in (public_pem, public_der, jwk_text):
        with pytest.raises(InvalidKey) as excinfo:
            Key.from_secret(secret)
        _refused(excinfo, InvalidKey, "invalid_key")


# --- thumbprint and kid -------------------------------------------------------------------------


def test_thumbprint_rfc7638_vector() -> None:
    jwk = {"kty": "RSA", "n": RFC7638_N, "e": "AQAB", "alg": "RS256"}
    key = Key.from_jwk(jwk)
    assert key.thumbprint() == RFC7638_THUMBPRINT
    assert key.kid == RFC7638_THUMBPRINT  # the default kid
    named = Key.from_jwk({**jwk, "kid": "2011-04-29"})
    assert named.kid == "2011-04-29"
    assert named.thumbprint() == RFC7638_THUMBPRINT


def _reference_thumbprint(jwk: dict[str, str]) -> str:
    required = {
        "oct": ("k", "kty"),
        "RSA": ("e", "kty", "n"),
        "EC": ("crv", "kty", "x", "y"),
        "OKP": ("crv", "kty", "x"),
    }
    members = {m: jwk[m] for m in required[jwk["kty"]]}
    text = json.dumps(members, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_thumbprint_is_stable(keys: dict[str, Key], alg: str) -> None:
    key = keys[alg]
    thumb = key.thumbprint()
    assert thumb == key.thumbprint()
    assert thumb == _reference_thumbprint(key.to_jwk(private=True))
    assert len(thumb) == 43
    assert Key.from_jwk(key.to_jwk(private=True)).thumbprint() == thumb
    jwk = key.to_jwk(private=True)
    jwk["kid"] = "other"
    assert Key.from_jwk(jwk).thumbprint() == thumb
    if not key.is_symmetric:
        assert key.public().thumbprint() == thumb
        assert Key.from_pem(key.to_pem(), alg=alg).kid == thumb
        # The thumbprint ignores the private part.
        assert Key.from_jwk(key.to_jwk()).thumbprint() == thumb


def test_thumbprint_ignores_alg_but_not_material(rsa_private: rsa.RSAPrivateKey) -> None:
    pem = _pkcs8(rsa_private)
    kids = {Key.from_pem(pem, alg=alg).kid for alg in ("RS256", "RS512", "PS256")}
    assert len(kids) == 1
    assert Key.from_secret(b"a" * 32).kid != Key.from_secret(b"b" * 32).kid


@pytest.mark.parametrize("kid", ["", "x" * 257, 5, b"kid"])
def test_kid_refused(kid: Any) -> None:
    with pytest.raises(InvalidKey) as excinfo:
        Key.generate("ES256", kid=kid)
    _refused(excinfo, InvalidKey, "invalid_key")
    with pytest.raises(InvalidKey) as excinfo:
        Key.from_secret(b"k" * 32, kid=kid)
    _refused(excinfo, InvalidKey, "invalid_key")


@pytest.mark.parametrize("kid", ["", "x" * 257, 5, ["a"]])
def test_jwk_kid_refused(keys: dict[str, Key], kid: Any) -> None:
    jwk = keys["EdDSA"].to_jwk()
    jwk["kid"] = kid
    _jwk_refused(jwk)


def test_kid_at_the_limit_accepted() -> None:
    assert Key.from_secret(b"k" * 32, kid="x" * 256).kid == "x" * 256
    assert Key.from_secret(b"k" * 32, kid="x").kid == "x"


# --- export refusals and repr -------------------------------------------------------------------


def test_hmac_to_jwk_needs_private(keys: dict[str, Key]) -> None:
    key = keys["HS256"]
    with pytest.raises(InvalidKey) as excinfo:
        key.to_jwk()
    _refused(excinfo, InvalidKey, "invalid_key")
    with pytest.raises(InvalidKey) as excinfo:
        key.public()
    _refused(excinfo, InvalidKey, "invalid_key")
    jwk = key.to_jwk(private=True)
    assert set(jwk) == {"kty", "k", "kid", "alg", "use"}
    assert jwk["kty"] == "oct"


@pytest.mark.parametrize("alg", ASYMMETRIC_ALGS)
def test_public_drops_private_part(keys: dict[str, Key], alg: str) -> None:
    public = keys[alg].public()
    assert public.alg == alg
    assert public.kid == keys[alg].kid
    assert not public.can_sign
    assert public.to_jwk() == keys[alg].to_jwk()
    with pytest.raises(InvalidKey) as excinfo:
        public.sign(b"x")
    _refused(excinfo, InvalidKey, "invalid_key")


def _secret_strings(key: Key) -> list[str]:
    jwk = key.to_jwk(private=True)
    out = []
    for member in PRIVATE_MEMBERS & jwk.keys():
        raw = b64decode(jwk[member])
        out += [jwk[member], raw.hex(), str(int.from_bytes(raw, "big")), repr(raw)]
        out += [base64.b64encode(raw).decode()]
    return out


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_repr_has_no_secret_material(keys: dict[str, Key], alg: str) -> None:
    key = keys[alg]
    texts = [repr(key), str(key), f"{key}", f"{key!r}", repr(KeySet([key])), repr([key])]
    for secret in _secret_strings(key):
        for text in texts:
            assert secret not in text
    assert key.kid in repr(key)
    assert alg in repr(key)


def test_repr_of_text_secret() -> None:
    key = Key.from_secret("correct horse battery staple, 32+")
    assert "horse" not in repr(key)
    assert "horse" not in str(key)


def test_key_is_frozen(keys: dict[str, Key]) -> None:
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        keys["ES256"].alg = "ES384"  # type: ignore[misc]


# --- alg binding on verify ----------------------------------------------------------------------


def test_key_bound_to_other_alg_refused_on_verify(rsa_private: rsa.RSAPrivateKey) -> None:
    pem = _pkcs8(rsa_private)
    rs256 = Key.from_pem(pem, alg="RS256")
    ps256 = Key.from_pem(pem, alg="PS256")
    assert rs256.kid == ps256.kid
    token = sign(b"payload", ps256)
    # The same RSA material, bound to RS256, refuses a PS256 token even when both are allowed.
    with pytest.raises(AlgorithmNotAllowed) as excinfo:
        verify(token, rs256, algorithms=["RS256", "PS256"])
    _refused(excinfo, AlgorithmNotAllowed, "algorithm_not_allowed")
    assert verify(token, ps256, algorithms=["PS256"])[1] == b"payload"
    # And the primitive itself refuses the other padding.
    with pytest.raises(InvalidSignature) as excinfo:
        rs256.verify(b"data", ps256.sign(b"data"))
    _refused(excinfo, InvalidSignature, "invalid_signature")


def test_hmac_key_bound_to_other_alg_refused_on_verify() -> None:
    secret = b"s" * 64
    hs256 = Key.from_secret(secret, alg="HS256")
    hs512 = Key.from_secret(secret, alg="HS512")
    token = sign(b"payload", hs256)
    with pytest.raises(AlgorithmNotAllowed) as excinfo:
        verify(token, hs512, algorithms=["HS256", "HS512"])
    _refused(excinfo, AlgorithmNotAllowed, "algorithm_not_allowed")
    with pytest.raises(AlgorithmNotAllowed) as excinfo:
        verify(token, KeySet([hs512]), algorithms=["HS256", "HS512"])
    _refused(excinfo, AlgorithmNotAllowed, "algorithm_not_allowed")


def test_ecdsa_signature_must_be_raw_fixed_width(keys: dict[str, Key]) -> None:
    key = keys["ES256"]
    sig = key.sign(b"data")
    for bad in (
        sig[:-1],
        sig + b"\x00",
        b"\x00" * 64,
        b"\x00" * 32 + sig[32:],
        sig[:32] + b"\x00" * 32,
    ):
        with pytest.raises(InvalidSignature) as excinfo:
            key.verify(b"data", bad)
        _refused(excinfo, InvalidSignature, "invalid_signature")


# --- KeySet -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signing(keys: dict[str, Key]) -> list[Key]:
    return [keys["ES256"], keys["EdDSA"], keys["RS256"]]


def test_keyset_current_is_first_signing_key(keys: dict[str, Key], signing: list[Key]) -> None:
    ks = KeySet([keys["ES384"].public(), *signing])
    assert ks.current is signing[0]
    assert KeySet(signing[::-1]).current is signing[-1]


def test_keyset_explicit_current(signing: list[Key]) -> None:
    ks = KeySet(signing, current=signing[1].kid)
    assert ks.current is signing[1]
    token = sign(b"x", ks)
    header, _ = verify(token, ks, algorithms=["ES256", "EdDSA", "RS256"])
    assert header["kid"] == signing[1].kid
    assert header["alg"] == "EdDSA"


def test_keyset_current_absent_or_public_refused(keys: dict[str, Key], signing: list[Key]) -> None:
    with pytest.raises(InvalidKey) as excinfo:
        KeySet(signing, current="no-such-kid")
    _refused(excinfo, InvalidKey, "invalid_key")
    public = keys["ES384"].public()
    with pytest.raises(InvalidKey) as excinfo:
        KeySet([public, *signing], current=public.kid)
    _refused(excinfo, InvalidKey, "invalid_key")


def test_keyset_without_signing_key(keys: dict[str, Key]) -> None:
    ks = KeySet([keys["ES256"].public(), keys["EdDSA"].public()])
    with pytest.raises(InvalidKey) as excinfo:
        ks.current
    _refused(excinfo, InvalidKey, "invalid_key")
    with pytest.raises(InvalidKey) as excinfo:
        sign(b"x", ks)
    _refused(excinfo, InvalidKey, "invalid_key")
    empty = KeySet([])
    assert len(empty) == 0
    with pytest.raises(InvalidKey) as excinfo:
        empty.current
    _refused(excinfo, InvalidKey, "invalid_key")


def test_keyset_duplicate_kid_refused(keys: dict[str, Key]) -> None:
    a = Key.generate("ES256", kid="same")
    b = Key.generate("EdDSA", kid="same")
    with pytest.raises(InvalidKey) as excinfo:
        KeySet([a, b])
    _refused(excinfo, InvalidKey, "invalid_key")
    with pytest.raises(InvalidKey) as excinfo:
        KeySet([keys["ES256"], keys["ES256"].public()])
    _refused(excinfo, InvalidKey, "invalid_key")


def test_keyset_holds_keys_only(keys: dict[str, Key]) -> None:
    with pytest.raises(InvalidKey) as excinfo:
        KeySet([keys["ES256"], keys["ES256"].to_jwk()])  # type: ignore[list-item]
    _refused(excinfo, InvalidKey, "invalid_key")


def test_keyset_container_protocol(signing: list[Key]) -> None:
    ks = KeySet(signing)
    assert len(ks) == 3
    assert list(ks) == signing
    assert signing[2].kid in ks
    assert "nope" not in ks
    assert ks.get(signing[2].kid) is signing[2]
    assert ks.get("nope") is None


def test_keyset_to_jwks_is_public_only(keys: dict[str, Key]) -> None:
    ks = KeySet(list(keys.values()))
    jwks = ks.to_jwks()
    assert set(jwks) == {"keys"}
    published = jwks["keys"]
    assert len(published) == len(ASYMMETRIC_ALGS)
    assert {j["alg"] for j in published} == set(ASYMMETRIC_ALGS)
    for jwk in published:
        assert jwk["kty"] != "oct"
        assert not PRIVATE_MEMBERS & jwk.keys()
        assert jwk["use"] == "sig"
    text = json.dumps(jwks)
    for key in keys.values():
        for secret in _secret_strings(key):
            if len(secret) > 8:
                assert secret not in text


def test_keyset_from_jwks_round_trip(keys: dict[str, Key]) -> None:
    ks = KeySet([keys[a] for a in ASYMMETRIC_ALGS if a[:2] not in ("PS",)])
    jwks = ks.to_jwks()
    for loaded in (
        KeySet.from_jwks(jwks),
        KeySet.from_jwks(json.dumps(jwks)),
        KeySet.from_jwks(json.dumps(jwks).encode()),
    ):
        assert loaded.to_jwks() == jwks
        assert [k.kid for k in loaded] == [k.kid for k in ks]
        assert all(not k.can_sign for k in loaded)
        for key in ks:
            token = sign(b"data", key)
            assert verify(token, loaded, algorithms=[key.alg])[1] == b"data"


@pytest.mark.parametrize("doc", [[], "[]", "nope", {"keys": {}}, {"keys": "x"}, {"nokeys": []}, 5])
def test_keyset_from_jwks_garbage(doc: Any) -> None:
    with pytest.raises(InvalidKey) as excinfo:
        KeySet.from_jwks(doc)
    _refused(excinfo, InvalidKey, "invalid_key")


def test_keyset_from_jwks_refuses_bad_member(keys: dict[str, Key]) -> None:
    jwks = KeySet([keys["ES256"], keys["EdDSA"]]).to_jwks()
    jwks["keys"][1]["use"] = "enc"
    with pytest.raises(InvalidKey) as excinfo:
        KeySet.from_jwks(jwks)
    _refused(excinfo, InvalidKey, "invalid_key")


def test_keyset_verify_picks_key_by_kid(keys: dict[str, Key]) -> None:
    a = Key.generate("ES256")
    b = Key.generate("ES256")
    c = keys["EdDSA"]
    ks = KeySet([a, b, c])
    for key in (a, b, c):
        header, payload = verify(sign(b"hi", key), ks, algorithms=["ES256", "EdDSA"])
        assert header["kid"] == key.kid
        assert payload == b"hi"
    # A's signature under B's kid: the kid picks B, and B refuses it.
    forged = forge(a, header={"alg": "ES256", "kid": b.kid}, payload=b"hi")
    with pytest.raises(InvalidSignature) as excinfo:
        verify(forged, ks, algorithms=["ES256"])
    _refused(excinfo, InvalidSignature, "invalid_signature")


def test_no_kid_token_with_one_key(keys: dict[str, Key]) -> None:
    key = keys["ES256"]
    token = forge(key, header={"alg": "ES256"}, payload=b"hi")
    assert verify(token, KeySet([key]), algorithms=["ES256"]) == ({"alg": "ES256"}, b"hi")
    assert verify(token, key, algorithms=["ES256"]) == ({"alg": "ES256"}, b"hi")
    assert verify(token, KeySet([key.public()]), algorithms=["ES256"])[1] == b"hi"


def test_no_kid_token_with_several_keys(keys: dict[str, Key]) -> None:
    key = keys["ES256"]
    token = forge(key, header={"alg": "ES256"}, payload=b"hi")
    with pytest.raises(UnknownKey) as excinfo:
        verify(token, KeySet([key, keys["EdDSA"]]), algorithms=["ES256"])
    _refused(excinfo, UnknownKey, "unknown_key")


def test_unknown_kid(keys: dict[str, Key]) -> None:
    key = keys["ES256"]
    token = forge(key, header={"alg": "ES256", "kid": "not-there"}, payload=b"hi")
    for target in (KeySet([key]), KeySet([key, keys["EdDSA"]]), key):
        with pytest.raises(UnknownKey) as excinfo:
            verify(token, target, algorithms=["ES256"])
        _refused(excinfo, UnknownKey, "unknown_key")


@pytest.mark.parametrize(
    "document",
    [
        '{"kty": "EC", "crv": "P-256", "kty": "oct", "k": "c2VjcmV0"}',  # a duplicate member
        b"\xef\xbb\xbf" + b'{"kty": "EC"}',  # a BOM
        '{"keys": [' * 40 + "]" * 40 + "}",  # nested past the cap
    ],
)
def test_parser_differential_jwk_json_is_read_strictly(document: str | bytes) -> None:
    """A JWK or JWKS is read by the codec's strict parser, not json.loads (which lets the
    last duplicate member win)."""
    with pytest.raises(InvalidKey, match="strict JSON"):
        Key.from_jwk(document)
    with pytest.raises(InvalidKey, match="strict JSON"):
        KeySet.from_jwks(document)


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_copies_are_the_key_itself_and_still_sign(keys: dict[str, Key], alg: str) -> None:
    import copy

    key = keys[alg]
    for copied in (copy.copy(key), copy.deepcopy(key), copy.deepcopy({"k": [key]})["k"][0]):
        assert copied is key
    token = sign(b"payload", key)
    assert (
        verify(token, key.public() if not alg.startswith("HS") else key, algorithms=[alg])[1]
        == b"payload"
    )


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_a_key_is_never_pickled(keys: dict[str, Key], alg: str) -> None:
    import pickle

    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(keys[alg])
