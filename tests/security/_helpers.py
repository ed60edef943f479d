"""Shared keys, codes and checks for the security tests; the tokens themselves are
assembled by hand with ``_support.tokens``."""

from __future__ import annotations

import datetime
import functools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from _support.tokens import AUD, ISS, NOW

# tests/guard takes these token builders from here.
from _support.tokens import DROP as DROP
from _support.tokens import b64 as b64
from _support.tokens import claims as claims
from _support.tokens import header_for as header_for
from _support.tokens import jbytes as jbytes
from _support.tokens import sign_segments as sign_segments
from _support.tokens import unb64 as unb64
from authgate import errors
from authgate.jose import ClaimsPolicy, Key, KeySet, decode, verify

POLICY = ClaimsPolicy(issuer=ISS, audience=AUD)
AT_POLICY = ClaimsPolicy.access_token(issuer=ISS, audience=AUD)

HMAC_ALGS = ("HS256", "HS384", "HS512")
RSA_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGS = ("ES256", "ES384", "ES512")
ASYM_ALGS = (*RSA_ALGS, *EC_ALGS, "EdDSA")
ALL_ALGS = (*HMAC_ALGS, *ASYM_ALGS)
# One algorithm per family: what the cheaper parametrizations iterate over.
FAMILY_ALGS = ("HS256", "RS256", "PS256", "ES256", "EdDSA")

# The stable codes, written out literally so that a renamed code fails a test.
CODES: dict[type[errors.AuthgateError], str] = {
    errors.AlgorithmNotAllowed: "algorithm_not_allowed",
    errors.ConfigurationError: "invalid_configuration",
    errors.InvalidAudience: "invalid_audience",
    errors.InvalidClaims: "invalid_claims",
    errors.InvalidHeader: "invalid_header",
    errors.InvalidIssuer: "invalid_issuer",
    errors.InvalidKey: "invalid_key",
    errors.InvalidSignature: "invalid_signature",
    errors.InvalidToken: "invalid_token",
    errors.InvalidType: "invalid_type",
    errors.IssuedInFuture: "issued_in_future",
    errors.LifetimeTooLong: "lifetime_too_long",
    errors.MalformedToken: "malformed_token",
    errors.MissingClaim: "missing_claim",
    errors.TokenExpired: "token_expired",
    errors.TokenNotYetValid: "token_not_yet_valid",
    errors.TokenTooLarge: "token_too_large",
    errors.UnknownKey: "unknown_key",
    errors.UnsupportedAlgorithm: "unsupported_algorithm",
}

# Curve orders (SEC 2), for the ECDSA range checks.
CURVE_ORDER = {
    "ES256": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "ES384": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
        "581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
    "ES512": int(
        "01FF" + "FFFFFFFF" * 7 + "FFFFFFFA"
        "51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
        16,
    ),
}
EC_SIZE = {"ES256": 32, "ES384": 48, "ES512": 66}
SIG_SIZE = {"HS256": 32, "HS384": 48, "HS512": 64, "ES256": 64, "ES384": 96, "ES512": 132}


# --- keys ---------------------------------------------------------------------------------


@functools.cache
def key_for(alg: str) -> Key:
    """The 'server' key for ``alg`` (private, default thumbprint kid); generated once."""
    return Key.generate(alg)


@functools.cache
def attacker_key_for(alg: str) -> Key:
    """A key the attacker holds: same algorithm, different material."""
    return Key.generate(alg)


def private_of(key: Key) -> Any:
    """The pyca private key behind ``key`` (through its PEM export, not private attributes)."""
    return serialization.load_pem_private_key(key.to_pem(private=True), password=None)


def self_signed_cert(private: Any) -> x509.Certificate:
    """A minimal self-signed certificate for ``private``'s public key."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "authgate security test")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2040, 1, 1, tzinfo=datetime.UTC))
    )
    algorithm = None if isinstance(private, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(private, algorithm)


@functools.cache
def public_encodings(alg: str) -> dict[str, bytes]:
    """Every common encoding of the public key of ``key_for(alg)``, as an attacker sees it."""
    key = key_for(alg)
    private = private_of(key)
    public = private.public_key()
    enc = serialization.Encoding
    fmt = serialization.PublicFormat
    cert = self_signed_cert(private)
    out = {
        "pem_spki": public.public_bytes(enc.PEM, fmt.SubjectPublicKeyInfo),
        "der_spki": public.public_bytes(enc.DER, fmt.SubjectPublicKeyInfo),
        "openssh": public.public_bytes(enc.OpenSSH, fmt.OpenSSH),
        "jwk_json": json.dumps(key.to_jwk()).encode(),
        "jwk_json_compact": json.dumps(key.public().to_jwk(), separators=(",", ":")).encode(),
        "jwk_json_pretty": json.dumps(key.to_jwk(), indent=2).encode(),
        "jwks_json": json.dumps({"keys": [key.to_jwk()]}).encode(),
        "x509_pem": cert.public_bytes(enc.PEM),
        "x509_der": cert.public_bytes(enc.DER),
    }
    if isinstance(public, rsa.RSAPublicKey):
        out["pem_pkcs1"] = public.public_bytes(enc.PEM, fmt.PKCS1)
        out["der_pkcs1"] = public.public_bytes(enc.DER, fmt.PKCS1)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        out["ec_point_uncompressed"] = public.public_bytes(enc.X962, fmt.UncompressedPoint)
        out["ec_point_compressed"] = public.public_bytes(enc.X962, fmt.CompressedPoint)
    else:
        out["ed25519_raw"] = public.public_bytes(enc.Raw, fmt.Raw)
    # Textual variants that a careless config file produces.
    for name in ("pem_spki", "pem_pkcs1", "x509_pem"):
        if name in out:
            pem = out[name]
            out[f"{name}_crlf"] = pem.replace(b"\n", b"\r\n")
            out[f"{name}_leading_blank_lines"] = b"\n\n  " + pem
            out[f"{name}_no_trailing_newline"] = pem.rstrip(b"\n")
    out["openssh_with_comment"] = out["openssh"] + b" deploy@example.com\n"
    out["ssh2_rfc4716"] = rfc4716(out["openssh"])
    return out


def rfc4716(openssh: bytes) -> bytes:
    """The SSH2 public key file format (RFC 4716) of an OpenSSH one-line public key."""
    blob = openssh.split()[1].decode("ascii")
    lines = [blob[i : i + 70] for i in range(0, len(blob), 70)]
    body = "\n".join(["---- BEGIN SSH2 PUBLIC KEY ----", 'Comment: "test"', *lines])
    return (body + "\n---- END SSH2 PUBLIC KEY ----\n").encode("ascii")


# The names public_encodings() produces, per key family (parametrize ids at collection time).
COMMON_ENCODINGS = (
    "pem_spki",
    "pem_spki_crlf",
    "pem_spki_leading_blank_lines",
    "pem_spki_no_trailing_newline",
    "der_spki",
    "openssh",
    "openssh_with_comment",
    "ssh2_rfc4716",
    "jwk_json",
    "jwk_json_compact",
    "jwk_json_pretty",
    "jwks_json",
    "x509_pem",
    "x509_pem_crlf",
    "x509_pem_leading_blank_lines",
    "x509_pem_no_trailing_newline",
    "x509_der",
)
FAMILY_ENCODINGS = {
    "RSA": (
        *COMMON_ENCODINGS,
        "pem_pkcs1",
        "pem_pkcs1_crlf",
        "pem_pkcs1_leading_blank_lines",
        "pem_pkcs1_no_trailing_newline",
        "der_pkcs1",
    ),
    "EC": (*COMMON_ENCODINGS, "ec_point_uncompressed", "ec_point_compressed"),
    "OKP": (*COMMON_ENCODINGS, "ed25519_raw"),
}


def family_of(alg: str) -> str:
    """The JWK kty of an asymmetric algorithm."""
    return {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}[alg[:2]]


# --- assertions ---------------------------------------------------------------------------


@contextmanager
def refused(
    cls: type[errors.AuthgateError],
) -> Iterator[pytest.ExceptionInfo[errors.AuthgateError]]:
    """Expect exactly ``cls`` (not a parent, not a sibling) with its stable code.

    Anything that is not an AuthgateError propagates and fails the test.
    """
    with pytest.raises(errors.AuthgateError) as info:
        yield info
    assert type(info.value) is cls, f"expected {cls.__name__}, got {info.value!r}"
    assert info.value.code == CODES[cls]


def default_algorithms(keys: Key | KeySet) -> list[str]:
    """The algorithms of the key, or of every key in the set."""
    if isinstance(keys, KeySet):
        return sorted({k.alg for k in keys})
    return [keys.alg]


def decode_as(
    token: str | bytes,
    key: Key | KeySet,
    *,
    algorithms: Any = None,
    policy: ClaimsPolicy = POLICY,
    now: float = NOW,
    **kwargs: Any,
) -> dict[str, Any]:
    """``decode`` with this suite's defaults: the keys' own algs, POLICY, NOW."""
    algs = default_algorithms(key) if algorithms is None else algorithms
    return decode(token, key, algorithms=algs, policy=policy, now=now, **kwargs)


def verify_as(
    token: str | bytes, key: Key | KeySet, *, algorithms: Any = None, **kwargs: Any
) -> Any:
    """``verify`` with the keys' own algs as the allowlist."""
    algs = default_algorithms(key) if algorithms is None else algorithms
    return verify(token, key, algorithms=algs, **kwargs)


# Both entry points apply the same JWS rules; many tests run against each.
Checker = Callable[..., Any]
ENTRY_POINTS: dict[str, Checker] = {"decode": decode_as, "verify": verify_as}


def attempt(call: Callable[[], Any]) -> tuple[Any, errors.InvalidToken | None]:
    """Run ``call``: ``(result, None)`` on success, ``(None, error)`` on an InvalidToken.

    Anything else propagates (and fails the test that uses it).
    """
    try:
        return call(), None
    except errors.InvalidToken as exc:
        return None, exc
