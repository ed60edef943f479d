"""/oauth2: the token (RFC 6749), revocation (RFC 7009) and introspection (RFC 7662) endpoints.

Client authentication: client_secret_basic, client_secret_post and private_key_jwt
(RFC 7523). The first-party public client ``authgate`` and the public OpenID Connect
clients may use the refresh_token grant (and a public client the authorization_code grant)
and revoke their own tokens with their client_id only. Errors use the RFC 6749 section 5.2 body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import FormData

from authgate.errors import (
    AuthgateError,
    InvalidClient,
    InvalidRequest,
    UnsupportedGrantType,
)
from authgate.server.deps import NO_STORE, basic_credentials, client_ip, metrics, services
from authgate.server.problems import error_response
from authgate.server.routing import PrefixRouter
from authgate.server.schemas import oauth_error_responses, problem_responses
from authgate.service.clients import ASSERTION_TYPE
from authgate.service.sessions import FIRST_PARTY_CLIENT
from authgate.storage.base import ClientRecord
from authgate.wiring import Services

router = PrefixRouter(prefix="/oauth2", tags=["oauth2"])
_FORM = "application/x-www-form-urlencoded"
_MAX_PARAM = 8192


def _form_body(fields: dict[str, dict[str, Any]], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": fields, "required": required}
    return {"requestBody": {"required": True, "content": {_FORM: {"schema": schema}}}}


_CLIENT_FIELDS: dict[str, dict[str, Any]] = {
    "client_id": {"type": "string", "maxLength": 64},
    "client_secret": {"type": "string", "maxLength": 256},
    "client_assertion_type": {"type": "string", "enum": [ASSERTION_TYPE]},
    "client_assertion": {"type": "string", "maxLength": _MAX_PARAM},
}
_OAUTH_ERRORS = oauth_error_responses(400, 401, 429, 503) | problem_responses(413)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who called: an authenticated client, or the first-party public client."""

    client_id: str
    record: ClientRecord | None
    basic: bool


async def _form(request: Request) -> FormData:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != _FORM:
        raise InvalidRequest("the body must be application/x-www-form-urlencoded")
    try:
        form = await request.form(max_files=0, max_fields=32)
    except Exception as exc:  # malformed form bodies of any kind
        raise InvalidRequest("the form body is malformed") from exc
    for key in form:
        values = form.getlist(key)
        if len(values) != 1:
            raise InvalidRequest(f"parameter {key!r} is repeated")
        if not isinstance(values[0], str) or len(values[0]) > _MAX_PARAM:
            raise InvalidRequest(f"parameter {key!r} is invalid")
    return form


def _param(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) and value != "" else None


def _required(form: FormData, name: str) -> str:
    value = _param(form, name)
    if value is None:
        raise InvalidRequest(f"{name} is required")
    return value


def _token_body(hint: dict[str, Any]) -> dict[str, Any]:
    """The form of /revoke and /introspect: ``token``, its type hint, client authentication."""
    return _form_body(
        {
            "token": {"type": "string", "maxLength": _MAX_PARAM},
            "token_type_hint": hint,
            **_CLIENT_FIELDS,
        },
        ["token"],
    )


async def authenticate_client(
    request: Request, form: FormData, svc: Services, *, allow_public: bool
) -> Caller:
    """Exactly one client authentication method, or the public first-party client."""
    basic = basic_credentials(request)
    post_id, post_secret = _param(form, "client_id"), _param(form, "client_secret")
    assertion_type, assertion = (
        _param(form, "client_assertion_type"),
        _param(form, "client_assertion"),
    )
    methods = sum(x is not None for x in (basic, post_secret, assertion))
    if methods > 1:
        raise InvalidRequest("use exactly one client authentication method")
    ip = client_ip(request)
    try:
        if basic is not None:
            if post_id is not None and post_id != basic[0]:
                raise InvalidRequest("client_id differs from the Basic credentials")
            record = await svc.clients.authenticate_secret(*basic, ip=ip)
            return Caller(record.client_id, record, basic=True)
        if post_secret is not None:
            if post_id is None:
                raise InvalidClient("client_secret without client_id")
            record = await svc.clients.authenticate_secret(post_id, post_secret, ip=ip)
            return Caller(record.client_id, record, basic=False)
        if assertion is not None or assertion_type is not None:
            if assertion_type != ASSERTION_TYPE or assertion is None:
                raise InvalidClient("unsupported client_assertion_type")
            record = await svc.clients.authenticate_assertion(post_id, assertion, ip=ip)
            return Caller(record.client_id, record, basic=False)
    except InvalidClient as exc:
        exc.context["basic"] = basic is not None
        raise
    if allow_public and post_id == FIRST_PARTY_CLIENT:
        return Caller(FIRST_PARTY_CLIENT, None, basic=False)
    if allow_public and post_id is not None:
        # A public OpenID Connect client (token_endpoint_auth_method none): client_id only.
        record = await svc.clients.public_client(post_id)
        return Caller(record.client_id, record, basic=False)
    raise InvalidClient("client authentication is required")


@router.post(
    "/token",
    openapi_extra=_form_body(
        {
            "grant_type": {
                "type": "string",
                "enum": ["authorization_code", "client_credentials", "refresh_token"],
            },
            "scope": {"type": "string", "maxLength": 1024},
            "refresh_token": {"type": "string", "maxLength": 256},
            "code": {"type": "string", "maxLength": 256},
            "redirect_uri": {"type": "string", "maxLength": 2000},
            "code_verifier": {"type": "string", "maxLength": 128},
            **_CLIENT_FIELDS,
        },
        ["grant_type"],
    ),
    responses=_OAUTH_ERRORS,
)
async def token(request: Request) -> Response:
    """RFC 6749 token endpoint: authorization_code (OpenID Connect, PKCE S256; a public
    client sends its client_id only), client_credentials and refresh_token."""
    svc = services(request)
    try:
        form = await _form(request)
        grant_type = _required(form, "grant_type")
        scope = _param(form, "scope")
        if grant_type == "client_credentials":
            caller = await authenticate_client(request, form, svc, allow_public=False)
            assert caller.record is not None
            grant = svc.clients.grant(caller.record, scope)
            metrics(request).grants.labels("client_credentials").inc()
            return JSONResponse(grant.response(), headers=NO_STORE)
        if grant_type == "authorization_code":
            caller = await authenticate_client(request, form, svc, allow_public=True)
            if caller.record is None:
                raise InvalidClient("the first-party client has no authorization code grant")
            body = await svc.oidc.exchange_code(
                caller.record,
                code=_param(form, "code"),
                redirect_uri=_param(form, "redirect_uri"),
                code_verifier=_param(form, "code_verifier"),
                ip=client_ip(request),
            )
            metrics(request).grants.labels("authorization_code").inc()
            return JSONResponse(body, headers=NO_STORE)
        if grant_type == "refresh_token":
            caller = await authenticate_client(request, form, svc, allow_public=True)
            refresh = _required(form, "refresh_token")
            pair = await svc.sessions.refresh(
                refresh, ip=client_ip(request), client_id=caller.client_id, scope=scope
            )
            metrics(request).grants.labels("refresh_token").inc()
            return JSONResponse(pair.response(), headers=NO_STORE)
        raise UnsupportedGrantType(f"grant_type {grant_type!r} is not supported")
    except AuthgateError as exc:
        return error_response(request, exc)


@router.post(
    "/revoke",
    openapi_extra=_token_body({"type": "string", "enum": ["access_token", "refresh_token"]}),
    response_class=Response,
    responses=_OAUTH_ERRORS | {200: {"description": "Revoked, or unknown", "content": {}}},
)
async def revoke(request: Request) -> Response:
    """RFC 7009: revoke a refresh token (its whole family) or an access token (by jti).
    An unknown token, or one issued to another client, answers 200 and changes nothing."""
    svc = services(request)
    try:
        form = await _form(request)
        caller = await authenticate_client(request, form, svc, allow_public=True)
        value = _required(form, "token")
        # RFC 7009 2.1: the hint is only a hint; both kinds are tried, refresh first.
        await svc.introspection.revoke(value, client_id=caller.client_id)
    except AuthgateError as exc:
        return error_response(request, exc)
    return Response(status_code=200, headers=NO_STORE)


@router.post(
    "/introspect",
    openapi_extra=_token_body({"type": "string"}),
    responses=_OAUTH_ERRORS,
)
async def introspect(request: Request) -> Response:
    """RFC 7662: needs an authenticated client with the ``authgate:introspect`` scope (403
    ``insufficient_scope`` otherwise); ``{"active": false}`` for anything not live."""
    svc = services(request)
    try:
        form = await _form(request)
        caller = await authenticate_client(request, form, svc, allow_public=False)
        value = _required(form, "token")
        if caller.record is None:  # allow_public=False: never the public client
            raise InvalidClient("introspection needs client authentication")
        body = await svc.introspection.introspect(value, caller=caller.record)
    except AuthgateError as exc:
        return error_response(request, exc)
    return JSONResponse(body, headers=NO_STORE)
