"""Request and response models: the API's shapes only."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    """Request bodies refuse unknown members (``roles``, ``is_admin``, ...)."""

    model_config = ConfigDict(extra="forbid", str_max_length=4096)


class RegisterIn(Strict):
    email: str = Field(max_length=320)
    password: str = Field(max_length=4096)
    name: str | None = Field(default=None, max_length=200)


class LoginIn(Strict):
    email: str = Field(max_length=320)
    password: str = Field(max_length=4096)


class RefreshIn(Strict):
    refresh_token: str = Field(max_length=256)


class PasswordIn(Strict):
    current_password: str = Field(max_length=4096)
    new_password: str = Field(max_length=4096)


class EmailIn(Strict):
    email: str = Field(max_length=320)


class LinkTokenIn(Strict):
    token: str = Field(max_length=256)


class ResetIn(Strict):
    token: str = Field(max_length=256)
    new_password: str = Field(max_length=4096)


class EmailChangeIn(Strict):
    new_email: str = Field(max_length=320)
    current_password: str = Field(max_length=4096)


class MfaOut(BaseModel):
    totp: bool
    passkeys: int
    recovery_codes_left: int


class TotpEnrolIn(Strict):
    """Only to replace an active TOTP: the password and a current code."""

    password: str | None = Field(default=None, max_length=4096)
    code: str | None = Field(default=None, max_length=16)


class TotpEnrolOut(BaseModel):
    secret: str
    otpauth_uri: str
    qr_svg: str


class CodeIn(Strict):
    code: str = Field(max_length=16)


class ReauthIn(Strict):
    password: str = Field(max_length=4096)
    code: str = Field(max_length=16)


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str]


class MfaLoginIn(Strict):
    mfa_token: str = Field(max_length=4096)
    code: str | None = Field(default=None, max_length=16)
    recovery_code: str | None = Field(default=None, max_length=64)
    webauthn: dict[str, Any] | None = Field(
        default=None,
        description="A passkey assertion (PublicKeyCredential.toJSON() of "
        "navigator.credentials.get()) answering POST /auth/passkeys/login/options "
        "with this mfa_token",
    )


_CREDENTIAL = Field(
    description="PublicKeyCredential.toJSON() of the browser's WebAuthn call: "
    "{id, rawId, type, response: {clientDataJSON, ...}} in base64url",
)


class PasskeyOut(BaseModel):
    id: str
    name: str
    created_at: float
    last_used_at: float | None
    transports: list[str]
    aaguid: str | None
    backed_up: bool = Field(description="the credential is synced (backed up) now")


class PasskeyRegisterIn(Strict):
    credential: dict[str, Any] = _CREDENTIAL
    name: str | None = Field(default=None, max_length=64)


class PasskeyRegisteredOut(BaseModel):
    passkey: PasskeyOut
    recovery_codes: list[str] | None = Field(
        default=None,
        description="ten recovery codes, shown once, when this is the first second factor",
    )


class PasskeyLoginOptionsIn(Strict):
    """With an mfa_token: a challenge for the second step of that login; without: a
    passwordless login with a discoverable passkey."""

    mfa_token: str | None = Field(default=None, max_length=4096)


class PasskeyLoginIn(Strict):
    credential: dict[str, Any] = _CREDENTIAL


class PasskeyRenameIn(Strict):
    name: str = Field(min_length=1, max_length=64)


class PasswordOnlyIn(Strict):
    password: str = Field(max_length=4096)


class MfaRequiredOut(BaseModel):
    mfa_required: Literal[True]
    mfa_token: str
    methods: list[str]
    expires_in: int


class AcceptedOut(BaseModel):
    """The one answer of a request whose outcome arrives by mail."""

    status: Literal["accepted"]
    detail: str


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    scope: str


class CookieTokenOut(BaseModel):
    """The token response of the cookie mode (``Authgate-Token-Delivery: cookie``): the
    refresh token is in an HttpOnly cookie, never here; ``access_token`` is absent when
    AUTHGATE_ACCESS_COOKIE puts it in a cookie too; ``csrf_token`` goes back in
    ``X-CSRF-Token`` on the next refresh or logout."""

    access_token: str | None = None
    token_type: Literal["Bearer"]
    expires_in: int
    refresh_expires_in: int
    scope: str
    csrf_token: str


class UserOut(BaseModel):
    id: str
    email: str
    name: str | None
    roles: list[str]
    permissions: list[str]
    created_at: float
    email_verified: bool
    mfa: MfaOut


class AdminUserOut(UserOut):
    disabled: bool


class RegisterOut(TokenOut):
    user: UserOut


class SessionOut(BaseModel):
    sid: str
    created_at: float
    last_used_at: float
    ip: str | None
    user_agent: str | None
    current: bool


class ConsentOut(BaseModel):
    client_id: str
    client_name: str
    scope: list[str]
    granted_at: float


class AdminSessionOut(BaseModel):
    sid: str
    user_id: str
    client_id: str
    created_at: float
    last_used_at: float
    expires_at: float
    ip: str | None
    user_agent: str | None


class RevocationEventOut(BaseModel):
    id: int
    kind: Literal["jti", "sid", "user"]
    value: str
    not_before: float | None = None
    ver: int | None = None
    expires_at: float


class RevocationFeedOut(BaseModel):
    cursor: int
    events: list[RevocationEventOut]


class AdminUserCreate(Strict):
    email: str = Field(max_length=320)
    password: str = Field(max_length=4096)
    name: str | None = Field(default=None, max_length=200)
    roles: list[str] = Field(default_factory=list, max_length=64)


class AdminUserPatch(Strict):
    roles: list[str] | None = Field(default=None, max_length=64)
    disabled: bool | None = None
    email_verified: Literal[True] | None = None  # mark the address verified


class UserPage(BaseModel):
    users: list[AdminUserOut]
    next: str | None


class RoleIn(Strict):
    name: str = Field(max_length=64)
    permissions: list[str] = Field(default_factory=list, max_length=256)


class RolePatch(Strict):
    permissions: list[str] = Field(max_length=256)


class RoleOut(BaseModel):
    name: str
    permissions: list[str]
    created_at: float


class ClientIn(Strict):
    """A client. With ``redirect_uris`` it is an OpenID Connect client (authorization
    code with PKCE S256; scopes within ``openid profile email``); ``public`` means no
    secret (a native or browser app); ``first_party`` skips the consent page."""

    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(default_factory=list, max_length=256)
    jwk: dict[str, object] | None = None
    access_ttl: float | None = Field(default=None, gt=0, le=86400)
    redirect_uris: list[str] = Field(default_factory=list, max_length=10)
    post_logout_redirect_uris: list[str] = Field(default_factory=list, max_length=10)
    public: bool = False
    first_party: bool = False
    # OpenID Connect Dynamic Client Registration's name for the ID tokens' algorithm.
    id_token_signed_response_alg: str | None = Field(default=None, max_length=10)


class ClientOut(BaseModel):
    client_id: str
    name: str
    scopes: list[str]
    auth_method: Literal["client_secret_basic", "private_key_jwt", "none"]
    access_ttl: float | None
    created_at: float
    revoked_at: float | None
    redirect_uris: list[str] = Field(default_factory=list)
    post_logout_redirect_uris: list[str] = Field(default_factory=list)
    public: bool = False
    first_party: bool = False
    id_token_signed_response_alg: str | None = None


class ClientCreated(ClientOut):
    client_secret: str | None


class KeyOut(BaseModel):
    kid: str
    alg: str
    state: Literal["next", "current", "retiring", "retired"]
    created_at: float
    activated_at: float | None
    retired_at: float | None
    expires_at: float | None


class AuditOut(BaseModel):
    id: int
    at: float
    event: str
    user_id: str | None
    sid: str | None
    ip: str | None
    detail: dict[str, object]


class Problem(BaseModel):
    """RFC 9457 problem details, with a stable ``code``."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    code: str


class OAuthError(BaseModel):
    """RFC 6749 section 5.2 error body."""

    model_config = ConfigDict(extra="allow")

    error: str


_TITLES = {
    400: "Invalid request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Body too large",
    422: "Validation error",
    429: "Too many attempts",
    503: "Unavailable",
}


def _error_responses(
    statuses: tuple[int, ...], *, media_type: str, schema: str
) -> dict[int | str, dict[str, Any]]:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {
        status: {
            "description": _TITLES.get(status, "Error"),
            "content": {media_type: {"schema": ref}},
        }
        for status in statuses
    }


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for these statuses, as application/problem+json Problems."""
    return _error_responses(statuses, media_type="application/problem+json", schema="Problem")


def oauth_error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for these statuses, as RFC 6749 error bodies."""
    return _error_responses(statuses, media_type="application/json", schema="OAuthError")


# What any /auth or /admin route may answer besides its own errors.
COMMON_ERRORS = problem_responses(400, 401, 413, 422, 429, 503)
