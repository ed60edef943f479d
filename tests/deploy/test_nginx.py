"""The tested deployment: nginx (docs/deploy/nginx.conf) terminates TLS and balances two
authgate instances that share PostgreSQL and Redis; login, refresh and revoke run through it
over HTTPS, with a certificate from ``authgate.devcert``.

The test client connects from 127.0.0.2 (loopback, but not the proxy's address), so that the
address authgate records can only come from the X-Forwarded-For header nginx sets.
"""

from __future__ import annotations

import contextlib
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from _support.http import assert_problem, bearer, login, new_email, register
from _support.live import free_port
from _support.services import unavailable
from authgate.devcert import make_dev_cert
from scaleout._cluster import Cluster, cluster, fresh_database, metric
from scaleout._proxy import TcpProxy

CONF = Path(__file__).resolve().parents[2] / "docs" / "deploy" / "nginx.conf"
CLIENT_ADDRESS = "127.0.0.2"
FORGED = "203.0.113.66"
PLACEHOLDERS = ("prefix", "port_a", "port_b", "https_port", "cert", "key")


def nginx_binary() -> str:
    """The nginx executable (skip, or fail with AUTHGATE_REQUIRE_SERVICES=1, if absent)."""
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found is None:
        unavailable("nginx is not installed (apt-get install nginx)")
    assert found is not None
    return found


def render(template: str, values: dict[str, str]) -> str:
    """Fill the {name} placeholders (nginx's own braces stay as they are)."""
    for name in PLACEHOLDERS:
        assert "{" + name + "}" in template, f"nginx.conf lacks {{{name}}}"
        template = template.replace("{" + name + "}", values[name])
    return template


@dataclass
class Deployment:
    group: Cluster
    base_url: str
    https_port: int
    ca: Path
    process: subprocess.Popen[bytes]
    prefix: Path
    database_proxy: TcpProxy

    def client(self, **extra: str) -> httpx.Client:
        """An HTTPS client trusting the dev CA, connecting from CLIENT_ADDRESS."""
        context = ssl.create_default_context(cafile=str(self.ca))
        transport = httpx.HTTPTransport(verify=context, local_address=CLIENT_ADDRESS)
        return httpx.Client(
            base_url=self.base_url, transport=transport, timeout=30.0, headers=extra
        )

    def error_log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.prefix / "error.log").read_text(errors="replace")
        return ""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    binary = nginx_binary()
    root = tmp_path_factory.mktemp("deploy")
    tls = make_dev_cert(root / "tls")
    https_port = free_port()
    issuer = f"https://localhost:{https_port}"
    with contextlib.ExitStack() as stack:
        # The instances reach PostgreSQL through a proxy of the test's own, to cut it.
        database = make_url(stack.enter_context(fresh_database()))
        proxy = TcpProxy(database.host or "127.0.0.1", database.port or 5432, port=free_port())
        proxy.start()
        stack.callback(proxy.close)
        group = stack.enter_context(
            cluster(
                root / "authgate",
                database=database.set(port=proxy.port).render_as_string(hide_password=False),
                AUTHGATE_TRUSTED_PROXIES="127.0.0.1",
                AUTHGATE_ISSUER=issuer,
            )
        )
        prefix = root / "nginx"
        prefix.mkdir()
        conf = prefix / "nginx.conf"
        conf.write_text(
            render(
                CONF.read_text(),
                {
                    "prefix": str(prefix),
                    "port_a": str(group["a"].port),
                    "port_b": str(group["b"].port),
                    "https_port": str(https_port),
                    "cert": str(tls["cert"]),
                    "key": str(tls["key"]),
                },
            )
        )
        checked = subprocess.run(
            [binary, "-t", "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", str(conf)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stderr
        log = (prefix / "nginx.out").open("wb")
        process = subprocess.Popen(
            [
                binary,
                "-p",
                str(prefix),
                "-e",
                str(prefix / "error.log"),
                "-c",
                str(conf),
                "-g",
                "daemon off;",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deployment = Deployment(group, issuer, https_port, tls["ca"], process, prefix, proxy)
        try:
            with deployment.client() as client:
                deadline = time.monotonic() + 20
                while True:
                    assert process.poll() is None, deployment.error_log()
                    with contextlib.suppress(httpx.TransportError):
                        if client.get("/readyz").status_code == 200:
                            break
                    assert time.monotonic() < deadline, deployment.error_log()
                    time.sleep(0.05)  # polling for startup
            yield deployment
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
            log.close()


@pytest.fixture(scope="module")
def admin_token(deployment: Deployment) -> str:
    email = deployment.group.make_admin()  # as an operator does: the CLI
    with deployment.client() as client:
        return str(login(client, email)["access_token"])


def _audit(client: httpx.Client, admin: str, event: str, user_id: str) -> list[dict[str, object]]:
    r = client.get("/admin/audit", params={"event": event, "user": user_id}, headers=bearer(admin))
    assert r.status_code == 200, r.text
    rows: list[dict[str, object]] = r.json()
    return rows


def test_login_refresh_and_revoke_through_nginx(deployment: Deployment) -> None:
    with deployment.client() as client:
        meta = client.get("/.well-known/oauth-authorization-server")
        assert meta.status_code == 200
        assert meta.json()["issuer"] == deployment.base_url
        assert "max-age=31536000" in meta.headers["strict-transport-security"]

        email = new_email("edge")
        register(client, email)
        tokens = login(client, email)
        me = client.get("/auth/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200
        assert me.json()["email"] == email

        refreshed = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.headers["cache-control"] == "no-store"
        pair = refreshed.json()

        # RFC 7009 revocation of the refresh token ends its whole family.
        revoked = client.post(
            "/oauth2/revoke", data={"token": pair["refresh_token"], "client_id": "authgate"}
        )
        assert revoked.status_code == 200, revoked.text
        again = client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
        assert_problem(again, 401, "invalid_grant")
        dead = client.get("/auth/me", headers=bearer(pair["access_token"]))
        assert_problem(dead, 401, "invalid_token")

        # Logout through nginx, too.
        other = login(client, email)
        assert client.post("/auth/logout", headers=bearer(other["access_token"])).status_code == 204
        assert_problem(
            client.get("/auth/me", headers=bearer(other["access_token"])), 401, "invalid_token"
        )


def test_the_audit_log_records_the_forwarded_client_address(
    deployment: Deployment, admin_token: str
) -> None:
    with deployment.client() as client:
        email = new_email("addr")
        user_id = register(client, email)["user"]["id"]
        tokens = login(client, email)
        failed = client.post("/auth/login", json={"email": email, "password": "not it, no"})
        assert_problem(failed, 401, "invalid_credentials")
        logins = _audit(client, admin_token, "login_ok", user_id)
        assert [row["ip"] for row in logins] == [CLIENT_ADDRESS]
        failures = _audit(client, admin_token, "login_failed", user_id)
        assert [row["ip"] for row in failures] == [CLIENT_ADDRESS]
        sessions = client.get("/auth/sessions", headers=bearer(tokens["access_token"])).json()
        assert {s["ip"] for s in sessions} == {CLIENT_ADDRESS}


def test_a_forged_forwarded_for_does_not_fool_it(deployment: Deployment, admin_token: str) -> None:
    # The client sends its own X-Forwarded-For: nginx overwrites it with the real address.
    email = new_email("forger")
    with deployment.client() as client:
        user_id = register(client, email)["user"]["id"]
    for forged in (FORGED, f"{FORGED}, 127.0.0.1", "127.0.0.1"):
        with deployment.client(**{"X-Forwarded-For": forged}) as client:
            login(client, email)
    # Straight to an instance (bypassing nginx) from an untrusted address: not believed.
    transport = httpx.HTTPTransport(local_address=CLIENT_ADDRESS)
    with httpx.Client(
        base_url=deployment.group["a"].url,
        transport=transport,
        headers={"X-Forwarded-For": FORGED},
        timeout=30.0,
    ) as direct:
        login(direct, email)
    with deployment.client() as client:
        logins = _audit(client, admin_token, "login_ok", user_id)
    assert [row["ip"] for row in logins] == [CLIENT_ADDRESS] * 4


def test_both_instances_served_requests(deployment: Deployment) -> None:
    email = new_email("spread")
    with deployment.client() as client:
        register(client, email)
        for _ in range(6):
            login(client, email)
    for name in ("a", "b"):
        logins = metric(deployment.group[name].metrics(), "authgate_logins_total", result="ok")
        assert logins > 0, f"instance {name} served no login"


def test_the_edge_does_not_serve_metrics(deployment: Deployment) -> None:
    with deployment.client() as client:
        assert client.get("/metrics").status_code == 403
        assert client.get("/healthz").status_code == 200


def test_a_database_outage_is_503_with_retry_after_at_the_edge(deployment: Deployment) -> None:
    """nginx passes authgate's 503 through, and does not count it as an instance failure:
    once the database is back, the next request is served (no 502 "no live upstreams")."""
    with deployment.client() as client:
        tokens = register(client, new_email("outage"))
        deployment.database_proxy.cut()
        try:
            for _ in range(6):  # more than max_fails per instance
                for r in (
                    client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
                    client.get("/auth/me", headers=bearer(tokens["access_token"])),
                ):
                    assert_problem(r, 503, "storage_unavailable")
                    assert r.headers["Retry-After"] == "1"
        finally:
            deployment.database_proxy.restore()
        me = client.get("/auth/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200, me.text
        r = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert r.status_code == 200, r.text


def test_nginx_fails_over_when_an_instance_dies(deployment: Deployment) -> None:
    """Last in the module: it kills instance b."""
    email = new_email("failover")
    with deployment.client() as client:
        register(client, email)
        deployment.group["b"].kill9()
        for _ in range(6):  # round-robin would send half of these to b
            tokens = login(client, email)
            r = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            assert r.status_code == 200, r.text
