"""The one exception tree of authgate.

Every error raised by authgate is an :class:`AuthgateError`. Each class has a
stable ``code`` (a short snake_case string that clients and logs can match on)
and carries context as keyword attributes. The HTTP status of each error is
decided in exactly one place, ``authgate.server.problems``.

Tree::

    AuthgateError
    ├── ConfigurationError          invalid_configuration
    ├── AuthenticationRequired      authentication_required
    ├── InvalidCredentials          invalid_credentials
    │   ├── InvalidMfaCode          invalid_mfa_code
    │   └── PasskeyRefused          passkey_refused
    │       └── PasskeyCloned       passkey_cloned
    ├── InvalidMfaToken             invalid_mfa_token
    ├── InsufficientUserAuthentication  insufficient_user_authentication
    ├── MfaConflict                 mfa_already_enabled
    ├── PasskeyExists               passkey_exists
    ├── InvalidClient               invalid_client
    ├── UnauthorizedClient          unauthorized_client
    ├── AuthorizeError              authorize_invalid_request
    │   ├── UnknownAuthorizeClient  authorize_unknown_client
    │   ├── InvalidRedirectUri      invalid_redirect_uri
    │   ├── UnsupportedResponseType unsupported_response_type
    │   ├── AuthorizeInvalidScope   authorize_invalid_scope
    │   ├── RequestNotSupported     request_not_supported
    │   ├── RequestUriNotSupported  request_uri_not_supported
    │   ├── LoginRequired           login_required
    │   ├── ConsentRequired         consent_required
    │   └── AccessDenied            access_denied
    ├── UnsupportedGrantType        unsupported_grant_type
    ├── InvalidGrant                invalid_grant
    ├── InvalidRequest              invalid_request
    │   ├── InvalidScope            invalid_scope
    │   ├── WeakPassword            weak_password
    │   │   └── PredictablePassword password_too_predictable
    │   ├── InvalidJSON             invalid_json
    │   ├── PasskeyRegistrationRefused  passkey_registration_refused
    │   ├── InvalidHost             invalid_host
    │   └── CookieModeOff           cookie_mode_off
    ├── EmailTaken                  email_taken
    ├── RegistrationClosed          registration_closed
    ├── NotFound                    not_found
    │   └── MfaNotEnabled           mfa_not_enabled
    ├── Forbidden                   forbidden
    │   ├── InsufficientScope       insufficient_scope
    │   ├── EmailNotVerified        email_not_verified
    │   └── CsrfFailed              csrf_failed
    ├── LinkTokenRefused            invalid_link_token
    │   ├── LinkTokenUsed           link_token_used
    │   ├── LinkTokenSuperseded     link_token_superseded
    │   ├── LinkTokenRevoked        link_token_revoked
    │   ├── LinkTokenExpired        link_token_expired
    │   └── LinkTokenWrongPurpose   link_token_wrong_purpose
    ├── Throttled                   too_many_attempts
    ├── Overloaded                  overloaded
    ├── BodyTooLarge                body_too_large
    ├── RequestTimeout              request_timeout
    ├── StorageError                storage_error
    │   ├── Conflict                conflict
    │   └── StorageUnavailable      storage_unavailable
    ├── MailError                   mail_failed
    ├── InvalidKey                  invalid_key
    │   └── UnsupportedAlgorithm    unsupported_algorithm
    └── InvalidToken                invalid_token
        ├── MalformedToken          malformed_token
        │   └── TokenTooLarge       token_too_large
        ├── InvalidHeader           invalid_header
        ├── AlgorithmNotAllowed     algorithm_not_allowed
        ├── UnknownKey              unknown_key
        ├── InvalidSignature        invalid_signature
        ├── TokenRevoked            token_revoked
        └── InvalidClaims           invalid_claims
            ├── MissingClaim        missing_claim
            ├── InvalidType         invalid_type
            ├── InvalidIssuer       invalid_issuer
            ├── InvalidAudience     invalid_audience
            ├── TokenExpired        token_expired
            ├── TokenNotYetValid    token_not_yet_valid
            ├── IssuedInFuture      issued_in_future
            └── LifetimeTooLong     lifetime_too_long
"""

from __future__ import annotations

from typing import Any, ClassVar


class AuthgateError(Exception):
    """The root of every error authgate raises.

    ``code`` is stable and safe to show to clients; ``reason`` and ``context``
    are detail for logs, never for clients.
    """

    code: ClassVar[str] = "authgate_error"

    def __init__(self, reason: str = "", **context: Any) -> None:
        super().__init__(reason or self.code)
        self.reason = reason or self.code
        self.context: dict[str, Any] = context

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, reason={self.reason!r})"


class ConfigurationError(AuthgateError):
    """A setting is missing, malformed or too weak."""

    code = "invalid_configuration"


class InvalidKey(AuthgateError):
    """A key cannot be loaded, is too weak, or is used with the wrong algorithm."""

    code = "invalid_key"


class UnsupportedAlgorithm(InvalidKey):
    """The algorithm name is not one authgate implements."""

    code = "unsupported_algorithm"


class StorageError(AuthgateError):
    """A storage backend failed."""

    code = "storage_error"


class Conflict(StorageError):
    """A uniqueness rule was broken (an email or kid that exists)."""

    code = "conflict"


class StorageUnavailable(StorageError):
    """The database or cache cannot be reached; the caller may retry later."""

    code = "storage_unavailable"


class MailError(AuthgateError):
    """A mail could not be rendered or handed to the mail server or webhook."""

    code = "mail_failed"


class AuthenticationRequired(AuthgateError):
    """No credentials were presented where they are needed."""

    code = "authentication_required"


class InvalidCredentials(AuthgateError):
    """Wrong email or password; the same answer for an unknown user."""

    code = "invalid_credentials"


class InvalidMfaCode(InvalidCredentials):
    """A second factor (a TOTP code, a recovery code) is wrong, or was used already.
    It counts against the second-factor throttle."""

    code = "invalid_mfa_code"


class PasskeyRefused(InvalidCredentials):
    """A passkey assertion is refused: an unknown or used challenge, an unknown credential,
    a wrong origin, RP ID or signature. As a second factor it counts against the
    second-factor throttle."""

    code = "passkey_refused"


class PasskeyCloned(PasskeyRefused):
    """A passkey's signature counter did not increase: the authenticator may be cloned.
    Refused and audited."""

    code = "passkey_cloned"


class InvalidMfaToken(AuthgateError):
    """The ``mfa_token`` of a two-step login is unknown, forged, expired or used."""

    code = "invalid_mfa_token"


class InsufficientUserAuthentication(AuthgateError):
    """The token's login does not meet the demand (a second factor, a recent login):
    RFC 9470. ``context`` may carry ``max_age`` and ``acr_values``."""

    code = "insufficient_user_authentication"


class MfaConflict(AuthgateError):
    """A second factor is on already: turning it on again needs the password and a code."""

    code = "mfa_already_enabled"


class PasskeyExists(AuthgateError):
    """The credential of a passkey registration is registered already."""

    code = "passkey_exists"


class InvalidClient(AuthgateError):
    """Client authentication failed (unknown client, wrong secret, bad assertion)."""

    code = "invalid_client"


class UnauthorizedClient(AuthgateError):
    """The client is not allowed this grant (a client of the code flow asking for
    client_credentials, or the reverse)."""

    code = "unauthorized_client"


class AuthorizeError(AuthgateError):
    """An OpenID Connect authorization request is refused; ``error`` is the OAuth error
    code the client sees. ``redirect`` says whether the error may go back to the client:
    never for an unknown client or a redirect URI that is not registered (RFC 6749
    4.1.2.1). When it may, ``redirect_uri`` and ``state`` are in ``context``."""

    code = "authorize_invalid_request"
    error: ClassVar[str] = "invalid_request"
    redirect: ClassVar[bool] = True
    description: ClassVar[str] = "The authorization request is invalid."

    @property
    def redirectable(self) -> bool:
        """True if the error may be sent to the client's redirect URI."""
        return self.redirect and self.context.get("redirect_uri") is not None


class UnknownAuthorizeClient(AuthorizeError):
    """The client is unknown or revoked: an error page, never a redirect."""

    code = "authorize_unknown_client"
    error = "invalid_client"
    redirect = False
    description = "The client is unknown."


class InvalidRedirectUri(AuthorizeError):
    """The redirect URI is missing or not registered: an error page, never a redirect."""

    code = "invalid_redirect_uri"
    error = "invalid_redirect_uri"
    redirect = False
    description = "The redirect URI is not registered for this client."


class UnsupportedResponseType(AuthorizeError):
    """Only ``response_type=code`` is supported."""

    code = "unsupported_response_type"
    error = "unsupported_response_type"
    description = "Only the authorization code flow is supported."


class AuthorizeInvalidScope(AuthorizeError):
    """The scope lacks ``openid`` or goes beyond the client's."""

    code = "authorize_invalid_scope"
    error = "invalid_scope"
    description = "The requested scope is invalid or not allowed."


class RequestNotSupported(AuthorizeError):
    """Request objects are not supported."""

    code = "request_not_supported"
    error = "request_not_supported"
    description = "Request objects are not supported."


class RequestUriNotSupported(AuthorizeError):
    """``request_uri`` is not supported."""

    code = "request_uri_not_supported"
    error = "request_uri_not_supported"
    description = "request_uri is not supported."


class LoginRequired(AuthorizeError):
    """``prompt=none`` and the user must log in."""

    code = "login_required"
    error = "login_required"
    description = "The user must log in."


class ConsentRequired(AuthorizeError):
    """``prompt=none`` and the user must consent."""

    code = "consent_required"
    error = "consent_required"
    description = "The user must consent."


class AccessDenied(AuthorizeError):
    """The user refused consent."""

    code = "access_denied"
    error = "access_denied"
    description = "The user denied the request."


class UnsupportedGrantType(AuthgateError):
    """The grant type is not one the token endpoint supports."""

    code = "unsupported_grant_type"


class InvalidGrant(AuthgateError):
    """A refresh token (or other grant) is unknown, expired, revoked or reused."""

    code = "invalid_grant"


class InvalidRequest(AuthgateError):
    """The request is well-formed but not acceptable."""

    code = "invalid_request"


class InvalidScope(InvalidRequest):
    """A requested scope is beyond what is allowed."""

    code = "invalid_scope"


class WeakPassword(InvalidRequest):
    """A new password is too short, too long or too common."""

    code = "weak_password"


class PredictablePassword(WeakPassword):
    """A new password is repetitive or sequential (``aaaaaaaa``, ``12345678``)."""

    code = "password_too_predictable"


class InvalidJSON(InvalidRequest):
    """A request body is not one strict JSON object (malformed, too deep, duplicate members)."""

    code = "invalid_json"


class PasskeyRegistrationRefused(InvalidRequest):
    """A passkey registration response is refused: an unknown or used challenge, a wrong
    origin or RP ID, or a malformed attestation."""

    code = "passkey_registration_refused"


class InvalidHost(InvalidRequest):
    """The request's Host is not one of AUTHGATE_ALLOWED_HOSTS."""

    code = "invalid_host"


class CookieModeOff(InvalidRequest):
    """A request asked for cookie delivery of its tokens, and AUTHGATE_COOKIE_MODE is off."""

    code = "cookie_mode_off"


class EmailTaken(AuthgateError):
    """An account with this (normalised) email exists."""

    code = "email_taken"


class RegistrationClosed(AuthgateError):
    """Self-registration is turned off."""

    code = "registration_closed"


class NotFound(AuthgateError):
    """The thing asked for does not exist (or is not the caller's)."""

    code = "not_found"


class MfaNotEnabled(NotFound):
    """The user has no such second factor."""

    code = "mfa_not_enabled"


class Forbidden(AuthgateError):
    """Authenticated, but not allowed to do this."""

    code = "forbidden"


class InsufficientScope(Forbidden):
    """The token lacks a permission the route needs (RFC 6750 section 3.1)."""

    code = "insufficient_scope"


class EmailNotVerified(Forbidden):
    """The account's email address is not verified, and this needs it."""

    code = "email_not_verified"


class CsrfFailed(Forbidden):
    """A request authenticated by a cookie lacks its CSRF proof (the ``X-CSRF-Token``
    header), carries a wrong one, or comes from an origin that is not allowed."""

    code = "csrf_failed"


class LinkTokenRefused(AuthgateError):
    """A token mailed as a link (verification, reset, email change) is unknown or not a
    token at all. Subclasses say why a known one is refused."""

    code = "invalid_link_token"


class LinkTokenUsed(LinkTokenRefused):
    """The link was used already: each works once."""

    code = "link_token_used"


class LinkTokenSuperseded(LinkTokenRefused):
    """A newer link of the same kind was sent since: only the newest works."""

    code = "link_token_superseded"


class LinkTokenRevoked(LinkTokenRefused):
    """The account changed since the link was sent (its password or its address)."""

    code = "link_token_revoked"


class LinkTokenExpired(LinkTokenRefused):
    """The link is past its lifetime."""

    code = "link_token_expired"


class LinkTokenWrongPurpose(LinkTokenRefused):
    """The link is of another kind (a verification link used to reset, say)."""

    code = "link_token_wrong_purpose"


class Throttled(AuthgateError):
    """Too many attempts; retry after ``context['retry_after']`` seconds."""

    code = "too_many_attempts"


class Overloaded(AuthgateError):
    """The server sheds load; retry after ``context['retry_after']`` seconds."""

    code = "overloaded"


class BodyTooLarge(AuthgateError):
    """The request body is over the size cap; it was not read further."""

    code = "body_too_large"


class RequestTimeout(AuthgateError):
    """The request's body did not arrive within its deadline."""

    code = "request_timeout"


class InvalidToken(AuthgateError):
    """A token was refused. Subclasses say why; all share this root."""

    code = "invalid_token"


class TokenRevoked(InvalidToken):
    """The token is valid but was revoked (by jti, session or user epoch)."""

    code = "token_revoked"


class MalformedToken(InvalidToken):
    """The token breaks an encoding rule: segments, base64url, UTF-8 or JSON."""

    code = "malformed_token"


class TokenTooLarge(MalformedToken):
    """The token is over the size cap; nothing of it was parsed."""

    code = "token_too_large"


class InvalidHeader(InvalidToken):
    """The JOSE header has a forbidden, unknown or ill-typed member."""

    code = "invalid_header"


class AlgorithmNotAllowed(InvalidToken):
    """The header's ``alg`` is not in the allowlist or does not match the key."""

    code = "algorithm_not_allowed"


class UnknownKey(InvalidToken):
    """No published key matches the header's ``kid``."""

    code = "unknown_key"


class InvalidSignature(InvalidToken):
    """The signature does not verify."""

    code = "invalid_signature"


class InvalidClaims(InvalidToken):
    """The payload is well formed and signed, but its claims are refused."""

    code = "invalid_claims"


class MissingClaim(InvalidClaims):
    """A required claim is absent."""

    code = "missing_claim"


class InvalidType(InvalidClaims):
    """The header ``typ`` is not the expected token type (RFC 8725 section 3.11)."""

    code = "invalid_type"


class InvalidIssuer(InvalidClaims):
    """``iss`` does not match."""

    code = "invalid_issuer"


class InvalidAudience(InvalidClaims):
    """``aud`` does not contain the expected audience."""

    code = "invalid_audience"


class TokenExpired(InvalidClaims):
    """``exp`` has passed."""

    code = "token_expired"


class TokenNotYetValid(InvalidClaims):
    """``nbf`` is in the future."""

    code = "token_not_yet_valid"


class IssuedInFuture(InvalidClaims):
    """``iat`` is in the future."""

    code = "issued_in_future"


class LifetimeTooLong(InvalidClaims):
    """``exp - iat`` is over the policy's maximum lifetime."""

    code = "lifetime_too_long"


__all__ = [
    "AccessDenied",
    "AlgorithmNotAllowed",
    "AuthenticationRequired",
    "AuthgateError",
    "AuthorizeError",
    "AuthorizeInvalidScope",
    "BodyTooLarge",
    "ConfigurationError",
    "Conflict",
    "ConsentRequired",
    "CookieModeOff",
    "CsrfFailed",
    "EmailNotVerified",
    "EmailTaken",
    "Forbidden",
    "InsufficientScope",
    "InsufficientUserAuthentication",
    "InvalidAudience",
    "InvalidClaims",
    "InvalidClient",
    "InvalidCredentials",
    "InvalidGrant",
    "InvalidHeader",
    "InvalidHost",
    "InvalidIssuer",
    "InvalidJSON",
    "InvalidKey",
    "InvalidMfaCode",
    "InvalidMfaToken",
    "InvalidRedirectUri",
    "InvalidRequest",
    "InvalidScope",
    "InvalidSignature",
    "InvalidToken",
    "InvalidType",
    "IssuedInFuture",
    "LifetimeTooLong",
    "LinkTokenExpired",
    "LinkTokenRefused",
    "LinkTokenRevoked",
    "LinkTokenSuperseded",
    "LinkTokenUsed",
    "LinkTokenWrongPurpose",
    "LoginRequired",
    "MailError",
    "MalformedToken",
    "MfaConflict",
    "MfaNotEnabled",
    "MissingClaim",
    "NotFound",
    "Overloaded",
    "PasskeyCloned",
    "PasskeyExists",
    "PasskeyRefused",
    "PasskeyRegistrationRefused",
    "PredictablePassword",
    "RegistrationClosed",
    "RequestNotSupported",
    "RequestTimeout",
    "RequestUriNotSupported",
    "StorageError",
    "StorageUnavailable",
    "Throttled",
    "TokenExpired",
    "TokenNotYetValid",
    "TokenRevoked",
    "TokenTooLarge",
    "UnauthorizedClient",
    "UnknownAuthorizeClient",
    "UnknownKey",
    "UnsupportedAlgorithm",
    "UnsupportedGrantType",
    "UnsupportedResponseType",
    "WeakPassword",
]
