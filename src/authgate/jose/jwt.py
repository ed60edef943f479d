"""JWT (RFC 7519) on top of the strict JWS codec, with a frozen claims policy."""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from authgate.clock import Clock
from authgate.errors import (
    ConfigurationError,
    InvalidAudience,
    InvalidClaims,
    InvalidIssuer,
    InvalidType,
    IssuedInFuture,
    LifetimeTooLong,
    MissingClaim,
    TokenExpired,
    TokenNotYetValid,
)
from authgate.jose import jws
from authgate.jose._json import dumps, loads_object
from authgate.jose.keys import Key, KeySet

DEFAULT_REQUIRED: Final = frozenset({"exp", "iat", "iss", "aud", "sub", "jti"})
MAX_LEEWAY: Final = 300.0
# NumericDates beyond 2**53 lose precision as floats; nothing legitimate is that far out.
_MAX_NUMERIC_DATE: Final = float(2**53)
_NUMERIC_DATES: Final = ("exp", "nbf", "iat")
_STRING_CLAIMS: Final = ("iss", "sub", "jti")
_ABSENT: Final = object()


def normalize_typ(typ: str) -> str:
    """Media-type comparison form: case-insensitive, ``application/`` optional (RFC 7515 4.1.9)."""
    return jws.normalize_typ(typ)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimsPolicy:
    """What ``decode`` demands of a token's claims and type.

    ``issuer`` and ``audience`` are exact matches; when they are set the claim is
    required. ``typ`` is the expected header type (``at+jwt`` for access tokens);
    when None, only an absent ``typ`` or ``JWT`` is accepted, so that a typed token
    cannot pass as another kind. ``leeway`` (0..300 s) applies to exp, nbf and iat.
    ``max_lifetime`` caps ``exp - iat`` (and ``exp - now`` when there is no iat).
    """

    issuer: str | None = None
    audience: str | None = None
    typ: str | None = None
    required: frozenset[str] = DEFAULT_REQUIRED
    leeway: float = 0.0
    max_lifetime: float | None = 86400.0
    _typ_norm: str = field(init=False, repr=False, compare=False, default="jwt")

    def __post_init__(self) -> None:
        if not isinstance(self.leeway, int | float) or not 0 <= self.leeway <= MAX_LEEWAY:
            raise ConfigurationError(f"leeway must be between 0 and {MAX_LEEWAY:g} seconds")
        if self.max_lifetime is not None and not self.max_lifetime > 0:
            raise ConfigurationError("max_lifetime must be positive")
        if "iss" in self.required and self.issuer is None:
            raise ConfigurationError("the policy requires 'iss' but names no issuer")
        if "aud" in self.required and self.audience is None:
            raise ConfigurationError("the policy requires 'aud' but names no audience")
        object.__setattr__(self, "required", frozenset(self.required))
        object.__setattr__(self, "_typ_norm", normalize_typ(self.typ or "JWT"))

    @classmethod
    def access_token(
        cls, *, issuer: str, audience: str, leeway: float = 0.0, max_lifetime: float = 86400.0
    ) -> ClaimsPolicy:
        """The RFC 9068 access-token policy: ``typ`` at+jwt, and every claim required."""
        return cls(
            issuer=issuer,
            audience=audience,
            typ="at+jwt",
            required=DEFAULT_REQUIRED,
            leeway=leeway,
            max_lifetime=max_lifetime,
        )


def _numeric_date(name: str, value: Any) -> float:
    kind = type(value)
    if kind is int:
        number = float(value) if 0 <= value <= _MAX_NUMERIC_DATE else -1.0
    elif kind is float:
        number = value
    else:
        raise InvalidClaims(f"claim {name!r} must be a NumericDate", claim=name)
    if not 0 <= number <= _MAX_NUMERIC_DATE:
        raise InvalidClaims(f"claim {name!r} is out of range", claim=name)
    return number


def _not_a_string(name: str) -> InvalidClaims:
    return InvalidClaims(f"claim {name!r} must be a non-empty string", claim=name)


def check_claims(
    claims: Mapping[str, Any],
    *,
    typ: str | None,
    policy: ClaimsPolicy,
    now: float,
    typ_checked: bool = False,
) -> None:
    """Apply ``policy`` to already-verified ``claims`` and the header ``typ``; raise an
    InvalidClaims subclass. ``typ_checked`` skips the type check a caller already made."""
    if not typ_checked and ("jwt" if typ is None else normalize_typ(typ)) != policy._typ_norm:
        raise InvalidType(f"token type {typ!r} is not {policy.typ or 'JWT'!r}", typ=typ)
    if not policy.required <= claims.keys():
        name = min(policy.required - claims.keys())
        raise MissingClaim(f"claim {name!r} is required", claim=name)
    # Written out claim by claim, without helper calls on the common path: every access
    # token a guard sees passes through here.
    get = claims.get
    iss = get("iss", _ABSENT)
    if iss is not _ABSENT and (type(iss) is not str or not iss):
        raise _not_a_string("iss")
    value = get("sub", _ABSENT)
    if value is not _ABSENT and (type(value) is not str or not value):
        raise _not_a_string("sub")
    value = get("jti", _ABSENT)
    if value is not _ABSENT and (type(value) is not str or not value):
        raise _not_a_string("jti")
    leeway = policy.leeway
    exp = get("exp", _ABSENT)
    if exp is not _ABSENT:
        exp = (
            float(exp)
            if type(exp) is int and 0 <= exp <= _MAX_NUMERIC_DATE
            else _numeric_date("exp", exp)
        )
        if now >= exp + leeway:
            raise TokenExpired("token has expired", exp=exp)
    nbf = get("nbf", _ABSENT)
    if nbf is not _ABSENT and now + leeway < _numeric_date("nbf", nbf):
        raise TokenNotYetValid("token is not valid yet", nbf=nbf)
    iat = get("iat", _ABSENT)
    if iat is not _ABSENT:
        iat = (
            float(iat)
            if type(iat) is int and 0 <= iat <= _MAX_NUMERIC_DATE
            else _numeric_date("iat", iat)
        )
        if iat > now + leeway:
            raise IssuedInFuture("token was issued in the future", iat=iat)
    max_lifetime = policy.max_lifetime
    if max_lifetime is not None and exp is not _ABSENT:
        start = now if iat is _ABSENT else iat
        if exp - start > max_lifetime:
            raise LifetimeTooLong("token lifetime is over the maximum", lifetime=exp - start)
    if policy.issuer is not None:
        if iss is _ABSENT:
            raise MissingClaim("claim 'iss' is required", claim="iss")
        if iss != policy.issuer:
            raise InvalidIssuer("issuer does not match", iss=iss)
    aud = get("aud", _ABSENT)
    if aud is _ABSENT:
        if policy.audience is not None:
            raise MissingClaim("claim 'aud' is required", claim="aud")
    elif type(aud) is str and aud and aud == policy.audience:
        return  # the common case, decided
    else:
        _check_audience(aud, policy.audience)


def _check_audience(aud: Any, expected: str | None) -> None:
    if type(aud) is str:
        if not aud:
            raise InvalidClaims("claim 'aud' is empty", claim="aud")
        if expected is not None and aud != expected:
            raise InvalidAudience("audience does not match")
        return
    if type(aud) is not list or not aud or not all(type(a) is str and a for a in aud):
        raise InvalidClaims("claim 'aud' must be a string or an array of strings", claim="aud")
    if expected is not None and expected not in aud:
        raise InvalidAudience("audience does not match")


def encode(claims: Mapping[str, Any], key: Key | KeySet, *, typ: str | None = "JWT") -> str:
    """Sign ``claims`` as a JWT with ``key`` (a KeySet's current key)."""
    if not isinstance(claims, Mapping):
        raise InvalidClaims("claims must be a mapping")
    try:
        payload = dumps(dict(claims))
    except (TypeError, ValueError) as exc:
        raise InvalidClaims("claims are not JSON-serializable (finite numbers, str keys)") from exc
    return jws.sign(payload, key, typ=typ)


def decode(
    token: str | bytes,
    keys: Key | KeySet,
    *,
    algorithms: Collection[str],
    policy: ClaimsPolicy,
    now: float | None = None,
    clock: Clock | None = None,
    max_size: int = jws.MAX_TOKEN_SIZE,
) -> dict[str, Any]:
    """Verify a JWT and return its claims.

    The order is fixed: the size cap and the encoding of every segment, then the header
    (it names the key), then the signature over the signing input, and only then the
    payload's JSON and the claims: the JSON parser never sees an unsigned payload.
    Time is ``now``, else ``clock.now()``, else the system clock. Raises an
    :class:`authgate.errors.InvalidToken` subclass for every refusal.
    """
    jws.check_algorithms(algorithms)
    header, payload, signature, signing_input = jws.split(token, max_size=max_size)
    jws.select_key(header, keys, algorithms).verify(signing_input, signature)
    claims = loads_object(payload)
    if now is None:
        now = clock.now() if clock is not None else time.time()
    if not math.isfinite(now):
        raise ConfigurationError("now must be a finite timestamp")
    if header.typ_norm != policy._typ_norm:
        raise InvalidType(f"token type {header.typ!r} is not {policy.typ or 'JWT'!r}")
    check_claims(claims, typ=None, policy=policy, now=now, typ_checked=True)
    return claims


__all__ = ["DEFAULT_REQUIRED", "ClaimsPolicy", "check_claims", "decode", "encode", "normalize_typ"]
