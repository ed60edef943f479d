"""Fixtures of the OAuth2 interop suite: a real server per module, an admin, the defined
permissions, and helpers that create service clients through POST /admin/clients."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from _support.http import PASSWORD, bearer, new_email
from authgate.jose import Key

from .harness import LiveServer, running_server

# The permissions the suite's role defines: client scopes must be a subset of them.
PERMISSIONS = ("posts:read", "posts:write", "reports:read")
ROLE = "editor"

ClientFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def anyio_backend() -> str:
    """Authlib's AsyncOAuth2Client runs on asyncio here."""
    return "asyncio"


@pytest.fixture(scope="session")
def rsa_key() -> Key:
    """The private key of the private_key_jwt clients (RS256: Authlib's default)."""
    return Key.generate("RS256")


@pytest.fixture(scope="session")
def es_key() -> Key:
    """A second private_key_jwt key, for an ES256 client."""
    return Key.generate("ES256")


def _setup(live: LiveServer) -> str:
    admin = live.make_admin()
    r = live.http.post(
        "/admin/roles", json={"name": ROLE, "permissions": list(PERMISSIONS)}, headers=bearer(admin)
    )
    assert r.status_code == 201, r.text
    return admin


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One server for a module; tests that move its clock use ``own_server`` instead."""
    with running_server(tmp_path_factory.mktemp("oauth2")) as server:
        server.admin_token = _setup(server)
        yield server


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A fresh server for one test (its clock may be moved)."""
    with running_server(tmp_path) as server:
        server.admin_token = _setup(server)
        yield server


def make_client(
    live: LiveServer,
    scopes: list[str],
    *,
    jwk: dict[str, Any] | None = None,
    access_ttl: float | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """POST /admin/clients; the 201 body (with the one-time ``client_secret``)."""
    body: dict[str, Any] = {"name": name or f"svc-{uuid.uuid4().hex[:8]}", "scopes": scopes}
    if jwk is not None:
        body["jwk"] = jwk
    if access_ttl is not None:
        body["access_ttl"] = access_ttl
    r = live.http.post("/admin/clients", json=body, headers=bearer(live.admin_token))
    assert r.status_code == 201, r.text
    created: dict[str, Any] = r.json()
    return created


@pytest.fixture(scope="module")
def secret_client(live: LiveServer) -> dict[str, Any]:
    """A client_secret client allowed posts:read and reports:read."""
    return make_client(live, ["posts:read", "reports:read"])


@pytest.fixture(scope="module")
def introspector(live: LiveServer) -> dict[str, Any]:
    """A client_secret client with authgate:introspect (what RFC 7662 calls a protected
    resource), allowed posts:read too."""
    return make_client(live, ["authgate:introspect", "posts:read"])


@pytest.fixture(scope="module")
def jwt_client(live: LiveServer, rsa_key: Key) -> dict[str, Any]:
    """A private_key_jwt client (RS256 public JWK registered), allowed posts:read."""
    return make_client(live, ["posts:read"], jwk=rsa_key.public().to_jwk())


@pytest.fixture
def user_tokens(live: LiveServer) -> dict[str, Any]:
    """A fresh user with the editor role, logged in through /auth/login (client authgate)."""
    email = new_email()

    async def create() -> None:
        await live.services.accounts.create_user(email, PASSWORD, roles=[ROLE])

    live.call(create())
    return live.login(email)
