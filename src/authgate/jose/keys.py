"""Keys bound to one algorithm, and key sets (JWKS).

A :class:`Key` is created for exactly one JWS algorithm and refuses every other
one. A :class:`KeySet` signs with its current key and verifies with any key it
publishes, selected by ``kid``. Every primitive is pyca/cryptography's.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from cryptography import exceptions as crypto_exc
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from authgate.errors import InvalidKey, InvalidSignature, MalformedToken, UnsupportedAlgorithm
from authgate.jose import _json
from authgate.jose._b64 import b64decode, b64encode_str
from authgate.jose._json import dumps

Algorithm = Literal[
    "HS256", "HS384", "HS512",
    "RS256", "RS384", "RS512",
    "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512",
    "EdDSA",
]  # fmt: skip

_HASHES: Final[dict[str, type[hashes.HashAlgorithm]]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_EC_CURVES: Final[dict[str, tuple[str, type[ec.EllipticCurve], int]]] = {
    "ES256": ("P-256", ec.SECP256R1, 32),
    "ES384": ("P-384", ec.SECP384R1, 48),
    "ES512": ("P-521", ec.SECP521R1, 66),
}
# SEC 2 / FIPS 186-4 field primes: a coordinate must be a field element (SEC 1 2.3.6).
_FIELD_PRIMES: Final[dict[str, int]] = {
    "P-256": 2**256 - 2**224 + 2**192 + 2**96 - 1,
    "P-384": 2**384 - 2**128 - 2**96 + 2**32 - 1,
    "P-521": 2**521 - 1,
}
_CURVE_TO_ALG: Final[dict[str, str]] = {
    "P-256": "ES256",
    "P-384": "ES384",
    "P-521": "ES512",
    "Ed25519": "EdDSA",
}
ALGORITHMS: Final[frozenset[str]] = frozenset(
    [f"{p}{n}" for p in ("HS", "RS", "PS") for n in ("256", "384", "512")]
    + ["ES256", "ES384", "ES512", "EdDSA"]
)
MIN_RSA_BITS: Final = 2048
_KTY: Final[dict[str, str]] = {"HS": "oct", "RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_THUMBPRINT_MEMBERS: Final[dict[str, tuple[str, ...]]] = {
    "oct": ("k", "kty"),
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}
_MAX_KID = 256
_PUBLIC_KEY_MARKERS: Final = (
    b"-----BEGIN",
    b"ssh-rsa",
    b"ssh-ed25519",
    b"ssh-dss",
    b"ecdsa-sha2-",
    b"sk-ssh-",
    b"sk-ecdsa-",
    b"---- BEGIN SSH2",
)


def _check_alg(alg: object) -> str:
    if not isinstance(alg, str) or alg not in ALGORITHMS:
        raise UnsupportedAlgorithm(f"unsupported algorithm {alg!r}", alg=alg)
    return alg


def _hash_for(alg: str) -> hashes.HashAlgorithm:
    return _HASHES[alg[2:]]() if alg != "EdDSA" else hashes.SHA512()


def _sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


def _int_to_b64(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64encode_str(value.to_bytes(size, "big"))


def _b64_member(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidKey(f"JWK member {name!r} must be a non-empty base64url string", member=name)
    try:
        return b64decode(value)
    except Exception as exc:
        raise InvalidKey(f"JWK member {name!r} is not canonical base64url", member=name) from exc


def _b64_int(jwk: Mapping[str, Any], name: str) -> int:
    return int.from_bytes(_b64_member(jwk, name), "big")


def _looks_like_public_key(secret: bytes) -> str | None:
    """Return why ``secret`` looks like a public key encoding, or None."""
    stripped = secret.strip()
    for marker in _PUBLIC_KEY_MARKERS:
        if marker in secret:  # RFC 7468 allows explanatory text before the armour
            return "PEM or SSH key material"
    unarmoured = b"".join(stripped.split())
    if len(unarmoured) >= 40 and unarmoured[:2] == b"MI":  # base64 of a DER SEQUENCE
        try:
            der = base64.b64decode(unarmoured, validate=True)
        except ValueError:
            der = b""
        if der and _looks_like_public_key(der) is not None:
            return "a base64 DER key or certificate"
    if stripped.startswith(b"{"):
        try:
            parsed = _json_object(stripped)
        except InvalidKey:
            parsed = None
        if isinstance(parsed, dict) and ("kty" in parsed or "keys" in parsed):
            return "a JWK"
    if secret[:1] == b"\x30":
        for loader in (serialization.load_der_public_key, _load_pkcs1_der):
            try:
                loader(secret)
            except Exception:  # noqa: S112 - any failure means "not this encoding"
                continue
            return "a DER public key"
        try:
            from cryptography import x509

            x509.load_der_x509_certificate(secret)
        except Exception:  # noqa: S110
            pass
        else:
            return "a DER certificate"
    if secret[:1] in (b"\x02", b"\x03", b"\x04"):
        for curve in (ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()):
            try:
                ec.EllipticCurvePublicKey.from_encoded_point(curve, secret)
            except Exception:  # noqa: S112
                continue
            return "an EC public point"
    return None


def _load_pkcs1_der(data: bytes) -> object:
    # PKCS#1 RSAPublicKey in DER is not SPKI; wrap it through PEM to let cryptography parse it.
    body = base64.encodebytes(data)
    pem = b"-----BEGIN RSA PUBLIC KEY-----\n" + body + b"-----END RSA PUBLIC KEY-----\n"
    return serialization.load_pem_public_key(pem)


def _json_object(data: str | bytes, *, what: str = "JSON") -> Any:
    """A JWK or JWKS document, read by the codec's strict parser (no duplicate members,
    UTF-8 only, capped nesting); InvalidKey if it is not one strict JSON object."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    try:
        return _json.loads_object(raw)
    except MalformedToken as exc:
        raise InvalidKey(f"{what} is not one strict JSON object: {exc.reason}") from exc


@dataclass(frozen=True, slots=True, repr=False, eq=False)
class Key:
    """A signing or verification key, bound to exactly one algorithm.

    Build one with :meth:`generate`, :meth:`from_secret`, :meth:`from_jwk` or
    :meth:`from_pem`. ``sign`` and ``verify`` refuse to run for any other
    algorithm than ``alg``; ``verify`` raises and never returns False.
    """

    alg: str
    kid: str
    _private: Any = field(default=None)
    _public: Any = field(default=None)
    _secret: bytes | None = field(default=None)
    _hash: Any = field(default=None)
    # ECDSA(hash), PKCS1v15() or PSS(...), built once; for HMAC, a context keyed with the
    # secret, copied for each MAC (copying saves the key schedule of every call).
    _scheme: Any = field(default=None)

    def __repr__(self) -> str:
        kind = "secret" if self._secret is not None else ("private" if self._private else "public")
        return f"Key(alg={self.alg!r}, kid={self.kid!r}, {kind})"

    def __copy__(self) -> Key:
        return self  # immutable: a copy is the key itself

    def __deepcopy__(self, memo: dict[int, Any]) -> Key:
        return self

    def __reduce__(self) -> Any:
        raise TypeError("a Key is not pickled (it would carry its secret in clear): use to_jwk")

    # --- construction -------------------------------------------------------------------

    @classmethod
    def _build(
        cls,
        alg: str,
        *,
        kid: str | None,
        private: Any = None,
        public: Any = None,
        secret: bytes | None = None,
    ) -> Key:
        if private is not None and public is None:
            public = private.public_key()
        digest = _hash_for(alg)
        scheme = hmac.HMAC(secret, digest) if secret is not None else _scheme_for(alg, digest)
        provisional = cls(alg, "", private, public, secret, digest, scheme)
        provisional._check_material()
        if kid is None:
            kid = provisional.thumbprint()
        if not isinstance(kid, str) or not kid or len(kid) > _MAX_KID:
            raise InvalidKey("kid must be a non-empty string of at most 256 characters")
        return cls(alg, kid, private, public, secret, digest, scheme)

    def _check_material(self) -> None:
        alg = self.alg
        family = alg[:2]
        if family == "HS":
            secret = self._secret
            if secret is None:
                raise InvalidKey(f"{alg} needs a secret")
            minimum = int(alg[2:]) // 8
            if len(secret) < minimum:
                raise InvalidKey(f"{alg} secret must be at least {minimum} bytes", minimum=minimum)
            why = _looks_like_public_key(secret)
            if why is not None:
                raise InvalidKey(f"{alg} secret looks like {why}; refusing it as an HMAC key")
        elif family in ("RS", "PS"):
            if not isinstance(self._public, rsa.RSAPublicKey):
                raise InvalidKey(f"{alg} needs an RSA key")
            if self._public.key_size < MIN_RSA_BITS:
                raise InvalidKey(f"RSA keys must be at least {MIN_RSA_BITS} bits")
        elif family == "ES":
            _, curve, _ = _EC_CURVES[alg]
            if not isinstance(self._public, ec.EllipticCurvePublicKey) or not isinstance(
                self._public.curve, curve
            ):
                raise InvalidKey(f"{alg} needs an EC key on {_EC_CURVES[alg][0]}")
        elif not isinstance(self._public, ed25519.Ed25519PublicKey):
            raise InvalidKey("EdDSA needs an Ed25519 key")

    @classmethod
    def generate(cls, alg: str, *, kid: str | None = None) -> Key:
        """Generate a fresh key for ``alg``; the kid defaults to the RFC 7638 thumbprint."""
        alg = _check_alg(alg)
        family = alg[:2]
        if family == "HS":
            import secrets

            return cls._build(alg, kid=kid, secret=secrets.token_bytes(int(alg[2:]) // 8))
        if family in ("RS", "PS"):
            return cls._build(
                alg, kid=kid, private=rsa.generate_private_key(public_exponent=65537, key_size=2048)
            )
        if family == "ES":
            return cls._build(alg, kid=kid, private=ec.generate_private_key(_EC_CURVES[alg][1]()))
        return cls._build(alg, kid=kid, private=ed25519.Ed25519PrivateKey.generate())

    @classmethod
    def from_secret(cls, secret: bytes | str, *, alg: str = "HS256", kid: str | None = None) -> Key:
        """An HMAC key. Refuses a secret shorter than the hash output, or one that looks
        like a public key (PEM, DER, SSH, JWK or an EC point)."""
        alg = _check_alg(alg)
        if not alg.startswith("HS"):
            raise InvalidKey(f"a shared secret cannot be used with {alg}")
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        if not isinstance(secret, bytes):
            raise InvalidKey("secret must be bytes or str")
        return cls._build(alg, kid=kid, secret=secret)

    @classmethod
    def from_pem(
        cls,
        data: bytes | str,
        *,
        alg: str,
        kid: str | None = None,
        password: bytes | None = None,
    ) -> Key:
        """Load a PEM private or public key (PKCS#8, PKCS#1, SEC1 or SPKI) for ``alg``."""
        alg = _check_alg(alg)
        if alg.startswith("HS"):
            raise InvalidKey("HMAC keys are secrets, not PEM keys; use from_secret")
        raw = data.encode("ascii", "replace") if isinstance(data, str) else data
        private: Any = None
        public: Any = None
        try:
            if b"PRIVATE KEY" in raw:
                private = serialization.load_pem_private_key(raw, password=password)
            else:
                public = serialization.load_pem_public_key(raw)
        except (ValueError, TypeError, crypto_exc.UnsupportedAlgorithm) as exc:
            raise InvalidKey("cannot load the PEM key") from exc
        return cls._build(alg, kid=kid, private=private, public=public)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any] | str | bytes, *, alg: str | None = None) -> Key:
        """Load a public or private JWK (RFC 7517).

        The algorithm comes from ``alg=`` or the JWK's ``alg``; if both are given they
        must agree. EC and OKP keys imply theirs from ``crv``; RSA and oct keys must say.
        """
        if isinstance(jwk, str | bytes):
            jwk = _json_object(jwk, what="JWK")
        if not isinstance(jwk, Mapping):
            raise InvalidKey("JWK must be a JSON object")
        kty = jwk.get("kty")
        jwk_alg = jwk.get("alg")
        if jwk_alg is not None and alg is not None and jwk_alg != alg:
            raise InvalidKey(f"JWK is for {jwk_alg!r}, not {alg!r}")
        chosen = alg if alg is not None else jwk_alg
        if chosen is None and kty in ("EC", "OKP"):
            chosen = _CURVE_TO_ALG.get(str(jwk.get("crv")))
        if chosen is None:
            raise InvalidKey("the JWK does not say its algorithm; pass alg=")
        chosen = _check_alg(chosen)
        if _KTY[chosen[:2]] != kty:
            raise InvalidKey(f"{chosen} needs kty {_KTY[chosen[:2]]!r}, got {kty!r}")
        use = jwk.get("use")
        if use is not None and use != "sig":
            raise InvalidKey("JWK 'use' must be 'sig'")
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidKey("JWK 'kid' must be a string")
        try:
            return cls._from_jwk_members(chosen, jwk, kid)
        except InvalidKey:
            raise
        except (ValueError, TypeError, crypto_exc.UnsupportedAlgorithm) as exc:
            raise InvalidKey("JWK key material is invalid") from exc

    @classmethod
    def _from_jwk_members(cls, alg: str, jwk: Mapping[str, Any], kid: str | None) -> Key:
        kty = jwk["kty"]
        if kty == "oct":
            return cls._build(alg, kid=kid, secret=_b64_member(jwk, "k"))
        if kty == "RSA":
            n, e = _b64_int(jwk, "n"), _b64_int(jwk, "e")
            pub_numbers = rsa.RSAPublicNumbers(e, n)
            if "d" not in jwk:
                return cls._build(alg, kid=kid, public=pub_numbers.public_key())
            d = _b64_int(jwk, "d")
            if all(m in jwk for m in ("p", "q", "dp", "dq", "qi")):
                p, q = _b64_int(jwk, "p"), _b64_int(jwk, "q")
                dp, dq, qi = _b64_int(jwk, "dp"), _b64_int(jwk, "dq"), _b64_int(jwk, "qi")
            else:
                p, q = rsa.rsa_recover_prime_factors(n, e, d)
                dp, dq, qi = rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q)
            private = rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, pub_numbers).private_key()
            return cls._build(alg, kid=kid, private=private)
        if kty == "EC":
            crv_name, curve_cls, size = _EC_CURVES[alg]
            if jwk.get("crv") != crv_name:
                raise InvalidKey(f"{alg} needs crv {crv_name!r}")
            xb, yb = _b64_member(jwk, "x"), _b64_member(jwk, "y")
            if len(xb) != size or len(yb) != size:
                raise InvalidKey(f"EC coordinates must be {size} bytes")
            prime = _FIELD_PRIMES[crv_name]
            if int.from_bytes(xb, "big") >= prime or int.from_bytes(yb, "big") >= prime:
                raise InvalidKey("EC coordinates must be reduced below the field prime")
            public = ec.EllipticCurvePublicNumbers(
                int.from_bytes(xb, "big"), int.from_bytes(yb, "big"), curve_cls()
            ).public_key()
            if "d" not in jwk:
                return cls._build(alg, kid=kid, public=public)
            db = _b64_member(jwk, "d")
            if len(db) != size:
                raise InvalidKey(f"EC private scalar must be {size} bytes")
            ec_private = ec.derive_private_key(int.from_bytes(db, "big"), curve_cls())
            if ec_private.public_key().public_numbers() != public.public_numbers():
                raise InvalidKey("EC private key does not match its public part")
            return cls._build(alg, kid=kid, private=ec_private)
        # OKP
        if jwk.get("crv") != "Ed25519":
            raise InvalidKey("EdDSA supports crv 'Ed25519' only")
        xb = _b64_member(jwk, "x")
        if len(xb) != 32:
            raise InvalidKey("Ed25519 public keys are 32 bytes")
        ed_public = ed25519.Ed25519PublicKey.from_public_bytes(xb)
        if "d" not in jwk:
            return cls._build(alg, kid=kid, public=ed_public)
        db = _b64_member(jwk, "d")
        if len(db) != 32:
            raise InvalidKey("Ed25519 private keys are 32 bytes")
        ed_private = ed25519.Ed25519PrivateKey.from_private_bytes(db)
        if ed_private.public_key().public_bytes_raw() != xb:
            raise InvalidKey("Ed25519 private key does not match its public part")
        return cls._build(alg, kid=kid, private=ed_private)

    # --- properties and export ------------------------------------------------------------

    @property
    def kty(self) -> str:
        """The JWK key type: oct, RSA, EC or OKP."""
        return _KTY[self.alg[:2]]

    @property
    def is_symmetric(self) -> bool:
        """True for HMAC keys, which are never published."""
        return self._secret is not None

    @property
    def can_sign(self) -> bool:
        """True if this key holds private (or secret) material."""
        return self._secret is not None or self._private is not None

    def public(self) -> Key:
        """This key without its private part. Refused for HMAC keys."""
        if self._secret is not None:
            raise InvalidKey("an HMAC key has no public part")
        return Key(self.alg, self.kid, None, self._public, None, self._hash, self._scheme)

    def _members(self, *, private: bool) -> dict[str, str]:
        if self._secret is not None:
            if not private:
                raise InvalidKey("an HMAC key has no public part")
            return {"kty": "oct", "k": b64encode_str(self._secret)}
        pub = self._public
        if isinstance(pub, rsa.RSAPublicKey):
            nums = pub.public_numbers()
            out = {"kty": "RSA", "n": _int_to_b64(nums.n), "e": _int_to_b64(nums.e)}
            if private and self._private is not None:
                pn = self._private.private_numbers()
                out |= {
                    "d": _int_to_b64(pn.d),
                    "p": _int_to_b64(pn.p),
                    "q": _int_to_b64(pn.q),
                    "dp": _int_to_b64(pn.dmp1),
                    "dq": _int_to_b64(pn.dmq1),
                    "qi": _int_to_b64(pn.iqmp),
                }
            return out
        if isinstance(pub, ec.EllipticCurvePublicKey):
            crv, _, size = _EC_CURVES[self.alg]
            enc = pub.public_numbers()
            out = {
                "kty": "EC",
                "crv": crv,
                "x": _int_to_b64(enc.x, size),
                "y": _int_to_b64(enc.y, size),
            }
            if private and self._private is not None:
                out["d"] = _int_to_b64(self._private.private_numbers().private_value, size)
            return out
        out = {"kty": "OKP", "crv": "Ed25519", "x": b64encode_str(pub.public_bytes_raw())}
        if private and self._private is not None:
            out["d"] = b64encode_str(self._private.private_bytes_raw())
        return out

    def to_jwk(self, *, private: bool = False) -> dict[str, str]:
        """Export as a JWK with ``kid``, ``alg`` and ``use``. Private members only if asked."""
        if private and not self.can_sign:
            raise InvalidKey("this key has no private part to export")
        jwk = self._members(private=private)
        jwk |= {"kid": self.kid, "alg": self.alg, "use": "sig"}
        return jwk

    def to_pem(self, *, private: bool = False) -> bytes:
        """Export as PEM: PKCS#8 (unencrypted) if ``private``, else SPKI."""
        if self._secret is not None:
            raise InvalidKey("HMAC keys have no PEM form")
        if private:
            if self._private is None:
                raise InvalidKey("this key has no private part to export")
            pem: bytes = self._private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            return pem
        out: bytes = self._public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return out

    def thumbprint(self) -> str:
        """The RFC 7638 SHA-256 thumbprint, base64url-encoded."""
        members = (
            self._members(private=True)
            if self._secret is not None
            else self._members(private=False)
        )
        required = {name: members[name] for name in _THUMBPRINT_MEMBERS[members["kty"]]}
        return b64encode_str(_sha256(dumps(required)))

    # --- operations ---------------------------------------------------------------------

    def sign(self, data: bytes) -> bytes:
        """Sign ``data`` with this key's algorithm (ECDSA as raw R||S)."""
        alg = self.alg
        family = alg[:2]
        if self._secret is not None:
            mac = self._scheme.copy()
            mac.update(data)
            return mac.finalize()  # type: ignore[no-any-return]
        priv = self._private
        if priv is None:
            raise InvalidKey("this key has no private part; it can only verify")
        if family in ("RS", "PS"):
            sig: bytes = priv.sign(data, self._scheme, self._hash)
            return sig
        if family == "ES":
            size = _EC_CURVES[alg][2]
            r, s = decode_dss_signature(priv.sign(data, self._scheme))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        sig = priv.sign(data)
        return sig

    def verify(self, data: bytes, signature: bytes) -> None:
        """Verify ``signature`` over ``data``; raise InvalidSignature, never return False."""
        try:
            if self._secret is not None:
                mac = self._scheme.copy()
                mac.update(data)
                mac.verify(signature)  # constant-time comparison inside pyca
                return
            family = self.alg[:2]
            if family == "ES":
                size = _EC_CURVES[self.alg][2]
                if len(signature) != 2 * size:
                    raise InvalidSignature("ECDSA signature is not raw R||S of the right length")
                r = int.from_bytes(signature[:size], "big")
                s = int.from_bytes(signature[size:], "big")
                if r == 0 or s == 0:
                    raise InvalidSignature("ECDSA signature has a zero component")
                self._public.verify(encode_dss_signature(r, s), data, self._scheme)
            elif family in ("RS", "PS"):
                # RFC 8017 8.1.2 and 8.2.2, step 1: a signature is exactly k octets. OpenSSL's
                # PSS check takes a shorter one of the same value (a leading zero dropped).
                if len(signature) != (self._public.key_size + 7) // 8:
                    raise InvalidSignature("RSA signature is not as long as the modulus")
                self._public.verify(signature, data, self._scheme, self._hash)
            else:
                self._public.verify(signature, data)
        except crypto_exc.InvalidSignature as exc:
            raise InvalidSignature("signature does not verify", kid=self.kid) from exc


def _scheme_for(alg: str, digest: hashes.HashAlgorithm) -> Any:
    family = alg[:2]
    if family == "ES":
        return ec.ECDSA(digest)
    if family == "RS":
        return padding.PKCS1v15()
    if family == "PS":
        # RFC 7518 3.5: MGF1 with the same hash, and a salt as long as the hash output.
        return padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
    return None


class KeySet:
    """Keys selected by ``kid``: sign with the current one, verify with any of them."""

    __slots__ = ("_by_kid", "_current")

    def __init__(self, keys: Iterable[Key], *, current: str | None = None) -> None:
        by_kid: dict[str, Key] = {}
        for key in keys:
            if not isinstance(key, Key):
                raise InvalidKey("a KeySet holds Key objects only")
            if key.kid in by_kid:
                raise InvalidKey(f"duplicate kid {key.kid!r} in key set", kid=key.kid)
            by_kid[key.kid] = key
        if current is not None:
            chosen = by_kid.get(current)
            if chosen is None or not chosen.can_sign:
                raise InvalidKey(f"current kid {current!r} is not a signing key in this set")
        else:
            chosen = next((k for k in by_kid.values() if k.can_sign), None)
        self._by_kid = by_kid
        self._current = chosen

    @classmethod
    def from_jwks(cls, jwks: Mapping[str, Any] | str | bytes) -> KeySet:
        """Load a JWKS document (``{"keys": [...]}``); each key must imply its algorithm."""
        if isinstance(jwks, str | bytes):
            jwks = _json_object(jwks, what="JWKS")
        if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
            raise InvalidKey("JWKS must be an object with a 'keys' array")
        return cls(Key.from_jwk(k) for k in jwks["keys"])

    @property
    def current(self) -> Key:
        """The signing key. Raises InvalidKey if the set holds no private key."""
        if self._current is None:
            raise InvalidKey("this key set has no signing key")
        return self._current

    def get(self, kid: str) -> Key | None:
        """The key with this ``kid``, or None."""
        return self._by_kid.get(kid)

    def __iter__(self) -> Iterator[Key]:
        return iter(self._by_kid.values())

    def __len__(self) -> int:
        return len(self._by_kid)

    def __contains__(self, kid: object) -> bool:
        return kid in self._by_kid

    def __repr__(self) -> str:
        return f"KeySet(kids={list(self._by_kid)!r})"

    def to_jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public JWKS; HMAC keys are never published."""
        return {"keys": [k.to_jwk() for k in self._by_kid.values() if not k.is_symmetric]}


__all__ = ["ALGORITHMS", "Algorithm", "Key", "KeySet"]
