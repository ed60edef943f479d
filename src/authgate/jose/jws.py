"""Strict JWS compact serialization (RFC 7515), with every rule applied before crypto."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final

from authgate.errors import (
    AlgorithmNotAllowed,
    InvalidHeader,
    InvalidKey,
    MalformedToken,
    TokenTooLarge,
    UnknownKey,
    UnsupportedAlgorithm,
)
from authgate.jose._b64 import TO_STANDARD, b64encode, decode_translated
from authgate.jose._json import dumps, loads_object
from authgate.jose.keys import ALGORITHMS, Key, KeySet

MAX_TOKEN_SIZE: Final = 8192
_ALLOWED_MEMBERS: Final = frozenset({"alg", "kid", "typ", "cty"})
_FORBIDDEN_MEMBERS: Final = frozenset(
    {"crit", "jku", "x5u", "jwk", "x5c", "x5t", "x5t#S256", "b64", "zip", "enc"}
)
_MAX_HEADER_STRING = 256


@dataclass(frozen=True, slots=True)
class Header:
    """A validated JOSE header: only these four members can exist."""

    alg: str
    kid: str | None = None
    typ: str | None = None
    cty: str | None = None
    typ_norm: str = field(default="jwt", compare=False, repr=False)
    """``typ`` in comparison form (lower case, no ``application/``); ``jwt`` if absent."""

    def as_dict(self) -> dict[str, str]:
        """The header as a JSON-ready dict, without absent members."""
        return {
            k: v
            for k, v in (("alg", self.alg), ("kid", self.kid), ("typ", self.typ), ("cty", self.cty))
            if v is not None
        }


Parsed = tuple[Header, bytes, bytes, bytes]
"""A token split and decoded, before its signature check: header, payload, signature, input.
Only the header is parsed: the payload's JSON must not be read before the signature holds."""


def _string_member(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        if name in obj:
            raise InvalidHeader(f"header member {name!r} is null", member=name)
        return None
    if type(value) is not str or not value or len(value) > _MAX_HEADER_STRING:
        raise InvalidHeader(f"header member {name!r} must be a short non-empty string", member=name)
    return value


def normalize_typ(typ: str | None) -> str:
    """``typ`` in comparison form: lower case, ``application/`` dropped; ``jwt`` if absent."""
    if typ is None:
        return "jwt"
    lowered = typ.lower()
    return lowered[12:] if lowered.startswith("application/") else lowered


@lru_cache(maxsize=256)
def parse_header(segment: bytes) -> Header:
    """Decode and validate a header segment (already through TO_STANDARD); the result is
    cached, since headers repeat."""
    obj = loads_object(decode_translated(segment))
    extra = obj.keys() - _ALLOWED_MEMBERS
    if extra:
        forbidden = extra & _FORBIDDEN_MEMBERS
        which = sorted(forbidden or extra)
        raise InvalidHeader(f"header member(s) {which} are not allowed", members=which)
    alg = _string_member(obj, "alg")
    if alg is None:
        raise InvalidHeader("header has no 'alg'")
    cty = _string_member(obj, "cty")
    if cty is not None and cty.upper() != "JWT":
        raise InvalidHeader("header 'cty' must be absent or 'JWT'")
    typ = _string_member(obj, "typ")
    return Header(
        alg=alg, kid=_string_member(obj, "kid"), typ=typ, cty=cty, typ_norm=normalize_typ(typ)
    )


def split(token: str | bytes, *, max_size: int = MAX_TOKEN_SIZE) -> Parsed:
    """Apply the size cap, the compact form and canonical base64url; parse the header."""
    if type(token) is str:
        if len(token) > max_size:
            raise TokenTooLarge(f"token is over {max_size} bytes", limit=max_size)
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError as exc:
            raise MalformedToken("token is not ASCII") from exc
    elif isinstance(token, bytes):
        if len(token) > max_size:
            raise TokenTooLarge(f"token is over {max_size} bytes", limit=max_size)
        raw = token
    else:
        raise MalformedToken("token must be str or bytes")
    parts = raw.translate(TO_STANDARD).split(b".")
    if len(parts) != 3:
        raise MalformedToken("token is not a three-segment compact JWS")
    head_seg, payload_seg, sig_seg = parts
    if not head_seg or not sig_seg:
        raise MalformedToken("token has an empty header or signature")
    return (
        parse_header(head_seg),
        decode_translated(payload_seg),
        decode_translated(sig_seg),
        raw[: len(head_seg) + 1 + len(payload_seg)],
    )


def check_algorithms(algorithms: Collection[str]) -> None:
    """Refuse an empty allowlist or one naming an algorithm we do not implement."""
    if isinstance(algorithms, str) or not algorithms:
        raise UnsupportedAlgorithm("algorithms must be a non-empty collection of names")
    for alg in algorithms:
        if alg not in ALGORITHMS:
            raise UnsupportedAlgorithm(f"unsupported algorithm {alg!r} in the allowlist")


def select_key(header: Header, keys: Key | KeySet, algorithms: Collection[str]) -> Key:
    """Pick the key by ``kid`` and check the header's ``alg`` against the allowlist and the key.

    The algorithm is never chosen from the token: the key decides it.
    """
    if header.alg not in algorithms:
        raise AlgorithmNotAllowed(f"algorithm {header.alg!r} is not allowed", alg=header.alg)
    if not isinstance(keys, Key | KeySet):
        raise InvalidKey("keys must be a Key or a KeySet")
    if isinstance(keys, Key):
        key = keys
        if header.kid is not None and header.kid != key.kid:
            raise UnknownKey("no key with this kid", kid=header.kid)
    elif header.kid is not None:
        found = keys.get(header.kid)
        if found is None:
            raise UnknownKey("no key with this kid", kid=header.kid)
        key = found
    elif len(keys) == 1:
        key = next(iter(keys))
    else:
        raise UnknownKey("token has no kid and the key set holds several keys")
    if key.alg != header.alg:
        raise AlgorithmNotAllowed(
            f"key {key.kid!r} is bound to {key.alg}, not {header.alg}", alg=header.alg, kid=key.kid
        )
    return key


def verify(
    token: str | bytes,
    keys: Key | KeySet,
    *,
    algorithms: Collection[str],
    max_size: int = MAX_TOKEN_SIZE,
) -> tuple[dict[str, str], bytes]:
    """Verify a compact JWS and return ``(header, payload)``: the header is parsed (it
    names the key), then the signature checked; the payload is returned unparsed, for the
    caller to read only once it is known to be signed.

    Raises an :class:`authgate.errors.InvalidToken` subclass for every failure.
    """
    check_algorithms(algorithms)
    header, payload, signature, signing_input = split(token, max_size=max_size)
    select_key(header, keys, algorithms).verify(signing_input, signature)
    return header.as_dict(), payload


@lru_cache(maxsize=64)
def _encoded_header(alg: str, kid: str, typ: str | None, cty: str | None) -> bytes:
    return b64encode(dumps(Header(alg=alg, kid=kid, typ=typ, cty=cty).as_dict()))


def sign(
    payload: bytes,
    key: Key | KeySet,
    *,
    typ: str | None = None,
    cty: str | None = None,
) -> str:
    """Sign ``payload`` as a compact JWS with ``key`` (a KeySet's current key)."""
    signer = key.current if isinstance(key, KeySet) else key
    if cty is not None and cty.upper() != "JWT":
        raise InvalidHeader("cty must be absent or 'JWT'")
    head = _encoded_header(signer.alg, signer.kid, typ, cty)
    signing_input = head + b"." + b64encode(payload)
    return (signing_input + b"." + b64encode(signer.sign(signing_input))).decode("ascii")


__all__ = ["MAX_TOKEN_SIZE", "Header", "sign", "verify"]
