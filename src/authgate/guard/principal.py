"""Who a verified access token speaks for, and what a route demands of it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from authgate.clock import Clock, SystemClock
from authgate.errors import (
    EmailNotVerified,
    InsufficientScope,
    InsufficientUserAuthentication,
    InvalidClaims,
)

_ABSENT: Any = object()


@dataclass(frozen=True, slots=True, eq=False)
class Principal:
    """A verified, unrevoked access token: who it speaks for and what it may do.

    ``sid`` is None for a client_credentials token (``sub`` is then the client id, and it
    has no roles). ``ver`` is the user's privilege version when the token was issued (None
    when the token has no ``ver`` claim). ``claims`` is a read-only view of every claim.
    Compatible with
    Starlette's ``request.user`` (``is_authenticated``, ``display_name``, ``identity``).
    """

    sub: str
    sid: str | None
    jti: str
    roles: tuple[str, ...]
    permissions: frozenset[str]
    client_id: str | None
    claims: Mapping[str, Any] = field(repr=False)
    token: str = field(repr=False)
    exp: float = field(repr=False)
    iat: float = field(repr=False)
    nbf: float | None = field(repr=False, default=None)
    ver: int | None = field(repr=False, default=None)

    @classmethod
    def from_claims(cls, claims: dict[str, Any], token: str) -> Principal:
        """Build a principal from claims the strict core has already verified; refuse
        ill-typed authgate claims (InvalidClaims)."""
        sid = claims.get("sid", _ABSENT)
        if sid is _ABSENT:
            sid = None
        elif type(sid) is not str or not sid:
            raise InvalidClaims("claim 'sid' must be a non-empty string", claim="sid")
        client_id = claims.get("client_id", _ABSENT)
        if client_id is _ABSENT:
            client_id = None
        elif type(client_id) is not str or not client_id:
            raise InvalidClaims("claim 'client_id' must be a non-empty string", claim="client_id")
        roles = claims.get("roles", _ABSENT)
        if roles is _ABSENT:
            roles = []
        elif type(roles) is not list or not all(type(r) is str for r in roles):
            raise InvalidClaims("claim 'roles' must be an array of strings", claim="roles")
        scope = claims.get("scope", "")
        if type(scope) is not str:
            raise InvalidClaims("claim 'scope' must be a string", claim="scope")
        ver = claims.get("ver")
        if ver is not None and (type(ver) is not int or ver < 0):
            raise InvalidClaims("claim 'ver' must be a non-negative integer", claim="ver")
        nbf = claims.get("nbf")
        return cls(
            sub=claims["sub"],
            sid=sid,
            jti=claims["jti"],
            roles=tuple(roles),
            permissions=frozenset(scope.split()),
            client_id=client_id,
            claims=MappingProxyType(claims),
            token=token,
            exp=float(claims["exp"]),
            iat=float(claims["iat"]),
            nbf=None if nbf is None else float(nbf),
            ver=ver,
        )

    @property
    def is_authenticated(self) -> bool:
        """Always True (Starlette's BaseUser protocol)."""
        return True

    @property
    def display_name(self) -> str:
        """The subject (Starlette's BaseUser protocol, which asks for both names)."""
        return self.sub

    identity = display_name

    def has(self, *permissions: str) -> bool:
        """True if the token grants every one of ``permissions``."""
        return self.permissions.issuperset(permissions)


def _names(values: Iterable[str], what: str) -> tuple[str, ...]:
    if isinstance(values, str):
        values = (values,)
    out = tuple(values)
    for v in out:
        if not isinstance(v, str) or not v or any(c.isspace() or c in '"\\' for c in v):
            raise ValueError(f"a {what} must be a non-empty string without spaces or quotes")
    return out


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a route demands: every permission of ``permissions``, every role of
    ``roles``, when ``any_of`` is given at least one permission of it, with ``verified``
    an ``email_verified`` claim that is true, with ``mfa`` an ``amr`` that names ``mfa``
    (a login with a second factor), and with ``max_auth_age`` a login (``auth_time``) at
    most that many seconds ago, on ``clock``. The last two are step-up demands (RFC 9470)."""

    permissions: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    verified: bool = False
    mfa: bool = False
    max_auth_age: int | None = None
    clock: Clock = field(default_factory=SystemClock, compare=False, repr=False)

    @classmethod
    def of(
        cls,
        permissions: Iterable[str],
        *,
        roles: Iterable[str] = (),
        any_of: Iterable[str] = (),
        verified: bool = False,
        mfa: bool = False,
        max_auth_age: int | None = None,
        clock: Clock | None = None,
    ) -> Requirement:
        """Validate and build a requirement."""
        if max_auth_age is not None and (
            isinstance(max_auth_age, bool) or not isinstance(max_auth_age, int) or max_auth_age < 0
        ):
            raise ValueError("max_auth_age must be a whole number of seconds, 0 or more")
        return cls(
            _names(permissions, "permission"),
            _names(roles, "role"),
            _names(any_of, "permission"),
            bool(verified),
            bool(mfa),
            max_auth_age,
            clock or SystemClock(),
        )

    @property
    def scope(self) -> tuple[str, ...]:
        """The permissions this requirement names, for the ``scope=`` of a 403."""
        return tuple(dict.fromkeys((*self.permissions, *self.any_of)))

    def check(self, principal: Principal) -> None:
        """Raise InsufficientScope (with ``context['scope']``) unless ``principal``
        meets the requirement."""
        granted = principal.permissions
        if (
            not granted.issuperset(self.permissions)
            or (self.any_of and granted.isdisjoint(self.any_of))
            or (self.roles and not set(principal.roles).issuperset(self.roles))
        ):
            raise InsufficientScope("the token lacks a needed permission or role", scope=self.scope)
        if self.verified and principal.claims.get("email_verified") is not True:
            raise EmailNotVerified("the route needs a verified email address")
        if self.mfa:
            amr = principal.claims.get("amr")
            if type(amr) is not list or "mfa" not in amr:
                raise InsufficientUserAuthentication(
                    "the route needs a login with a second factor",
                    description="a login with a second factor is needed",
                    acr_values="mfa",
                    max_age=self.max_auth_age,
                )
        if self.max_auth_age is not None:
            auth_time = principal.claims.get("auth_time")
            # A login after the token was issued is not a login: an auth_time past iat is
            # refused (never a negative age that passes any max_auth_age).
            if (
                type(auth_time) is not int
                or auth_time > principal.iat
                or self.clock.now() - auth_time > self.max_auth_age
            ):
                raise InsufficientUserAuthentication(
                    "the route needs a more recent login",
                    description="a more recent login is needed",
                    max_age=self.max_auth_age,
                )


__all__ = ["Principal", "Requirement"]
