"""Service clients (OAuth2): creation, authentication and the client_credentials grant.

A client secret is 256 random bits, shown once and stored as an argon2id hash. Because
every grant would otherwise pay a full argon2 verify, a successful verification is
remembered in memory for a short time as an HMAC of the secret under a per-process key;
a revoked client is forgotten at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from authgate.clock import Clock
from authgate.errors import (
    AuthgateError,
    Conflict,
    InsufficientScope,
    InvalidClient,
    InvalidKey,
    InvalidRequest,
    InvalidScope,
    InvalidToken,
)
from authgate.jose import ClaimsPolicy, Key, decode, encode
from authgate.passwords import PasswordHasher
from authgate.service.accounts import Accounts, check_permissions
from authgate.service.audit import Audit
from authgate.service.keyring import Keyring
from authgate.service.revocation import Revocations
from authgate.storage.base import ClientRecord, ClientStore

REVOCATIONS_SCOPE = "authgate:revocations"
INTROSPECT_SCOPE = "authgate:introspect"
BUILTIN_SCOPES = frozenset({REVOCATIONS_SCOPE, INTROSPECT_SCOPE})
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# Authlib and other clients sign assertions valid for an hour; jti stays single-use.
MAX_ASSERTION_LIFETIME = 3600.0
_VERIFIED_TTL = 300.0
_VERIFIED_MAX = 10_000


@dataclass(frozen=True, slots=True)
class ClientGrant:
    """An access token issued to a client."""

    access_token: str
    expires_in: int
    scope: str

    def response(self) -> dict[str, Any]:
        """The RFC 6749 section 5.1 body (no refresh token)."""
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }


class Clients:
    """The client use-cases."""

    def __init__(
        self,
        store: ClientStore,
        *,
        accounts: Accounts,
        hasher: PasswordHasher,
        keyring: Keyring,
        revocations: Revocations,
        audit: Audit,
        clock: Clock,
        issuer: str,
        audience: str,
        access_ttl: float,
        leeway: float = 0.0,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._hasher = hasher
        self._keyring = keyring
        self._revocations = revocations
        self._audit = audit
        self._clock = clock
        self.issuer = issuer
        self.audience = audience
        self.access_ttl = access_ttl
        self.token_endpoint = f"{issuer}/oauth2/token"
        self._cache_key = secrets.token_bytes(32)
        self._verified: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._leeway = leeway

    async def defined_permissions(self) -> frozenset[str]:
        """Every permission some role grants, and the built-in ones."""
        perms: set[str] = set(BUILTIN_SCOPES)
        for role in await self._accounts.list_roles():
            perms.update(role.permissions)
        return frozenset(perms)

    async def create(
        self,
        name: str,
        scopes: Iterable[str],
        *,
        jwk: dict[str, Any] | None = None,
        access_ttl: float | None = None,
    ) -> tuple[ClientRecord, str | None]:
        """Create a client; return it with its secret (None for a private_key_jwt client).
        The secret is never stored and cannot be shown again."""
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
            raise InvalidRequest("a client needs a name of 1 to 100 characters", field="name")
        wanted = check_permissions(scopes)
        unknown = set(wanted) - await self.defined_permissions()
        if unknown:
            raise InvalidScope(f"scopes {sorted(unknown)} are not defined permissions")
        # Never longer than the server's: key retirement and revocation events are sized to it.
        if access_ttl is not None and not 1 <= access_ttl <= self.access_ttl:
            raise InvalidRequest(
                f"access_ttl must be between 1 s and {self.access_ttl:g} s", field="access_ttl"
            )
        secret: str | None = None
        secret_hash: str | None = None
        public_jwk: str | None = None
        if jwk is not None:
            try:
                key = Key.from_jwk(jwk)
            except InvalidKey as exc:
                raise InvalidRequest(
                    f"the client JWK is invalid: {exc.reason}", field="jwk"
                ) from exc
            if key.is_symmetric or key.can_sign:
                raise InvalidRequest("register the client's PUBLIC key only", field="jwk")
            public_jwk = json.dumps(key.to_jwk())
        else:
            secret = secrets.token_urlsafe(32)
            secret_hash = await self._hasher.hash(secret)
        record = ClientRecord(
            client_id="cli_" + secrets.token_urlsafe(12),
            name=name.strip(),
            scopes=wanted,
            created_at=self._clock.now(),
            secret_hash=secret_hash,
            public_jwk=public_jwk,
            access_ttl=access_ttl,
        )
        try:
            await self._store.create_client(record)
        except Conflict as exc:  # a 96-bit id collision: refuse rather than overwrite
            raise InvalidRequest("client id collision; try again") from exc
        await self._audit.record("client_created", client_id=record.client_id, scopes=list(wanted))
        return record, secret

    async def list(self) -> list[ClientRecord]:
        """Every client."""
        return await self._store.list_clients()

    async def get(self, client_id: str) -> ClientRecord | None:
        """A client by id."""
        return await self._store.get_client(client_id)

    async def revoke(self, client_id: str) -> bool:
        """Revoke a client: it cannot authenticate, and its access tokens die everywhere."""
        if not await self._store.revoke_client(client_id, now=self._clock.now()):
            return False
        self._verified.pop(client_id, None)
        await self._revocations.revoke_subject(client_id, epoch=self._clock.now())
        await self._audit.record("client_revoked", client_id=client_id)
        return True

    # --- authentication ---------------------------------------------------------------------

    def _cache_tag(self, secret: str) -> bytes:
        return hmac.new(self._cache_key, secret.encode("utf-8"), hashlib.sha256).digest()

    async def authenticate_secret(self, client_id: str, secret: str) -> ClientRecord:
        """client_secret_basic / client_secret_post. InvalidClient for any failure, after
        the same argon2 work for an unknown client as for a known one."""
        record = await self._store.get_client(client_id) if len(client_id) <= 64 else None
        if record is None or record.revoked_at is not None or record.secret_hash is None:
            await self._hasher.verify(None, secret)
            raise InvalidClient("unknown client or no secret")
        now = self._clock.now()
        tag = self._cache_tag(secret)
        cached = self._verified.get(client_id)
        if cached is not None and cached[1] > now and hmac.compare_digest(cached[0], tag):
            return record
        if not await self._hasher.verify(record.secret_hash, secret):
            raise InvalidClient("wrong client secret")
        self._verified[client_id] = (tag, now + _VERIFIED_TTL)
        self._verified.move_to_end(client_id)
        while len(self._verified) > _VERIFIED_MAX:
            self._verified.popitem(last=False)
        return record

    async def authenticate_assertion(self, client_id: str | None, assertion: str) -> ClientRecord:
        """private_key_jwt (RFC 7523): an assertion signed with the client's registered key,
        verified by the strict core; its jti is single-use."""
        from authgate.jose import jws

        try:
            header = jws.split(assertion)[0]
            claimed = client_id
            if claimed is None:
                payload = jws.split(assertion)[1]
                from authgate.jose._json import loads_object

                claimed = loads_object(payload).get("iss")
            if not isinstance(claimed, str) or len(claimed) > 64:
                raise InvalidClient("the assertion does not name its client")
            record = await self._store.get_client(claimed)
            if record is None or record.revoked_at is not None or record.public_jwk is None:
                raise InvalidClient("unknown client or not a private_key_jwt client")
            key = Key.from_jwk(record.public_jwk)
            if header.alg not in ASSERTION_ALGORITHMS:
                raise InvalidClient("assertion algorithm not allowed")
            now = self._clock.now()
            # iss must be the client; aud (this server) is checked below, since it may be
            # the token endpoint or the issuer.
            policy = ClaimsPolicy(
                issuer=record.client_id,
                required=frozenset({"exp", "iss", "sub", "aud", "jti"}) - {"aud"},
                leeway=self._leeway,
                max_lifetime=MAX_ASSERTION_LIFETIME,
            )
            claims = decode(assertion, key, algorithms=[key.alg], policy=policy, now=now)
        except InvalidToken as exc:
            raise InvalidClient(f"client assertion refused: {exc.code}") from exc
        if claims["iss"] != record.client_id or claims["sub"] != record.client_id:
            raise InvalidClient("assertion iss and sub must be the client id")
        aud = claims.get("aud")
        if aud is None:
            raise InvalidClient("the assertion has no aud")
        audiences = [aud] if isinstance(aud, str) else aud
        if self.token_endpoint not in audiences and self.issuer not in audiences:
            raise InvalidClient("assertion audience is not this server")
        if not await self._store.use_assertion_id(
            record.client_id, str(claims["jti"]), expires_at=float(claims["exp"]) + self._leeway
        ):
            raise InvalidClient("assertion jti was already used")
        return record

    # --- grants -----------------------------------------------------------------------------

    def grant(self, client: ClientRecord, scope: str | None) -> ClientGrant:
        """client_credentials: an access token for the client itself, with the requested
        scope narrowed from what it is allowed (never widened)."""
        allowed = set(client.scopes)
        if scope is None:
            granted = sorted(allowed)
        else:
            wanted = scope.split()
            if not wanted or not set(wanted) <= allowed:
                raise InvalidScope("the requested scope is beyond what the client is allowed")
            granted = sorted(set(wanted))
        now = self._clock.now()
        ttl = int(client.access_ttl or self.access_ttl)
        claims = {
            "iss": self.issuer,
            "sub": client.client_id,
            "aud": self.audience,
            "exp": int(now) + ttl,
            "iat": int(now),
            "jti": secrets.token_urlsafe(16),
            "client_id": client.client_id,
            "scope": " ".join(granted),
        }
        token = encode(claims, self._keyring.keyset, typ="at+jwt")
        return ClientGrant(token, ttl, " ".join(granted))

    async def introspect(
        self, token: str, sessions: Any, *, caller: ClientRecord
    ) -> dict[str, Any]:
        """RFC 7662 for a client holding ``authgate:introspect`` (InsufficientScope
        otherwise): the claims of a live token with ``active: true``; ``{"active": false}``
        for anything invalid, expired or revoked, without saying why. A refresh token is
        only ever active to the client it was issued to (RFC 7662 section 4)."""
        from authgate.service.sessions import REFRESH_PREFIX

        if INTROSPECT_SCOPE not in caller.scopes:
            raise InsufficientScope(
                "introspection needs the authgate:introspect scope", scope=(INTROSPECT_SCOPE,)
            )
        inactive: dict[str, Any] = {"active": False}
        if not isinstance(token, str) or not token or len(token) > 8192:
            return inactive
        if token.startswith(REFRESH_PREFIX):
            info = await sessions.refresh_token_info(token)
            if info is None or info.get("client_id") != caller.client_id:
                return inactive
            return {"active": True, **info}
        try:
            claims = decode(
                token,
                self._keyring.keyset,
                algorithms=self._keyring.view.algorithms,
                policy=ClaimsPolicy.access_token(issuer=self.issuer, audience=self.audience),
                now=self._clock.now(),
            )
            if "sid" in claims:
                await sessions.authenticate(token)
            else:
                client = await self._store.get_client(str(claims["sub"]))
                if client is None or client.revoked_at is not None:
                    return inactive
                if await self._revocations.is_revoked("jti", str(claims["jti"])):
                    return inactive
        except AuthgateError:
            return inactive
        return {"active": True, "token_type": "Bearer", **claims}

    async def purge(self) -> int:
        """Drop expired assertion ids."""
        try:
            return await self._store.purge_assertion_ids(now=self._clock.now())
        except AuthgateError:
            return 0
