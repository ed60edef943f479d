"""OpenID Connect clients: strict redirect URIs, public clients, scopes, and the old
client_credentials clients unchanged."""

from __future__ import annotations

import pytest

from authgate.errors import InvalidClient, InvalidRequest, InvalidScope, UnauthorizedClient
from authgate.service.clients import check_redirect_uri

from .conftest import REDIRECT, World

pytestmark = pytest.mark.anyio

GOOD = [
    "https://app.example.com/cb",
    "https://app.example.com:8443/cb?x=1",
    "http://127.0.0.1:8123/cb",
    "http://[::1]:8123/cb",
    "http://localhost/cb",
]
BAD_ALWAYS = [
    "",
    "/cb",
    "app.example.com/cb",
    "https://app.example.com/cb#frag",
    "https://*.example.com/cb",
    "https://app.example.com/*",
    "http://app.example.com/cb",
    "https://user:pw@app.example.com/cb",
    "https://app.example.com/c b",
    "https:///cb",
    "HTTPS://app.example.com/cb",
    "javascript:alert(1)",
    "https://app.example.com:99999/cb",
]
NATIVE = "com.example.app:/oauth2redirect"


@pytest.mark.parametrize("uri", GOOD)
def test_good_redirect_uris(uri: str) -> None:
    assert check_redirect_uri(uri, public=False) == uri


@pytest.mark.parametrize("uri", BAD_ALWAYS)
def test_bad_redirect_uris(uri: str) -> None:
    for public in (False, True):
        with pytest.raises(InvalidRequest):
            check_redirect_uri(uri, public=public)


def test_private_use_scheme_for_public_clients_only() -> None:
    assert check_redirect_uri(NATIVE, public=True) == NATIVE
    with pytest.raises(InvalidRequest):
        check_redirect_uri(NATIVE, public=False)
    for bad in ("myapp:/cb", "data:text/html,x", "com.example.app://host/cb"):
        with pytest.raises(InvalidRequest):
            check_redirect_uri(bad, public=True)


async def test_public_client_has_no_secret(world: World) -> None:
    client, secret = await world.client(public=True)
    assert secret is None
    assert client.public
    assert client.secret_hash is None
    assert await world.services.clients.public_client(client.client_id) == client
    confidential, secret = await world.client()
    assert secret
    with pytest.raises(InvalidClient):
        await world.services.clients.public_client(confidential.client_id)


async def test_oidc_scopes(world: World) -> None:
    clients = world.services.clients
    for scopes in (["profile"], ["openid", "authgate:introspect"], ["openid", "offline_access"]):
        with pytest.raises(InvalidScope):
            await clients.create("x", scopes, redirect_uris=[REDIRECT])
    record, _ = await clients.create("x", [], redirect_uris=[REDIRECT])
    assert record.scopes == ("email", "openid", "profile")
    with pytest.raises(UnauthorizedClient):
        clients.grant(record, None)


async def test_oidc_options_need_redirect_uris(world: World) -> None:
    clients = world.services.clients
    with pytest.raises(InvalidRequest):
        await clients.create("x", [], public=True)
    with pytest.raises(InvalidRequest):
        await clients.create("x", [], redirect_uris=[REDIRECT], id_token_alg="HS256")
    with pytest.raises(InvalidRequest):
        await clients.create("x", [], redirect_uris=[REDIRECT], public=True, jwk={"kty": "EC"})


async def test_stored_and_listed(world: World) -> None:
    client, _ = await world.client(first_party=True)
    stored = await world.services.clients.get(client.client_id)
    assert stored == client
    assert stored.redirect_uris == (REDIRECT, "http://127.0.0.1:8123/cb")
    assert stored.first_party
    assert not stored.public
    # A client_credentials client is as before.
    plain, secret = await world.services.clients.create("svc", ["authgate:introspect"])
    assert secret
    assert plain.redirect_uris == ()
    assert not plain.public
