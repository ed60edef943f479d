"""Access tokens: the one component that signs and decodes them (RFC 9068), for user
sessions, service clients and every later grant, under one claims policy."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from authgate.clock import Clock
from authgate.errors import InvalidAudience, UnknownKey
from authgate.jose import ClaimsPolicy, decode, encode
from authgate.service.keyring import Keyring

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 (a media type, RFC 9068)
MAX_ACCESS_LIFETIME = 86400.0  # what a verifier accepts as exp - iat, whatever the setting
ID_TOKEN_TTL = 300.0  # an OpenID Connect ID token: read once by the client, at the login


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenPolicy:
    """Lifetimes and identity of issued tokens (``Settings.token_policy()`` makes it)."""

    issuer: str
    audience: str
    access_ttl: float
    refresh_idle_ttl: float
    refresh_max_ttl: float
    refresh_grace: float
    leeway: float


class AccessTokens:
    """Signs access tokens with the keyring's current key and decodes them strictly."""

    def __init__(self, keyring: Keyring, *, policy: TokenPolicy, clock: Clock) -> None:
        self._keyring = keyring
        self._clock = clock
        self.policy = policy
        self.claims_policy = self._policy_for(policy.audience)
        # An OpenID Connect client's token is for /userinfo only: its own audience keeps
        # it away from the account API and from every resource server's guard.
        self.client_audience = policy.issuer.rstrip("/") + "/userinfo"
        self._client_policy = self._policy_for(self.client_audience)

    def _policy_for(self, audience: str) -> ClaimsPolicy:
        return ClaimsPolicy.access_token(
            issuer=self.policy.issuer,
            audience=audience,
            leeway=self.policy.leeway,
            max_lifetime=max(self.policy.access_ttl, MAX_ACCESS_LIFETIME),
        )

    def issue(
        self,
        *,
        sub: str,
        client_id: str,
        scope: Sequence[str],
        now: float,
        ttl: float | None = None,
        audience: str | None = None,
        **claims: Any,
    ) -> tuple[str, int]:
        """Sign an access token for ``sub``; return it with its lifetime in seconds.
        ``claims`` adds members (``sid``, ``ver``, ``roles``...); ``audience`` replaces
        the server's (``client_audience`` for an OpenID Connect client's token)."""
        lifetime = int(ttl or self.policy.access_ttl)
        body = {
            "iss": self.policy.issuer,
            "sub": sub,
            "aud": audience or self.policy.audience,
            "exp": int(now) + lifetime,
            "iat": int(now),
            "jti": secrets.token_urlsafe(16),
            "client_id": client_id,
            **claims,
            "scope": " ".join(scope),
        }
        return encode(body, self._keyring.keyset, typ=ACCESS_TOKEN_TYPE), lifetime

    def decode(self, token: str, *, client: bool = False) -> dict[str, Any]:
        """The claims of a token this server signed, checked at the injected clock's time
        for the server's audience (or, with ``client``, an OpenID Connect client's);
        InvalidToken (with its code) otherwise."""
        return decode(
            token,
            self._keyring.keyset,
            algorithms=self._keyring.view.algorithms,
            policy=self._client_policy if client else self.claims_policy,
            now=self._clock.now(),
        )

    def decode_either(self, token: str) -> dict[str, Any]:
        """:meth:`decode` for either audience (revocation and introspection take both)."""
        try:
            return self.decode(token)
        except InvalidAudience:
            return self.decode(token, client=True)

    async def decode_fresh(self, token: str, *, client: bool = False) -> dict[str, Any]:
        """:meth:`decode`, re-reading the keys once (at most each second) when the token
        names a key this instance has not loaded: another instance may have imported or
        activated it."""
        try:
            return self.decode(token, client=client)
        except UnknownKey:
            if not await self._keyring.refresh_if_older_than(1.0):
                raise
            return self.decode(token, client=client)


def token_response(
    *, access_token: str, expires_in: int, scope: str, **more: Any
) -> dict[str, Any]:
    """An RFC 6749 section 5.1 token response: the access token, then ``more`` (a refresh
    token and its lifetime, for a session)."""
    return {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        **more,
        "scope": scope,
    }
