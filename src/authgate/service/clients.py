"""Service clients (OAuth2): creation, authentication and the client_credentials grant.

A client secret is 256 random bits, shown once and stored as a keyed digest: HMAC-SHA256,
under a key derived from the master key, of the client id and the secret. A secret that
cannot be guessed needs no slow hash, and a digest costs microseconds, so client
authentication never reaches the password hasher: a flood of it cannot starve logins.
A secret stored by an older version as an argon2id hash is verified once more with
argon2 (through the throttle) and then stored as a digest.

Every client authentication (secret or assertion) is one attempt of the ClientThrottle:
failures are counted per client id and per IP before the check, and audited.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, NoReturn
from urllib.parse import urlsplit

from authgate.clock import Clock
from authgate.errors import (
    AuthgateError,
    ConfigurationError,
    Conflict,
    InvalidClient,
    InvalidKey,
    InvalidRequest,
    InvalidScope,
    InvalidToken,
    UnauthorizedClient,
)
from authgate.jose import ClaimsPolicy, Key, b64encode_str, decode, jws, loads_object
from authgate.passwords import PasswordHasher
from authgate.service.accounts import Accounts, check_permissions
from authgate.service.audit import Audit
from authgate.service.introspection import INTROSPECT_SCOPE
from authgate.service.limits import ClientThrottle
from authgate.service.revocation import Revocations
from authgate.service.tokens import AccessTokens, token_response
from authgate.storage.base import ClientRecord, ClientStore

REVOCATIONS_SCOPE = "authgate:revocations"
BUILTIN_SCOPES = frozenset({REVOCATIONS_SCOPE, INTROSPECT_SCOPE})
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# Authlib and other clients sign assertions valid for an hour; jti stays single-use.
MAX_ASSERTION_LIFETIME = 3600.0
SECRET_DIGEST_PREFIX = "hmac-sha256$"  # noqa: S105 (a format tag, not a secret)
_MAX_CLIENT_ID = 64
# The scopes an OpenID Connect client may hold: identity only, never API permissions. A
# refresh token is always issued; it dies with the hosted login, so there is no offline_access.
OIDC_SCOPES = ("openid", "profile", "email")
MAX_REDIRECT_URIS = 10
_MAX_URI = 2000
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# Schemes a native app's private-use redirect may never take (RFC 8252 7.1 wants reverse DNS).
_FORBIDDEN_SCHEMES = frozenset({"javascript", "data", "file", "vbscript", "blob", "about"})


def check_redirect_uri(uri: object, *, public: bool, field: str = "redirect_uris") -> str:
    """An exact redirect URI a client may register; InvalidRequest otherwise.

    Absolute, no fragment, no user info, no wildcard; https, or http to a loopback host
    (RFC 8252 7.3); a private-use scheme in reverse-DNS form only for a public (native)
    client (RFC 8252 7.1)."""
    if not isinstance(uri, str) or not 0 < len(uri) <= _MAX_URI:
        raise InvalidRequest("a redirect URI must be a string of 1 to 2000 characters", field=field)
    if any(c.isspace() or ord(c) < 0x21 or ord(c) == 0x7F for c in uri) or "*" in uri:
        raise InvalidRequest("a redirect URI has no spaces, controls or wildcards", field=field)
    if "#" in uri:
        raise InvalidRequest("a redirect URI has no fragment", field=field)
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        parts.port  # noqa: B018 (a malformed port raises here)
    except ValueError as exc:
        raise InvalidRequest("a redirect URI is malformed", field=field) from exc
    scheme = parts.scheme
    if not scheme or not uri.startswith(scheme + ":"):
        raise InvalidRequest("a redirect URI must be absolute (lower-case scheme)", field=field)
    if scheme in ("http", "https"):
        if not host or "@" in parts.netloc:
            raise InvalidRequest("a redirect URI needs a host and no user info", field=field)
        if scheme == "http" and host not in _LOOPBACK_HOSTS:
            raise InvalidRequest("plain http is for loopback redirect URIs only", field=field)
        return uri
    if not public:
        raise InvalidRequest("a private-use scheme is for public (native) clients", field=field)
    if scheme in _FORBIDDEN_SCHEMES or "." not in scheme or parts.netloc:
        raise InvalidRequest(
            "a private-use redirect URI is reverse-DNS:/path (RFC 8252 7.1)", field=field
        )
    return uri


_NO_CLIENT = "\x00invalid"  # the throttle's subject for an id no client can have


@dataclass(frozen=True, slots=True)
class ClientGrant:
    """An access token issued to a client."""

    access_token: str
    expires_in: int
    scope: str

    def response(self) -> dict[str, Any]:
        """The RFC 6749 section 5.1 body (no refresh token)."""
        return token_response(
            access_token=self.access_token, expires_in=self.expires_in, scope=self.scope
        )


@dataclass(frozen=True, eq=False, repr=False)
class Clients:
    """The client use-cases."""

    store: ClientStore
    _: KW_ONLY
    accounts: Accounts
    hasher: PasswordHasher
    tokens: AccessTokens
    revocations: Revocations
    audit: Audit
    clock: Clock
    secret_key: bytes
    throttle: ClientThrottle
    leeway: float = 0.0
    id_token_algs: tuple[str, ...] = ("RS256",)
    _dummy_digest: str = field(init=False)

    def __post_init__(self) -> None:
        if len(self.secret_key) < 32:
            raise ConfigurationError("the client-secret key needs at least 32 bytes")
        # What an unknown client's secret is compared with: the same digest work.
        object.__setattr__(self, "_dummy_digest", self._digest(_NO_CLIENT, ""))

    @property
    def issuer(self) -> str:
        """The token issuer."""
        return self.tokens.policy.issuer

    @property
    def access_ttl(self) -> float:
        """The longest access-token lifetime a client may have."""
        return self.tokens.policy.access_ttl

    @property
    def token_endpoint(self) -> str:
        """The token endpoint's URL (an audience a client assertion may name)."""
        return f"{self.issuer}/oauth2/token"

    async def defined_permissions(self) -> frozenset[str]:
        """Every permission some role grants, and the built-in ones."""
        perms: set[str] = set(BUILTIN_SCOPES)
        for role in await self.accounts.list_roles():
            perms.update(role.permissions)
        return frozenset(perms)

    async def create(
        self,
        name: str,
        scopes: Iterable[str],
        *,
        jwk: dict[str, Any] | None = None,
        access_ttl: float | None = None,
        redirect_uris: Sequence[str] = (),
        post_logout_redirect_uris: Sequence[str] = (),
        public: bool = False,
        first_party: bool = False,
        id_token_alg: str | None = None,
    ) -> tuple[ClientRecord, str | None]:
        """Create a client; return it with its secret (None for a private_key_jwt or a
        public client). The secret is never stored and cannot be shown again.

        With ``redirect_uris`` it is an OpenID Connect client (authorization code with
        PKCE): its scopes are within ``openid profile email`` (``openid`` at least; all
        three when none are given), and it has no client_credentials grant. A ``public``
        client has no secret and no key. InvalidRequest or InvalidScope otherwise."""
        if not isinstance(name, str) or not 1 <= len(name.strip()) <= 100:
            raise InvalidRequest("a client needs a name of 1 to 100 characters", field="name")
        oidc = bool(redirect_uris)
        if not oidc and (post_logout_redirect_uris or public or first_party or id_token_alg):
            raise InvalidRequest("an OpenID Connect client needs redirect_uris")
        if len(redirect_uris) > MAX_REDIRECT_URIS or (
            len(post_logout_redirect_uris) > MAX_REDIRECT_URIS
        ):
            raise InvalidRequest(f"at most {MAX_REDIRECT_URIS} redirect URIs")
        uris = tuple(dict.fromkeys(check_redirect_uri(u, public=public) for u in redirect_uris))
        logout_uris = tuple(
            dict.fromkeys(
                check_redirect_uri(u, public=public, field="post_logout_redirect_uris")
                for u in post_logout_redirect_uris
            )
        )
        if public and jwk is not None:
            raise InvalidRequest("a public client has no key", field="jwk")
        if id_token_alg is not None and id_token_alg not in self.id_token_algs:
            raise InvalidRequest(
                f"id_token_alg must be one of {', '.join(self.id_token_algs)}",
                field="id_token_alg",
            )
        if oidc:
            wanted = check_permissions(scopes) or OIDC_SCOPES
            if not set(wanted) <= set(OIDC_SCOPES) or "openid" not in wanted:
                raise InvalidScope(
                    "an OpenID Connect client's scopes are openid, and profile or email"
                )
            wanted = tuple(sorted(set(wanted)))
        else:
            wanted = check_permissions(scopes)
            unknown = set(wanted) - await self.defined_permissions()
            if unknown:
                raise InvalidScope(f"scopes {sorted(unknown)} are not defined permissions")
        # Never longer than the server's: key retirement and revocation events are sized to it.
        if access_ttl is not None and not 1 <= access_ttl <= self.access_ttl:
            raise InvalidRequest(
                f"access_ttl must be between 1 s and {self.access_ttl:g} s", field="access_ttl"
            )
        client_id = "cli_" + secrets.token_urlsafe(12)
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
        elif not public:
            secret = secrets.token_urlsafe(32)
            secret_hash = self._digest(client_id, secret)
        record = ClientRecord(
            client_id=client_id,
            name=name.strip(),
            scopes=wanted,
            created_at=self.clock.now(),
            secret_hash=secret_hash,
            public_jwk=public_jwk,
            access_ttl=access_ttl,
            redirect_uris=uris,
            post_logout_redirect_uris=logout_uris,
            public=public,
            first_party=first_party,
            id_token_alg=id_token_alg,
        )
        try:
            await self.store.create_client(record)
        except Conflict as exc:  # a 96-bit id collision: refuse rather than overwrite
            raise InvalidRequest("client id collision; try again") from exc
        await self.audit.record(
            "client_created",
            client_id=record.client_id,
            scopes=list(wanted),
            oidc=oidc,
            public=public,
        )
        return record, secret

    async def list(self) -> list[ClientRecord]:
        """Every client."""
        return await self.store.list_clients()

    async def get(self, client_id: str) -> ClientRecord | None:
        """A client by id."""
        return await self.store.get_client(client_id)

    async def revoke(self, client_id: str) -> bool:
        """Revoke a client: it cannot authenticate, and its access tokens die everywhere."""
        if not await self.store.revoke_client(client_id, now=self.clock.now()):
            return False
        await self.revocations.revoke_subject(client_id)
        await self.audit.record("client_revoked", client_id=client_id)
        return True

    # --- authentication ---------------------------------------------------------------------

    def _digest(self, client_id: str, secret: str) -> str:
        """The stored form of a secret: HMAC-SHA256 of the client id and the secret."""
        message = b"%s\x00%s" % (
            client_id.encode("utf-8", "surrogatepass"),
            secret.encode("utf-8", "surrogatepass"),
        )
        mac = hmac.new(self.secret_key, message, hashlib.sha256).digest()
        return SECRET_DIGEST_PREFIX + b64encode_str(mac)

    async def _failed(
        self, record: ClientRecord | None, ip: str | None, reason: str, *, over_limit: bool
    ) -> NoReturn:
        """Audit a failed client authentication (under the limit: over it, the throttle
        answers instead) and raise InvalidClient."""
        if not over_limit:
            await self.audit.record(
                "client_auth_failed", ip=ip, client_id=record.client_id if record else None
            )
        raise InvalidClient(reason)

    async def public_client(self, client_id: object) -> ClientRecord:
        """A public client named by ``client_id`` alone (token_endpoint_auth_method none);
        InvalidClient if unknown, revoked or not public."""
        record = (
            await self.store.get_client(client_id)
            if isinstance(client_id, str) and 0 < len(client_id) <= _MAX_CLIENT_ID
            else None
        )
        if record is None or record.revoked_at is not None or not record.public:
            raise InvalidClient("not a live public client")
        return record

    async def authenticate_secret(
        self, client_id: str, secret: str, *, ip: str | None
    ) -> ClientRecord:
        """client_secret_basic / client_secret_post, as one attempt of the client throttle.

        InvalidClient for any failure, after the same digest work for an unknown client as
        for a known one; Throttled while the IP, or (for a wrong secret) the client id, is
        over its limit. The password hasher is used only for a secret stored as argon2id
        by an older version, once, and never over the limit."""
        known_id = isinstance(client_id, str) and 0 < len(client_id) <= _MAX_CLIENT_ID

        async def check(over_limit: bool) -> ClientRecord:
            record = await self.store.get_client(client_id) if known_id else None
            if record is not None and (record.revoked_at is not None or not record.secret_hash):
                record = None
            stored = record.secret_hash if record is not None else None
            if record is not None and stored and not stored.startswith(SECRET_DIGEST_PREFIX):
                if over_limit:  # no argon2 work over the limit: the throttle answers 429
                    raise InvalidClient("over the limit, with an argon2id secret")
                if not await self.hasher.verify(stored, secret):
                    await self._failed(record, ip, "wrong client secret", over_limit=over_limit)
                await self.store.replace_client_secret(
                    client_id, old=stored, new=self._digest(client_id, secret)
                )
                return record
            digest = self._digest(client_id if known_id else _NO_CLIENT, secret)
            ok = hmac.compare_digest(digest.encode(), (stored or self._dummy_digest).encode())
            if not ok or record is None:
                await self._failed(
                    record, ip, "unknown client, no secret or a wrong secret", over_limit=over_limit
                )
            return record

        return await self.throttle.attempt(client_id if known_id else _NO_CLIENT, ip, check)

    async def authenticate_assertion(
        self, client_id: str | None, assertion: str, *, ip: str | None
    ) -> ClientRecord:
        """private_key_jwt (RFC 7523), as one attempt of the client throttle: an assertion
        signed with the client's registered key, verified by the strict core; its jti is
        single-use. InvalidClient for any failure."""
        claimed: str | None = client_id
        try:
            header, payload, _, _ = jws.split(assertion)
            if claimed is None:
                # RFC 7521 4.2: without client_id, the iss names the client and so the key;
                # the one payload read before a signature check, under the codec's caps.
                iss = loads_object(payload).get("iss")
                claimed = iss if isinstance(iss, str) else None
        except InvalidToken:
            header, claimed = None, None
        subject = claimed if claimed is not None and 0 < len(claimed) <= _MAX_CLIENT_ID else None

        async def check(over_limit: bool) -> ClientRecord:
            record = await self.store.get_client(subject) if subject is not None else None
            if record is None or record.revoked_at is not None or record.public_jwk is None:
                await self._failed(
                    None, ip, "assertion: not a private_key_jwt client", over_limit=over_limit
                )
            if header is None or header.alg not in ASSERTION_ALGORITHMS:
                await self._failed(
                    record,
                    ip,
                    "assertion: malformed or algorithm not allowed",
                    over_limit=over_limit,
                )
            try:
                claims = self._verify_assertion(assertion, record)
            except InvalidClient as exc:
                await self._failed(
                    record, ip, f"assertion refused: {exc.reason}", over_limit=over_limit
                )
            if not await self.store.use_assertion_id(
                record.client_id,
                str(claims["jti"]),
                expires_at=float(claims["exp"]) + self.leeway,
            ):
                await self._failed(
                    record, ip, "assertion jti was already used", over_limit=over_limit
                )
            return record

        return await self.throttle.attempt(subject or _NO_CLIENT, ip, check)

    def _verify_assertion(self, assertion: str, record: ClientRecord) -> dict[str, Any]:
        """The signature, then the claims, of a client's assertion; InvalidClient if not."""
        assert record.public_jwk is not None
        try:
            key = Key.from_jwk(record.public_jwk)
            # iss must be the client; aud (this server) is checked below, since it may be
            # the token endpoint or the issuer.
            policy = ClaimsPolicy(
                issuer=record.client_id,
                required=frozenset({"exp", "iss", "sub", "aud", "jti"}) - {"aud"},
                leeway=self.leeway,
                max_lifetime=MAX_ASSERTION_LIFETIME,
            )
            claims = decode(
                assertion, key, algorithms=[key.alg], policy=policy, now=self.clock.now()
            )
        except (InvalidToken, InvalidKey) as exc:
            raise InvalidClient(f"{exc.code}") from exc
        if claims["iss"] != record.client_id or claims["sub"] != record.client_id:
            raise InvalidClient("assertion iss and sub must be the client id")
        aud = claims.get("aud")
        if aud is None:
            raise InvalidClient("the assertion has no aud")
        audiences = [aud] if isinstance(aud, str) else aud
        if self.token_endpoint not in audiences and self.issuer not in audiences:
            raise InvalidClient("assertion audience is not this server")
        return claims

    # --- grants -----------------------------------------------------------------------------

    def grant(self, client: ClientRecord, scope: str | None) -> ClientGrant:
        """client_credentials: an access token for the client itself, with the requested
        scope narrowed from what it is allowed (never widened). UnauthorizedClient for a
        client of the code flow."""
        if client.redirect_uris:
            raise UnauthorizedClient("an OpenID Connect client has no client_credentials grant")
        allowed = set(client.scopes)
        if scope is None:
            granted = sorted(allowed)
        else:
            wanted = scope.split()
            if not wanted or not set(wanted) <= allowed:
                raise InvalidScope("the requested scope is beyond what the client is allowed")
            granted = sorted(set(wanted))
        token, ttl = self.tokens.issue(
            sub=client.client_id,
            client_id=client.client_id,
            scope=granted,
            now=self.clock.now(),
            ttl=client.access_ttl or self.access_ttl,
        )
        return ClientGrant(token, ttl, " ".join(granted))

    async def purge(self) -> int:
        """Drop expired assertion ids."""
        try:
            return await self.store.purge_assertion_ids(now=self.clock.now())
        except AuthgateError:
            return 0
