"""Request-scoped helpers: the services, the client address, the bearer token."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from typing import Annotated
from urllib.parse import unquote

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBearer

from authgate.bearer import parse_bearer
from authgate.errors import (
    InsufficientScope,
    InvalidClient,
)
from authgate.server.metrics import Metrics
from authgate.service.accounts import ADMIN_PERMISSION
from authgate.service.sessions import AccessContext
from authgate.wiring import Services

# Every response that carries a token or a secret (RFC 6749 section 5.1).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
bearer_scheme = HTTPBearer(auto_error=False, description="An access token from /auth/login")
basic_scheme = HTTPBasic(auto_error=False, description="A service client's id and secret")


def services(request: Request) -> Services:
    """The app's services."""
    svc: Services = request.app.state.services
    return svc


async def _services(request: Request) -> Services:
    # The dependency behind ``Svc``: async, since FastAPI runs a plain ``def`` dependency
    # in its thread pool, a thread hop on every request.
    return services(request)


def metrics(request: Request) -> Metrics:
    """The app's metrics."""
    m: Metrics = request.app.state.metrics
    return m


def client_ip(request: Request) -> str | None:
    """The client's address. X-Forwarded-For is believed only from AUTHGATE_TRUSTED_PROXIES,
    walking it right to left past trusted hops."""
    peer = request.client.host if request.client else None
    trusted = services(request).settings.trusted_proxies
    if peer is None or not trusted:
        return peer

    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in trusted)

    if not is_trusted(peer):
        return peer
    chain = [h.strip() for h in ",".join(request.headers.getlist("x-forwarded-for")).split(",")]
    for hop in reversed([h for h in chain if h]):
        if not is_trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer


def bearer_token(request: Request) -> str:
    """The token of ``Authorization: Bearer``, read by the one strict parser the guard uses
    too (a repeated header is refused); never from the query string or a cookie."""
    return parse_bearer(request.headers.getlist("authorization"))


async def authenticated(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> AccessContext:
    """A verified, unrevoked access token (401 otherwise)."""
    return await _access(request, with_mfa=False)


async def authenticated_with_mfa(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> AccessContext:
    """``authenticated``, with the user's second factors read in the same statement
    (``AccessContext.mfa_summary``)."""
    return await _access(request, with_mfa=True)


async def _access(request: Request, *, with_mfa: bool) -> AccessContext:
    ctx = await services(request).sessions.authenticate(bearer_token(request), with_mfa=with_mfa)
    request.state.access = ctx
    return ctx


async def admin(ctx: Annotated[AccessContext, Depends(authenticated)]) -> AccessContext:
    """An access token with ``authgate:admin`` whose user holds it *now*, as read with the
    token's check (403 otherwise): an admin action never trusts the token's scope alone."""
    if ADMIN_PERMISSION not in ctx.permissions or ADMIN_PERMISSION not in ctx.user_permissions:
        raise InsufficientScope("the admin permission is needed", scope=(ADMIN_PERMISSION,))
    return ctx


def basic_credentials(request: Request) -> tuple[str, str] | None:
    """A client's ``Authorization: Basic`` credentials (RFC 6749 2.3.1: form-encoded id and
    secret), None without the header; InvalidClient for any other scheme or a malformed one."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise InvalidClient("unsupported client authentication scheme", basic=True)
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidClient("malformed Basic credentials", basic=True) from exc
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidClient("malformed Basic credentials", basic=True)
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


Authenticated = Annotated[AccessContext, Depends(authenticated)]
AuthenticatedWithMfa = Annotated[AccessContext, Depends(authenticated_with_mfa)]
Admin = Annotated[AccessContext, Depends(admin)]
Svc = Annotated[Services, Depends(_services)]
