"""RFC 8414 metadata: every endpoint (each one answers), the grant types, the client auth
methods and the signing algorithms; validated by Authlib's own RFC 8414 model."""

from __future__ import annotations

from typing import Any

import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from _support.http import basic

from .conftest import PERMISSIONS
from .harness import LiveServer

METADATA = "/.well-known/oauth-authorization-server"
AUTH_METHODS = {"client_secret_basic", "client_secret_post", "private_key_jwt"}


@pytest.fixture(scope="module")
def doc(live: LiveServer) -> dict[str, Any]:
    r = live.http.get(METADATA)
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == "application/json"
    body: dict[str, Any] = r.json()
    return body


def test_authlib_validates_the_document(doc: dict[str, Any]) -> None:
    AuthorizationServerMetadata(doc).validate()


def test_endpoints(
    live: LiveServer,
    doc: dict[str, Any],
    secret_client: dict[str, Any],
    introspector: dict[str, Any],
) -> None:
    assert doc["issuer"] == live.url
    assert doc["jwks_uri"] == f"{live.url}/.well-known/jwks.json"
    assert doc["token_endpoint"] == f"{live.url}/oauth2/token"
    assert doc["revocation_endpoint"] == f"{live.url}/oauth2/revoke"
    assert doc["introspection_endpoint"] == f"{live.url}/oauth2/introspect"
    # Each endpoint is really there.
    assert live.http.get(doc["jwks_uri"]).json()["keys"]
    auth = basic(secret_client["client_id"], secret_client["client_secret"])
    cc = live.http.post(
        doc["token_endpoint"], data={"grant_type": "client_credentials"}, headers=auth
    )
    assert cc.status_code == 200
    access = cc.json()["access_token"]
    introspector_auth = basic(introspector["client_id"], introspector["client_secret"])
    intro = live.http.post(
        doc["introspection_endpoint"], data={"token": access}, headers=introspector_auth
    )
    assert intro.json()["active"] is True
    rev = live.http.post(doc["revocation_endpoint"], data={"token": access}, headers=auth)
    assert rev.status_code == 200


def test_grant_types_and_auth_methods(doc: dict[str, Any]) -> None:
    assert set(doc["grant_types_supported"]) == {
        "authorization_code",
        "client_credentials",
        "refresh_token",
    }
    assert set(doc["token_endpoint_auth_methods_supported"]) >= AUTH_METHODS
    assert set(doc["revocation_endpoint_auth_methods_supported"]) >= AUTH_METHODS
    assert set(doc["introspection_endpoint_auth_methods_supported"]) == AUTH_METHODS
    for name in (
        "token_endpoint_auth_signing_alg_values_supported",
        "revocation_endpoint_auth_signing_alg_values_supported",
        "introspection_endpoint_auth_signing_alg_values_supported",
    ):
        algs = set(doc[name])
        assert {"RS256", "ES256", "PS256", "EdDSA"} <= algs, name
        assert "none" not in algs, name
        assert not any(a.startswith("HS") for a in algs), name


def test_signing_algorithms_of_the_published_keys(live: LiveServer, doc: dict[str, Any]) -> None:
    jwks = live.http.get(doc["jwks_uri"]).json()
    published = {k["alg"] for k in jwks["keys"]}
    # The default AUTHGATE_SIGNING_ALG, and the ID tokens' default AUTHGATE_ID_TOKEN_ALGS.
    assert published == {"ES256", "RS256"}
    assert doc["authgate_access_token_signing_alg_values_supported"] == ["ES256"]


def test_scopes_are_the_defined_permissions(doc: dict[str, Any]) -> None:
    assert {*PERMISSIONS, "authgate:revocations"} <= set(doc["scopes_supported"])
    assert "authgate:admin" not in doc["scopes_supported"]  # internal: never advertised
