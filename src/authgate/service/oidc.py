"""The OpenID Connect provider: authorization requests, codes with PKCE, ID tokens,
consent, userinfo and the end of a hosted login. It knows no HTTP: the pages and routes call
it, and turn its AuthorizeError into an error page or a redirect (:meth:`Oidc.error_redirect`).

An authorization code is 256 random bits, stored only as its SHA-256 digest, bound to the
client, the redirect URI and the PKCE S256 challenge, alive 60 s, and used by one
compare-and-set. A code presented again ends the session its first exchange opened
(RFC 6749 4.1.2). The session an exchange opens is a child of the hosted login
(``parent_sid``): ending the login ends it.

Claims: the ID token carries ``email``/``email_verified`` (scope email) and ``name`` (scope
profile) as userinfo does, so that a client needs no second call.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

from authgate.clock import Clock
from authgate.errors import (
    AuthgateError,
    AuthorizeError,
    AuthorizeInvalidScope,
    ConsentRequired,
    InsufficientScope,
    InvalidAudience,
    InvalidGrant,
    InvalidRedirectUri,
    InvalidRequest,
    LoginRequired,
    RequestNotSupported,
    RequestUriNotSupported,
    UnauthorizedClient,
    UnknownAuthorizeClient,
    UnsupportedResponseType,
)
from authgate.jose import ClaimsPolicy, b64encode_str, encode, jws, loads_object
from authgate.jose.jwt import check_claims
from authgate.service.accounts import Accounts
from authgate.service.audit import Audit
from authgate.service.clients import OIDC_SCOPES, Clients
from authgate.service.keyring import Keyring
from authgate.service.revocation import Revocations
from authgate.service.sessions import Sessions
from authgate.service.tokens import ID_TOKEN_TTL
from authgate.storage.base import (
    AuthCodeRecord,
    ClientRecord,
    ConsentRecord,
    OidcStore,
    SessionRecord,
)

CODE_TTL = 60.0
DEFAULT_ID_TOKEN_ALG = "RS256"  # noqa: S105 (an algorithm name)
PROMPTS = frozenset({"none", "login", "consent", "select_account"})
CLAIMS: tuple[str, ...] = (
    *("sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "sid", "azp"),
    *("at_hash", "name", "email", "email_verified"),
)
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # BASE64URL(SHA-256): 43 characters
_CODE = re.compile(r"[A-Za-z0-9_-]{43}")
_MAX_PARAM = 2048
_KNOWN = frozenset(
    {
        "client_id",
        "redirect_uri",
        "response_type",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "prompt",
        "max_age",
        "response_mode",
        "login_hint",
        "ui_locales",
        "display",
        "claims_locales",
        "acr_values",
        "id_token_hint",
        "request",
        "request_uri",
        "registration",
        "claims",
    }
)
_HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of a verifier: BASE64URL(SHA256(ASCII(verifier)))."""
    return b64encode_str(hashlib.sha256(verifier.encode("ascii")).digest())


def _code_digest(code: str) -> str:
    return hashlib.sha256(code.encode("ascii")).hexdigest()


def _left_hash(alg: str, value: str) -> str:
    """at_hash: the left half of the hash of the JWS algorithm, base64url (OIDC Core
    3.1.3.6); Ed25519's hash is SHA-512."""
    hasher = hashlib.sha512 if alg == "EdDSA" else _HASHES[alg[-3:]]
    digest = hasher(value.encode("ascii")).digest()
    return b64encode_str(digest[: len(digest) // 2])


def with_query(url: str, params: Mapping[str, str | None]) -> str:
    """``url`` with ``params`` (None ones left out) added to its query."""
    parts = urlsplit(url)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationRequest:
    """A validated /authorize request."""

    client: ClientRecord
    redirect_uri: str
    scope: tuple[str, ...]
    code_challenge: str
    state: str | None = None
    nonce: str | None = None
    prompt: frozenset[str] = frozenset()
    max_age: int | None = None
    login_hint: str | None = None

    @property
    def scope_text(self) -> str:
        """The scope, space-separated."""
        return " ".join(self.scope)


@dataclass(frozen=True, slots=True)
class HostedLogin:
    """The browser's current hosted login: who, which login session, when and how."""

    user_id: str
    sid: str
    auth_time: float
    amr: tuple[str, ...] = ("pwd",)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the page layer does next: show the login, show the consent, or issue a code."""

    action: Literal["login", "consent", "issue"]
    scope: tuple[str, ...] = ()  # for a consent: the scopes to ask for


@dataclass(frozen=True, slots=True)
class EndSession:
    """A validated end-session request: whose login to end (None: the browser's own, as
    the page layer knows it), the client, and where to go after (None: nowhere)."""

    user_id: str | None
    login_sid: str | None
    client: ClientRecord | None
    redirect_url: str | None


@dataclass(frozen=True, eq=False, repr=False)
class Oidc:
    """The OpenID Connect use-cases."""

    store: OidcStore
    _: KW_ONLY
    clients: Clients
    accounts: Accounts
    sessions: Sessions
    revocations: Revocations
    keyring: Keyring
    audit: Audit
    clock: Clock
    issuer: str

    # --- authorization request ---------------------------------------------------------------

    async def authorization_request(
        self, params: Mapping[str, str] | Iterable[tuple[str, str]]
    ) -> AuthorizationRequest:
        """Validate an /authorize request (OIDC Core 3.1.2.1, RFC 7636, RFC 9700).

        Raises an AuthorizeError: UnknownAuthorizeClient and InvalidRedirectUri are never
        redirected; every other one carries the redirect URI and state."""
        pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
        seen: dict[str, str] = {}
        repeated: set[str] = set()
        for name, value in pairs:
            if name in seen:
                repeated.add(name)
            seen[name] = value
        if repeated & {"client_id", "redirect_uri"}:
            raise InvalidRedirectUri("client_id or redirect_uri is repeated")
        client_id = seen.get("client_id")
        client = (
            await self.clients.get(client_id)
            if isinstance(client_id, str) and 0 < len(client_id) <= 64
            else None
        )
        if client is None or client.revoked_at is not None or not client.redirect_uris:
            raise UnknownAuthorizeClient("unknown, revoked or not an OpenID Connect client")
        redirect_uri = seen.get("redirect_uri")
        if redirect_uri is None or redirect_uri not in client.redirect_uris:
            raise InvalidRedirectUri("redirect_uri is missing or not registered")
        state = seen.get("state")
        if repeated or any(len(v) > _MAX_PARAM for v in seen.values()):
            raise AuthorizeError(
                "a parameter is repeated or too long",
                redirect_uri=redirect_uri,
                state=None if "state" in repeated else state,
            )
        where = {"redirect_uri": redirect_uri, "state": state}
        if "request" in seen:
            raise RequestNotSupported("request objects are not supported", **where)
        if "request_uri" in seen:
            raise RequestUriNotSupported("request_uri is not supported", **where)
        if seen.get("response_type") != "code":
            raise UnsupportedResponseType("response_type must be code", **where)
        if seen.get("response_mode", "query") != "query":
            raise AuthorizeError("response_mode must be query", **where)
        scope = tuple(dict.fromkeys(seen.get("scope", "").split()))
        if "openid" not in scope:
            raise AuthorizeInvalidScope("scope must contain openid", **where)
        if not set(scope) <= set(client.scopes):
            raise AuthorizeInvalidScope("scope is beyond the client's", **where)
        challenge = seen.get("code_challenge")
        if seen.get("code_challenge_method") != "S256" or challenge is None:
            raise AuthorizeError("PKCE with code_challenge_method=S256 is required", **where)
        if not _CHALLENGE.fullmatch(challenge):
            raise AuthorizeError("code_challenge is not a S256 challenge", **where)
        prompt = frozenset(seen.get("prompt", "").split())
        if not prompt <= PROMPTS or ("none" in prompt and len(prompt) > 1):
            raise AuthorizeError("prompt is invalid", **where)
        max_age: int | None = None
        if "max_age" in seen:
            raw = seen["max_age"]
            if not raw.isdigit() or not raw.isascii() or len(raw) > 10:
                raise AuthorizeError("max_age must be a non-negative integer", **where)
            max_age = int(raw)
        return AuthorizationRequest(
            client=client,
            redirect_uri=redirect_uri,
            scope=tuple(sorted(scope)),
            code_challenge=challenge,
            state=state,
            nonce=seen.get("nonce"),
            prompt=prompt,
            max_age=max_age,
            login_hint=seen.get("login_hint"),
        )

    def error_redirect(self, exc: AuthorizeError) -> str | None:
        """The redirect that carries ``exc`` to the client (``error``,
        ``error_description``, ``state``, ``iss``: RFC 9207), or None when it must be an
        error page (an unknown client, a redirect URI not registered)."""
        if not exc.redirectable:
            return None
        return with_query(
            str(exc.context["redirect_uri"]),
            {
                "error": exc.error,
                "error_description": exc.description,
                "state": exc.context.get("state"),
                "iss": self.issuer,
            },
        )

    async def decide(
        self,
        request: AuthorizationRequest,
        login: HostedLogin | None,
        *,
        fresh_login: bool = False,
        consented: bool = False,
    ) -> Decision:
        """Login, consent, or issue. A login is needed without one, for ``prompt=login``
        (unless ``fresh_login``: the user has just logged in for this request), or past
        ``max_age`` (unless ``fresh_login``); consent for a third-party client without a
        remembered consent that covers the scope, or for ``prompt=consent`` (unless
        ``consented``: the user has just answered this request's consent page). With
        ``prompt=none`` these raise LoginRequired or ConsentRequired (redirectable)
        instead."""
        where = {"redirect_uri": request.redirect_uri, "state": request.state}
        none = "none" in request.prompt
        too_old = (
            login is not None
            and not fresh_login
            and request.max_age is not None
            and self.clock.now() - login.auth_time > request.max_age
        )
        if (
            login is None
            or too_old
            or ("login" in request.prompt and not fresh_login)
            or not await self._live_user(login.user_id)
        ):
            if none:
                raise LoginRequired("the user must log in", **where)
            return Decision("login")
        if consented or (request.client.first_party and "consent" not in request.prompt):
            return Decision("issue")
        consent = await self.store.get_consent(login.user_id, request.client.client_id)
        covered = consent is not None and set(request.scope) <= set(consent.scope.split())
        if covered and "consent" not in request.prompt:
            return Decision("issue")
        if none:
            raise ConsentRequired("the user must consent", **where)
        return Decision("consent", request.scope)

    async def _live_user(self, user_id: str) -> bool:
        user = await self.accounts.users.get_user(user_id)
        return user is not None and not user.disabled

    # --- consent -----------------------------------------------------------------------------

    async def grant_consent(self, user_id: str, client_id: str, scope: Sequence[str]) -> None:
        """Remember that the user lets the client have ``scope`` (added to what it had)."""
        old = await self.store.get_consent(user_id, client_id)
        scopes = set(scope) | (set(old.scope.split()) if old else set())
        await self.store.put_consent(
            ConsentRecord(user_id, client_id, " ".join(sorted(scopes)), self.clock.now())
        )
        await self.audit.record(
            "consent_granted", user_id=user_id, client_id=client_id, scope=sorted(scopes)
        )

    async def consents(self, user_id: str) -> list[ConsentRecord]:
        """The user's remembered consents."""
        return await self.store.list_consents(user_id)

    async def revoke_consent(self, user_id: str, client_id: str) -> bool:
        """Forget a consent and end every session of the user with that client (what it
        was given rests on the consent); False if there was no consent."""
        removed = await self.store.delete_consent(user_id, client_id)
        ended = await self.sessions.end_client(user_id, client_id, reason="consent_revoked")
        if removed or ended:
            await self.audit.record(
                "consent_revoked", user_id=user_id, client_id=client_id, sessions=len(ended)
            )
        return removed

    # --- codes -------------------------------------------------------------------------------

    async def issue_code(
        self,
        request: AuthorizationRequest,
        *,
        user_id: str,
        login_sid: str,
        auth_time: float,
        amr: Sequence[str],
    ) -> str:
        """Issue a code for the user's hosted login; the redirect URL that carries it
        (``code``, ``state``, ``iss``)."""
        now = self.clock.now()
        code = secrets.token_urlsafe(32)
        await self.store.create_auth_code(
            AuthCodeRecord(
                digest=_code_digest(code),
                client_id=request.client.client_id,
                user_id=user_id,
                login_sid=login_sid,
                redirect_uri=request.redirect_uri,
                code_challenge=request.code_challenge,
                scope=request.scope_text,
                nonce=request.nonce,
                auth_time=auth_time,
                amr=" ".join(amr) or "pwd",
                created_at=now,
                expires_at=now + CODE_TTL,
            )
        )
        await self.audit.record(
            "oidc_code_issued", user_id=user_id, sid=login_sid, client_id=request.client.client_id
        )
        return with_query(
            request.redirect_uri, {"code": code, "state": request.state, "iss": self.issuer}
        )

    async def exchange_code(
        self,
        client: ClientRecord,
        *,
        code: str | None,
        redirect_uri: str | None,
        code_verifier: str | None,
        ip: str | None = None,
    ) -> dict[str, Any]:
        """grant_type=authorization_code for an authenticated (or public) client: the
        token response with a refresh token and an ``id_token``. InvalidGrant for every
        refusal; a code used before also ends the session its first use opened."""
        if not client.redirect_uris:
            raise UnauthorizedClient("not an OpenID Connect client")
        if code is None or redirect_uri is None or code_verifier is None:
            raise InvalidRequest("code, redirect_uri and code_verifier are required")
        if not _CODE.fullmatch(code):
            raise InvalidGrant("malformed code")
        digest = _code_digest(code)
        now = self.clock.now()
        sid = "sid_" + secrets.token_urlsafe(16)
        record = await self.store.use_auth_code(digest, now=now, sid=sid)
        if record is None:
            await self._reused(digest, ip)
            raise InvalidGrant("unknown or used code")
        if record.client_id != client.client_id:
            raise InvalidGrant("the code was issued to another client")
        if not hmac.compare_digest(record.redirect_uri.encode(), redirect_uri.encode()):
            raise InvalidGrant("redirect_uri differs from the authorization request's")
        if now >= record.expires_at:
            raise InvalidGrant("the code expired")
        # The code is spent by now: a wrong or malformed verifier gets no second try.
        if not _VERIFIER.fullmatch(code_verifier):
            raise InvalidGrant("code_verifier is malformed")
        if not hmac.compare_digest(s256(code_verifier).encode(), record.code_challenge.encode()):
            raise InvalidGrant("code_verifier does not match the challenge")
        user = await self.accounts.users.get_user(record.user_id)
        if user is None or user.disabled:
            raise InvalidGrant("the user is gone or disabled")
        login = await self._live_login(record.login_sid, now)
        if login is None:
            raise InvalidGrant("the login the code came from has ended")
        pair = await self.sessions.start(
            user,
            ip=ip,
            user_agent=None,
            client_id=client.client_id,
            scope=record.scope,
            amr=record.amr.split(),
            auth_time=record.auth_time,
            parent_sid=record.login_sid,
            sid=sid,
            not_after=login.expires_at,  # it ends with the hosted login, at the latest
        )
        if await self._live_login(record.login_sid, now) is None:
            # The login ended while this session was being opened: end it too.
            await self.sessions.end_tree(sid, reason="login_ended")
            raise InvalidGrant("the login the code came from has ended")
        scope = record.scope.split()
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user.id,
            "aud": client.client_id,
            "azp": client.client_id,
            "iat": int(now),
            "exp": int(now + ID_TOKEN_TTL),
            "auth_time": int(record.auth_time),
            "amr": record.amr.split(),
            "sid": record.login_sid,
        }
        if record.nonce is not None:
            claims["nonce"] = record.nonce
        claims.update(
            _profile_claims(scope, name=user.name, email=user.email, verified=user.email_verified)
        )
        alg = client.id_token_alg or DEFAULT_ID_TOKEN_ALG
        claims["at_hash"] = _left_hash(alg, pair.access_token)
        id_token = encode(claims, self.keyring.view.keyset_for(alg), typ="JWT")
        await self.audit.record(
            "oidc_code_exchanged", user_id=user.id, sid=sid, client_id=client.client_id, ip=ip
        )
        return {**pair.response(), "id_token": id_token}

    async def _live_login(self, login_sid: str, now: float) -> SessionRecord | None:
        login = await self.sessions.store.get_session(login_sid)
        if login is None or login.revoked_at is not None or login.expires_at <= now:
            return None
        return login

    async def _reused(self, digest: str, ip: str | None) -> None:
        """A used code came back: end what its first exchange opened (RFC 6749 4.1.2)."""
        used = await self.store.get_auth_code(digest)
        if used is None or used.issued_sid is None:
            return
        ended = await self.sessions.end_tree(used.issued_sid, reason="code_reuse")
        if used.issued_sid not in ended:
            # Its session may not be written yet: the feed still kills its tokens.
            await self.revocations.revoke_sid(used.issued_sid)
        await self.audit.record(
            "oidc_code_reused",
            user_id=used.user_id,
            sid=used.issued_sid,
            client_id=used.client_id,
            ip=ip,
        )

    # --- userinfo ----------------------------------------------------------------------------

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        """The claims of the token's user by its scope: ``sub`` always; ``name`` (profile);
        ``email`` and ``email_verified`` (email). InvalidToken for a bad, revoked or
        expired token; InsufficientScope for a token without ``openid`` (not from a code
        flow)."""
        try:
            ctx = await self.sessions.authenticate(access_token, client=True)
        except InvalidAudience as exc:  # the user's own token, or a service's
            raise InsufficientScope("the token has no openid scope", scope=("openid",)) from exc
        scope = str(ctx.claims.get("scope", "")).split()
        if "openid" not in scope:
            raise InsufficientScope("the token has no openid scope", scope=("openid",))
        user = ctx.user
        return {
            "sub": user.id,
            **_profile_claims(
                scope, name=user.name, email=user.email, verified=user.email_verified
            ),
        }

    # --- end session -------------------------------------------------------------------------

    async def end_session_request(self, params: Mapping[str, str]) -> EndSession:
        """Validate an RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).

        ``id_token_hint`` must be an ID token this server signed (it may have expired) for
        a known client; ``client_id``, when given too, must match it. A
        ``post_logout_redirect_uri`` must be one the client registered, exactly; without a
        client there is no redirect at all. InvalidRequest otherwise."""
        hint, client_id = params.get("id_token_hint"), params.get("client_id")
        user_id: str | None = None
        login_sid: str | None = None
        if hint:
            claims = self._verify_hint(hint)
            aud = claims.get("aud")
            if not isinstance(aud, str) or (client_id is not None and client_id != aud):
                raise InvalidRequest("id_token_hint is not for this client")
            client_id = aud
            user_id = str(claims["sub"])
            sid = claims.get("sid")
            login_sid = sid if isinstance(sid, str) else None
        client = None
        if client_id is not None:
            client = await self.clients.get(client_id)
            if client is None or client.revoked_at is not None or not client.redirect_uris:
                raise InvalidRequest("unknown client")
        target = params.get("post_logout_redirect_uri")
        redirect_url = None
        if target is not None:
            if client is None or target not in client.post_logout_redirect_uris:
                raise InvalidRequest("post_logout_redirect_uri is not registered")
            redirect_url = with_query(target, {"state": params.get("state")})
        return EndSession(user_id, login_sid, client, redirect_url)

    def _verify_hint(self, hint: str) -> dict[str, Any]:
        view = self.keyring.view
        algs = self.keyring.id_token_algs
        keys = view.published or view.signing
        policy = ClaimsPolicy(
            issuer=self.issuer,
            required=frozenset({"iss", "sub", "iat"}),  # aud: checked below
            max_lifetime=None,
        )
        try:
            header, payload = jws.verify(hint, keys, algorithms=algs)
            claims = loads_object(payload)  # only once the signature is known good
            iat = claims.get("iat")
            if type(iat) is not int or iat < 0:
                raise InvalidRequest("id_token_hint has no iat")
            # An expired hint is acceptable (RP-Initiated Logout 1.0, 2): the time checks
            # run at its own iat.
            check_claims(claims, typ=header.get("typ"), policy=policy, now=float(iat))
        except AuthgateError as exc:
            raise InvalidRequest(f"id_token_hint is refused: {exc.code}") from exc
        return claims

    async def end_login(self, login_sid: str) -> list[str]:
        """End a hosted login's session (if it is one) and every session opened from it,
        through the revocation feed; the sids ended."""
        return await self.sessions.end_tree(login_sid, reason="end_session")

    # --- discovery and upkeep ----------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The OpenID Provider metadata (OpenID Connect Discovery 1.0, section 3)."""
        issuer = self.issuer
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/oauth2/token",
            "userinfo_endpoint": f"{issuer}/userinfo",
            "end_session_endpoint": f"{issuer}/logout",
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "revocation_endpoint": f"{issuer}/oauth2/revoke",
            "scopes_supported": list(OIDC_SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": list(self.keyring.id_token_algs),
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
                "none",
            ],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": list(CLAIMS),
            "prompt_values_supported": sorted(PROMPTS),
            "authorization_response_iss_parameter_supported": True,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "claims_parameter_supported": False,
            "backchannel_logout_supported": False,
            "frontchannel_logout_supported": False,
        }

    async def purge(self) -> int:
        """Drop expired authorization codes."""
        try:
            return await self.store.purge_auth_codes(before=self.clock.now())
        except AuthgateError:
            return 0


def _profile_claims(
    scope: Sequence[str], *, name: str | None, email: str, verified: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "profile" in scope and name:
        out["name"] = name
    if "email" in scope:
        out["email"] = email
        out["email_verified"] = verified
    return out


__all__ = [
    "CLAIMS",
    "CODE_TTL",
    "DEFAULT_ID_TOKEN_ALG",
    "PROMPTS",
    "AuthorizationRequest",
    "Decision",
    "EndSession",
    "HostedLogin",
    "Oidc",
    "s256",
    "with_query",
]
