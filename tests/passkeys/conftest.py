"""Fixtures of the passkey suite: a real authgate server over HTTP on an injected
FixedClock (the lifecycle suite's), its public URL ``https://app.example.com`` and so, by
default, RP ID ``app.example.com`` and origin ``https://app.example.com``; and a software
authenticator for that origin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _support.http import PASSWORD, bearer, new_email
from lifecycle.conftest import PUBLIC_URL, Server, running

from ._authenticator import SoftAuthenticator

RP_ID = "app.example.com"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """authgate with the default settings (mail to the console)."""
    with running(tmp_path) as live:
        yield live


@pytest.fixture
def authenticator() -> SoftAuthenticator:
    """A counting, user-verifying, device-bound authenticator for the public origin."""
    return SoftAuthenticator(origin=PUBLIC_URL, rp_id=RP_ID)


class Account:
    """A registered user of ``server``, with its access token."""

    def __init__(self, server: Server, email: str | None = None) -> None:
        self.server = server
        self.email = email or new_email("pk")
        tokens = server.register(self.email)
        self.token = str(tokens["access_token"])
        self.refresh = str(tokens["refresh_token"])

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.server.http.post(path, headers=self.auth, **kw)

    def add_passkey(
        self, authenticator: SoftAuthenticator, *, name: str | None = None
    ) -> dict[str, Any]:
        """Register a passkey through both ceremony calls; the 201 body."""
        options = self.post("/auth/passkeys/register/options")
        assert options.status_code == 200, options.text
        body: dict[str, Any] = {"credential": authenticator.create(options.json())}
        if name is not None:
            body["name"] = name
        done = self.post("/auth/passkeys/register/verify", json=body)
        assert done.status_code == 201, done.text
        out: dict[str, Any] = done.json()
        return out

    def login_with(self, authenticator: SoftAuthenticator) -> None:
        """Log in again with a passkey (passwordless, user verified): from now on the
        account's token is of a session that used its second factor."""
        options = self.server.http.post("/auth/passkeys/login/options").json()
        done = self.server.http.post(
            "/auth/passkeys/login/verify", json={"credential": authenticator.get(options)}
        )
        assert done.status_code == 200, done.text
        self.token = str(done.json()["access_token"])

    def first_step(self) -> dict[str, Any]:
        """``POST /auth/login`` with the password: the MFA challenge."""
        answer = self.server.http.post(
            "/auth/login", json={"email": self.email, "password": PASSWORD}
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        assert body.get("mfa_required") is True, body
        return body


@pytest.fixture
def account(server: Server) -> Account:
    """A fresh account on ``server``."""
    return Account(server)
