"""/.well-known: the JWKS, the RFC 8414 metadata and the OpenID Provider metadata."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from authgate.server.deps import Svc
from authgate.server.routing import PrefixRouter
from authgate.service.clients import ASSERTION_ALGORITHMS, BUILTIN_SCOPES, OIDC_SCOPES

router = PrefixRouter(prefix="/.well-known", tags=["well-known"])
JWKS_MAX_AGE = 300
# authgate's own permissions (authgate:admin, ...) are internal: only those a client is
# meant to request (BUILTIN_SCOPES) are advertised. A new one stays unlisted until added there.
RESERVED_PREFIX = "authgate:"


def advertised_scopes(defined: frozenset[str]) -> list[str]:
    """The scopes RFC 8414 metadata lists: the defined permissions, less authgate's own
    internal ones."""
    return sorted(p for p in defined if not p.startswith(RESERVED_PREFIX) or p in BUILTIN_SCOPES)


class JWKSResponse(JSONResponse):
    """A JWK Set (RFC 7517 section 8.5)."""

    media_type = "application/jwk-set+json"


@router.get("/jwks.json", response_class=JWKSResponse)
async def jwks(svc: Svc) -> JSONResponse:
    """Every published public key (next, current and retiring)."""
    return JWKSResponse(
        svc.keyring.view.jwks(), headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"}
    )


@router.get("/oauth-authorization-server")
async def metadata(svc: Svc) -> JSONResponse:
    """RFC 8414 authorization server metadata."""
    issuer = svc.settings.issuer
    auth_methods = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
    assertion_algs = sorted(ASSERTION_ALGORITHMS)
    doc: dict[str, Any] = {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "token_endpoint": f"{issuer}/oauth2/token",
        "revocation_endpoint": f"{issuer}/oauth2/revoke",
        "introspection_endpoint": f"{issuer}/oauth2/introspect",
        "authorization_endpoint": f"{issuer}/authorize",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "end_session_endpoint": f"{issuer}/logout",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": [*auth_methods, "none"],
        "token_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "revocation_endpoint_auth_methods_supported": [*auth_methods, "none"],
        "revocation_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_signing_alg_values_supported": assertion_algs,
        "scopes_supported": sorted(
            {*advertised_scopes(await svc.clients.defined_permissions()), *OIDC_SCOPES}
        ),
        "authgate_revocation_feed_endpoint": f"{issuer}/auth/revocations",
        "authgate_access_token_signing_alg_values_supported": sorted(svc.keyring.view.algorithms),
    }
    if svc.settings.docs_enabled:
        doc["service_documentation"] = f"{issuer}/docs"
    return JSONResponse(doc, headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"})


@router.get("/openid-configuration")
async def openid_configuration(svc: Svc) -> JSONResponse:
    """OpenID Connect Discovery 1.0: every endpoint and what it supports."""
    doc = svc.oidc.metadata()
    doc["token_endpoint_auth_signing_alg_values_supported"] = sorted(ASSERTION_ALGORITHMS)
    return JSONResponse(doc, headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE}"})
