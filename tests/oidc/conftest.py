"""Fixtures of the OpenID Connect suite: the services opened through the composition root on
a FixedClock, over SQLite (a file) and PostgreSQL (a schema of its own); a user; clients."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from authgate.clock import FixedClock
from authgate.settings import Settings
from authgate.storage.base import ClientRecord, UserRecord
from authgate.wiring import Services, new_master_key, open_services
from storage._postgres import postgres_schema, require_postgres

ISSUER = "https://auth.example.com"
REDIRECT = "https://app.example.com/cb"
LOGOUT_REDIRECT = "https://app.example.com/bye"
PASSWORD = "a long and unusual passphrase 42"


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Async tests run on asyncio only."""
    return "asyncio"


def settings_for(url: str, **more: Any) -> Settings:
    """Settings for a test server at ``url``, with cheap password hashing."""
    from authgate.settings import Secret

    return Settings(
        database_url=url,
        issuer=ISSUER,
        master_key=Secret(new_master_key()),
        argon2_memory_kib=1024,
        argon2_time_cost=1,
        **more,
    )


@dataclass
class World:
    """Services on one backend, with their clock."""

    services: Services
    clock: FixedClock
    backend: str
    url: str

    async def user(self, email: str | None = None) -> UserRecord:
        """A new user with a verified email."""
        email = email or f"u{secrets.token_hex(4)}@example.com"
        user = await self.services.accounts.create_user(email, PASSWORD, name="Ada Lovelace")
        await self.services.storage.set_email_verified(user.id, True)
        found = await self.services.storage.get_user(user.id)
        assert found is not None
        return found

    async def client(
        self,
        *,
        public: bool = False,
        first_party: bool = False,
        scopes: tuple[str, ...] = ("openid", "profile", "email"),
        id_token_alg: str | None = None,
    ) -> tuple[ClientRecord, str | None]:
        """A registered OpenID Connect client."""
        return await self.services.clients.create(
            "app",
            scopes,
            redirect_uris=[REDIRECT, "http://127.0.0.1:8123/cb"],
            post_logout_redirect_uris=[LOGOUT_REDIRECT],
            public=public,
            first_party=first_party,
            id_token_alg=id_token_alg,
        )


Opener = Callable[..., Coroutine[Any, Any, World]]


@pytest.fixture(params=["sqlite", "postgresql"])
async def open_world(
    request: pytest.FixtureRequest, tmp_path: Path, anyio_backend: str
) -> AsyncIterator[Opener]:
    """Open services (with extra settings) on the backend under test."""
    backend = str(request.param)
    if backend == "postgresql":
        require_postgres()
    async with AsyncExitStack() as stack:
        count = 0

        async def opener(**more: Any) -> World:
            nonlocal count
            count += 1
            if backend == "sqlite":
                url = f"sqlite+aiosqlite:///{tmp_path / f'db{count}.sqlite'}"
            else:
                url = await stack.enter_async_context(postgres_schema())
            clock = FixedClock()
            settings = settings_for(url, **more)
            services = await stack.enter_async_context(open_services(settings, clock=clock))
            return World(services, clock, backend, url)

        yield opener


@pytest.fixture
async def world(open_world: Opener) -> World:
    """Services with the default settings."""
    return await open_world()


def pkce() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
