"""Token introspection (RFC 7662) and revocation (RFC 7009): what a client may learn of a
token, and what it may end, in one place."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import Any

from authgate.errors import AuthgateError, InsufficientScope
from authgate.service.revocation import Revocations
from authgate.service.sessions import REFRESH_PREFIX, Sessions
from authgate.service.tokens import AccessTokens
from authgate.storage.base import ClientRecord, ClientStore

INTROSPECT_SCOPE = "authgate:introspect"
MAX_INTROSPECTED = 8192  # longer than any token this server issues


@dataclass(frozen=True, eq=False, repr=False)
class TokenIntrospection:
    """RFC 7662 and RFC 7009 for authenticated clients."""

    clients: ClientStore
    _: KW_ONLY
    sessions: Sessions
    tokens: AccessTokens
    revocations: Revocations

    async def introspect(self, token: str, *, caller: ClientRecord) -> dict[str, Any]:
        """The claims of a live token with ``active: true``, for a client holding
        ``authgate:introspect`` (InsufficientScope otherwise); ``{"active": false}`` for
        anything invalid, expired or revoked, without saying why. A refresh token is only
        ever active to the client it was issued to (RFC 7662 section 4), and introspecting
        it never counts as a use."""
        if INTROSPECT_SCOPE not in caller.scopes:
            raise InsufficientScope(
                "introspection needs the authgate:introspect scope", scope=(INTROSPECT_SCOPE,)
            )
        inactive: dict[str, Any] = {"active": False}
        if not isinstance(token, str) or not token or len(token) > MAX_INTROSPECTED:
            return inactive
        if token.startswith(REFRESH_PREFIX):
            info = await self.sessions.refresh_token_info(token)
            if info is None or info.get("client_id") != caller.client_id:
                return inactive
            return {"active": True, **info}
        try:
            claims = self.tokens.decode_either(token)
            if "sid" in claims:  # a user's token: the session's own checks
                await self.sessions.authenticate(token)
            elif not await self._client_token_live(claims):
                return inactive
        except AuthgateError:
            return inactive
        return {"active": True, "token_type": "Bearer", **claims}

    async def _client_token_live(self, claims: dict[str, Any]) -> bool:
        client = await self.clients.get_client(str(claims["sub"]))
        if client is None or client.revoked_at is not None:
            return False
        return not await self.revocations.is_revoked("jti", str(claims["jti"]))

    async def revoke(self, token: str, *, client_id: str) -> None:
        """RFC 7009: end a refresh token's whole family, or revoke an access token by its
        jti, when it was issued to ``client_id``; an unknown or foreign token changes
        nothing (and the caller still answers 200)."""
        if not await self.sessions.revoke_refresh_token(token, client_id=client_id):
            await self.sessions.revoke_access_token(token, client_id=client_id)
