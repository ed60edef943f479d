"""The command line, run as a user would: the installed `authgate` script, in subprocesses."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from _support.cli import AUTHGATE, add_role, add_user, run_cli
from _support.live import FAST_ARGON2, free_port
from _support.services import clean_environ


def run(
    cwd: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(cwd, *args, env={**clean_environ(), **FAST_ARGON2, **(env or {})}, stdin=stdin)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    result = run(tmp_path, "init", "--dir", ".")
    assert result.returncode == 0, result.stderr
    return tmp_path


def test_init_writes_config_key_and_database(home: Path) -> None:
    key = home / "master.key"
    assert (home / "authgate.toml").is_file()
    assert (home / "authgate.db").is_file()
    assert key.stat().st_mode & 0o777 == 0o600
    before = key.read_bytes()
    again = run(home, "init", "--dir", ".")
    assert again.returncode == 0, again.stderr
    assert key.read_bytes() == before  # idempotent: never overwrites a key
    keys = [json.loads(line) for line in run(home, "keys", "list").stdout.splitlines()]
    for alg in ("ES256", "RS256"):  # the access tokens' and the ID tokens' keys
        assert sorted(k["state"] for k in keys if k["alg"] == alg) == ["current", "next"]


def test_init_refuses_an_unignored_key_in_a_git_work_tree(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.fail("git is needed for this test")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    refused = run(tmp_path, "init", "--dir", ".")
    assert refused.returncode == 1
    assert "not ignored" in refused.stderr
    assert not (tmp_path / "master.key").exists()
    (tmp_path / ".gitignore").write_text("master.key\nauthgate.db*\n")
    assert run(tmp_path, "init", "--dir", ".").returncode == 0
    assert (tmp_path / "master.key").exists()


def test_users_and_roles(home: Path) -> None:
    added = run(home, *add_role("admin", "authgate:admin", "posts:read"))
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {
        "name": "admin",
        "permissions": ["authgate:admin", "posts:read"],
    }
    user = run(home, *add_user("Root@Example.com", "admin"), stdin="a long passphrase\n")
    assert user.returncode == 0, user.stderr
    assert json.loads(user.stdout)["email"] == "root@example.com"
    listed = [json.loads(line) for line in run(home, "users", "list").stdout.splitlines()]
    assert [(u["email"], u["roles"], u["disabled"]) for u in listed] == [
        ("root@example.com", ["admin"], False)
    ]
    dup = run(
        home, "users", "add", "root@example.com ", "--password-stdin", stdin="another long one\n"
    )
    assert dup.returncode == 1
    assert "email_taken" in dup.stderr
    weak = run(home, "users", "add", "x@example.com", "--password-stdin", stdin="password\n")
    assert weak.returncode == 1
    assert "weak_password" in weak.stderr
    no_role = run(home, "users", "set-roles", "root@example.com", "ghost")
    assert no_role.returncode == 1
    assert "not_found" in no_role.stderr
    assert run(home, "users", "set-roles", "root@example.com").returncode == 0
    assert run(home, "users", "disable", "root@example.com").returncode == 0
    listed = [json.loads(line) for line in run(home, "users", "list").stdout.splitlines()]
    assert [(u["roles"], u["disabled"]) for u in listed] == [([], True)]
    assert json.loads(run(home, "roles", "list").stdout.splitlines()[0])["name"] == "admin"


def test_usage_errors_exit_2(home: Path) -> None:
    assert run(home, "users", "add").returncode == 2
    assert run(home, "no-such-command").returncode == 2


def test_keys_rotate_and_import(home: Path, tmp_path: Path) -> None:
    from authgate.jose import Key

    first = {
        k["state"]: k["kid"] for k in map(json.loads, run(home, "keys", "list").stdout.splitlines())
    }
    assert run(home, "keys", "rotate").returncode == 0
    after = {
        k["kid"]: k["state"] for k in map(json.loads, run(home, "keys", "list").stdout.splitlines())
    }
    assert after[first["current"]] == "retiring"
    assert after[first["next"]] == "current"
    pem = tmp_path / "imported.pem"
    key = Key.generate("ES256", kid="imported-1")
    pem.write_bytes(key.to_pem(private=True))
    imported = run(
        home, "keys", "import", str(pem), "--alg", "ES256", "--kid", "imported-1", "--activate"
    )
    assert imported.returncode == 0, imported.stderr
    states = {
        k["kid"]: k["state"] for k in map(json.loads, run(home, "keys", "list").stdout.splitlines())
    }
    assert states["imported-1"] == "current"
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    refused = run(home, "keys", "import", str(bad), "--alg", "ES256")
    assert refused.returncode == 1
    assert "invalid_key" in refused.stderr


def test_wrong_master_key_refuses_to_start(home: Path) -> None:
    from authgate.wiring import new_master_key

    refused = run(home, "keys", "list", env={"AUTHGATE_MASTER_KEY": new_master_key()})
    assert refused.returncode == 1
    assert "master key does not decrypt" in refused.stderr
    served = run(
        home, "serve", "--port", str(free_port()), env={"AUTHGATE_MASTER_KEY": new_master_key()}
    )
    assert served.returncode == 1
    assert "master key does not decrypt" in served.stderr


def test_production_refusals(tmp_path: Path) -> None:
    production = {"AUTHGATE_ENV": "production"}
    for env, reason in (
        ({**production, "AUTHGATE_ISSUER": "http://auth.example.com"}, "plain-http"),
        (
            {**production, "AUTHGATE_ISSUER": "https://auth.example.com"},
            "needs AUTHGATE_MASTER_KEY",
        ),
        (
            {"AUTHGATE_SIGNING_ALG": "HS256", "AUTHGATE_HS256_SECRET": "secret" * 3},
            "AUTHGATE_HS256_SECRET is weak",
        ),
    ):
        refused = run(tmp_path, "serve", env=env)
        assert refused.returncode == 1, (reason, refused.stderr)
        assert reason in refused.stderr


@pytest.fixture
def tls_server(home: Path) -> Iterator[tuple[str, Path]]:
    certs = run(home, "dev-cert", "--dir", "certs")
    assert certs.returncode == 0, certs.stderr
    port = free_port()
    log = (home / "serve.log").open("wb")
    env = clean_environ()
    env.update(FAST_ARGON2)
    proc = subprocess.Popen(
        [
            *AUTHGATE,
            "serve",
            "--port",
            str(port),
            "--tls-cert",
            "certs/cert.pem",
            "--tls-key",
            "certs/key.pem",
        ],
        cwd=home,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"https://localhost:{port}"
    ctx = ssl.create_default_context(cafile=str(home / "certs" / "ca.pem"))
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/healthz", verify=ctx, timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        proc.stderr.read().decode() if proc.stderr else ""
                    ) from None
                time.sleep(0.1)
        yield url, home / "certs" / "ca.pem"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def test_serve_over_https_with_the_dev_ca(tls_server: tuple[str, Path]) -> None:
    url, ca = tls_server
    ctx = ssl.create_default_context(cafile=str(ca))
    with httpx.Client(base_url=url, verify=ctx) as client:
        reg = client.post(
            "/auth/register", json={"email": "tls@example.com", "password": "a long passphrase"}
        )
        assert reg.status_code == 201, reg.text
        assert reg.headers["strict-transport-security"].startswith("max-age=")
        token = reg.json()["access_token"]
        me = client.get("/auth/me", headers={"authorization": f"Bearer {token}"})
        assert me.status_code == 200
        assert me.json()["email"] == "tls@example.com"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", verify=True)  # the dev CA is not a public one


def test_token_inspect(home: Path, tls_server: tuple[str, Path]) -> None:
    url, ca = tls_server
    ctx = ssl.create_default_context(cafile=str(ca))
    reg = httpx.post(
        f"{url}/auth/register",
        json={"email": "t@example.com", "password": "a long passphrase"},
        verify=ctx,
    )
    token = reg.json()["access_token"]
    good = run(home, "token", "inspect", token)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["claims"]["sub"] == reg.json()["user"]["id"]
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    bad = run(home, "token", "inspect", tampered)
    assert bad.returncode == 1
    assert json.loads(bad.stdout) == {
        "valid": False,
        "code": "invalid_signature",
        "reason": "signature does not verify",
    }
    httpx.post(f"{url}/auth/logout", headers={"authorization": f"Bearer {token}"}, verify=ctx)
    revoked = run(home, "token", "inspect", token)
    assert revoked.returncode == 1
    assert json.loads(revoked.stdout)["code"] == "token_revoked"


def test_audit_verify_names_the_tampered_row(home: Path) -> None:
    import sqlite3

    assert run(home, "roles", "add", "reader", "--permission", "posts:read").returncode == 0
    assert run(home, "keys", "rotate").returncode == 0
    ok = run(home, "audit", "verify")
    assert ok.returncode == 0, ok.stderr
    checked = json.loads(ok.stdout)["checked"]
    assert checked >= 2
    with sqlite3.connect(home / "authgate.db") as db:
        db.execute("UPDATE audit_events SET event = 'nothing_happened' WHERE id = 2")
    broken = run(home, "audit", "verify")
    assert broken.returncode == 1
    assert json.loads(broken.stdout)["broken_at"] == 2


def test_clients_add_an_openid_connect_client(home: Path) -> None:
    public = run(
        home,
        "clients",
        "add",
        "native",
        "--redirect-uri",
        "com.example.app:/cb",
        "--redirect-uri",
        "http://127.0.0.1:8765/cb",
        "--public",
        "--first-party",
    )
    assert public.returncode == 0, public.stderr
    created = json.loads(public.stdout)
    assert created["client_secret"] is None
    assert created["client_id"]
    web = run(
        home,
        "clients",
        "add",
        "web",
        "--redirect-uri",
        "https://app.example.com/cb",
        "--post-logout-redirect-uri",
        "https://app.example.com/bye",
        "--scope",
        "openid",
        "--scope",
        "email",
    )
    assert web.returncode == 0, web.stderr
    assert json.loads(web.stdout)["client_secret"]
    listed = {
        c["name"]: c for c in map(json.loads, run(home, "clients", "list").stdout.splitlines())
    }
    assert listed["native"]["public"]
    assert listed["native"]["first_party"]
    assert listed["web"]["redirect_uris"] == ["https://app.example.com/cb"]
    # A custom scheme is for a public client only; plain http for loopback only.
    for uri in ("com.example.app:/cb", "http://app.example.com/cb"):
        refused = run(home, "clients", "add", "bad", "--redirect-uri", uri)
        assert refused.returncode != 0
