"""Secret hygiene: run every flow against a real server started with known secrets, then
search its logs, every response body and /metrics for each secret and each refresh token."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from _support.cli import AUTHGATE, add_role, add_user, run_cli
from _support.live import free_port
from _support.services import clean_environ
from authgate.wiring import new_master_key

MASTER_KEY = new_master_key()
HS256_SECRET = "hygiene-HS256-secret-0123456789-abcdefghijklmnop"
PASSWORD = "hygiene user passphrase 42"
NEW_PASSWORD = "hygiene new passphrase 43"
ADMIN_PASSWORD = "hygiene admin passphrase 44"


def _env(home: Path) -> dict[str, str]:
    env = clean_environ()
    env.update(
        {
            "AUTHGATE_MASTER_KEY": MASTER_KEY,
            "AUTHGATE_SIGNING_ALG": "HS256",
            "AUTHGATE_HS256_SECRET": HS256_SECRET,
            "AUTHGATE_DATABASE_URL": f"sqlite:///{home / 'authgate.db'}",
            "AUTHGATE_LOG_FORMAT": "json",
            "AUTHGATE_ARGON2_MEMORY_KIB": "1024",
            "AUTHGATE_ARGON2_TIME_COST": "1",
        }
    )
    return env


def _cli(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(home, *args, env=_env(home), stdin=stdin)


def test_no_secret_or_refresh_token_is_ever_logged_or_echoed(tmp_path: Path) -> None:
    home = tmp_path
    setup = [
        _cli(home, *add_role("admin", "authgate:admin", "posts:read")),
        _cli(home, *add_user("admin@example.com", "admin"), stdin=ADMIN_PASSWORD + "\n"),
    ]
    client = _cli(
        home, "clients", "add", "svc", "--scope", "authgate:revocations", "--scope", "posts:read"
    )
    for result in [*setup, client]:
        assert result.returncode == 0, result.stderr
    client_id, client_secret = (
        json.loads(client.stdout)["client_id"],
        json.loads(client.stdout)["client_secret"],
    )
    cli_output = "".join(r.stderr for r in [*setup, client]) + "".join(r.stdout for r in setup)

    port = free_port()
    log_path = home / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*AUTHGATE, "serve", "--port", str(port)],
            cwd=home,
            env=_env(home),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            bodies, refresh_tokens = _exercise(
                f"http://127.0.0.1:{port}", proc, client_id, client_secret
            )
        finally:
            proc.terminate()
            proc.wait(timeout=15)
    logs = log_path.read_text("utf-8", "replace")
    assert '"logger"' in logs  # the server really wrote JSON logs to search
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    secrets_ = {
        "master key": MASTER_KEY,
        "HS256 secret": HS256_SECRET,
        "client secret": client_secret,
        "Basic credentials": basic,
        "user password": PASSWORD,
        "new user password": NEW_PASSWORD,
        "admin password": ADMIN_PASSWORD,
    }
    secrets_.update({f"refresh token {i}": token for i, token in enumerate(refresh_tokens)})
    assert len(refresh_tokens) >= 5
    haystacks = {"server log": logs, "CLI stderr": cli_output, **bodies}
    for where, text in haystacks.items():
        issued = _issued_refresh_token(text)
        for what, secret in secrets_.items():
            if secret == issued:
                continue  # the one answer that hands this refresh token out
            assert secret not in text, f"{what} found in {where}"


def _issued_refresh_token(body: str) -> str | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    token = parsed.get("refresh_token") if isinstance(parsed, dict) else None
    return token if isinstance(token, str) else None


def _exercise(
    url: str, proc: subprocess.Popen[bytes], client_id: str, client_secret: str
) -> tuple[dict[str, str], list[str]]:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            break
        except httpx.TransportError:
            assert proc.poll() is None, "server exited"
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)
    bodies: dict[str, str] = {}
    refresh: list[str] = []
    with httpx.Client(base_url=url, timeout=10) as http:

        def call(name: str, method: str, path: str, **kw: object) -> httpx.Response:
            response = http.request(method, path, **kw)  # type: ignore[arg-type]
            bodies[f"{name} ({response.status_code})"] = response.text
            return response

        def pair(name: str, method: str, path: str, status: int, **kw: object) -> Any:
            """``call``, which must answer ``status`` and a token pair; keeps the refresh token."""
            response = call(name, method, path, **kw)
            assert response.status_code == status
            refresh.append(response.json()["refresh_token"])
            return response.json()

        pair(
            "register",
            "POST",
            "/auth/register",
            201,
            json={"email": "u@example.com", "password": PASSWORD},
        )
        call(
            "weak register",
            "POST",
            "/auth/register",
            json={"email": "w@example.com", "password": "password"},
        )
        call(
            "bad json",
            "POST",
            "/auth/register",
            content=b'{"email": "x", "password": "' + PASSWORD.encode() + b'"',
        )
        call(
            "extra field",
            "POST",
            "/auth/register",
            json={"email": "e@example.com", "password": PASSWORD, "is_admin": True},
        )
        call(
            "wrong password",
            "POST",
            "/auth/login",
            json={"email": "u@example.com", "password": PASSWORD + "x"},
        )
        form = {"username": "u@example.com", "password": PASSWORD}
        login = pair("login", "POST", "/auth/login", 200, data=form)
        rotated = pair(
            "refresh", "POST", "/auth/refresh", 200, json={"refresh_token": login["refresh_token"]}
        )
        auth = {"authorization": f"Bearer {rotated['access_token']}"}
        call("me", "GET", "/auth/me", headers=auth)
        call("sessions", "GET", "/auth/sessions", headers=auth)
        call("bad refresh", "POST", "/auth/refresh", json={"refresh_token": refresh[-1] + "x"})
        pw = call(
            "password",
            "POST",
            "/auth/password",
            headers=auth,
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        )
        assert pw.status_code == 204
        call(
            "wrong current password",
            "POST",
            "/auth/password",
            headers=auth,
            json={"current_password": "nope nope nope", "new_password": NEW_PASSWORD},
        )
        pair(
            "oauth2 refresh",
            "POST",
            "/oauth2/token",
            200,
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh[-1],
                "client_id": "authgate",
            },
        )
        # reuse of a rotated token far outside the grace window is still answered the same way
        call("reuse", "POST", "/auth/refresh", json={"refresh_token": refresh[1]})
        grant = call(
            "client_credentials",
            "POST",
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, client_secret),
        )
        assert grant.status_code == 200
        call(
            "bad client",
            "POST",
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, client_secret + "x"),
        )
        call(
            "introspect",
            "POST",
            "/oauth2/introspect",
            data={"token": refresh[-1]},
            auth=(client_id, client_secret),
        )
        call(
            "revoke", "POST", "/oauth2/revoke", data={"token": refresh[-1], "client_id": "authgate"}
        )
        call("feed", "GET", "/auth/revocations", auth=(client_id, client_secret))
        admin_login = {"email": "admin@example.com", "password": ADMIN_PASSWORD}
        admin = pair("admin login", "POST", "/auth/login", 200, json=admin_login)
        admin_auth = {"authorization": f"Bearer {admin['access_token']}"}
        call("admin users", "GET", "/admin/users", headers=admin_auth)
        call("admin clients", "GET", "/admin/clients", headers=admin_auth)
        call("admin audit", "GET", "/admin/audit", headers=admin_auth)
        call("admin keys", "GET", "/admin/keys", headers=admin_auth)
        call("logout-all", "POST", "/auth/logout-all", headers=admin_auth)
        call("metrics", "GET", "/metrics")
        call("openapi", "GET", "/openapi.json")
    return bodies, refresh
