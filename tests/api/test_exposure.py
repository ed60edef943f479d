"""What a server shows, and to whom: the docs (off in production unless enabled, served
from the package under a strict CSP), /metrics (behind AUTHGATE_METRICS_TOKEN), the RFC
8414 scopes (no internal permission) and the mode of the SQLite files. Each over HTTP,
against a real server.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from _support.files import umask
from _support.http import assert_problem, bearer
from _support.services import unavailable
from authgate.errors import ConfigurationError
from authgate.settings import Settings
from authgate.wiring import new_master_key

from .conftest import ServerFactory
from .server import LiveServer

PRODUCTION = {"AUTHGATE_ENV": "production", "AUTHGATE_ISSUER": "https://auth.example.com"}
DOC_PATHS = ("/docs", "/openapi.json", "/redoc", "/docs/oauth2-redirect")


def metrics_token() -> str:
    return secrets.token_urlsafe(32)


# --- docs: off in production unless enabled ---------------------------------------------


def test_docs_exposure_off_in_production(make_server: ServerFactory) -> None:
    live = make_server(PRODUCTION)
    for path in (*DOC_PATHS, "/docs/assets/swagger-ui-bundle.js", "/docs/assets/init.js"):
        assert_problem(live.http.get(path), 404, "not_found")
    meta = live.http.get("/.well-known/oauth-authorization-server").json()
    assert "service_documentation" not in meta  # it would point at a page that is not there


def test_docs_exposure_on_in_production_when_enabled(make_server: ServerFactory) -> None:
    live = make_server({**PRODUCTION, "AUTHGATE_DOCS": "true"})
    assert live.http.get("/docs").status_code == 200
    assert live.http.get("/openapi.json").json()["info"]["title"] == "authgate"
    meta = live.http.get("/.well-known/oauth-authorization-server").json()
    assert meta["service_documentation"] == "https://auth.example.com/docs"


def test_docs_exposure_can_be_turned_off_in_development(make_server: ServerFactory) -> None:
    live = make_server({"AUTHGATE_DOCS": "off"})
    for path in DOC_PATHS:
        assert_problem(live.http.get(path), 404, "not_found")


def test_docs_settings() -> None:
    assert Settings.from_env({}).docs_enabled
    prod = {**PRODUCTION, "AUTHGATE_MASTER_KEY": new_master_key()}
    assert not Settings.from_env(prod).docs_enabled
    assert Settings.from_env({**prod, "AUTHGATE_DOCS": "1"}).docs_enabled
    assert not Settings.from_env({"AUTHGATE_DOCS": "no"}).docs_enabled
    with pytest.raises(ConfigurationError):
        Settings.from_env({"AUTHGATE_DOCS": "maybe"})


# --- docs: no third-party script ----------------------------------------------------------


class _Page(HTMLParser):
    """Every URL a page references, its inline scripts, styles and event handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []  # (tag, url)
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data", "data-openapi-url"):
                assert value, (tag, name)
                self.urls.append((tag, value))
            if name.startswith("on") or name == "style":
                self.inline.append(f"{tag} {name}={value!r}")
        if tag == "style":
            self.inline.append("<style>")
        if tag == "script":
            if not values.get("src"):
                self.inline.append("<script> without src")
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(f"script body {data.strip()[:40]!r}")


def _csp(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0]] = words[1:]
    return directives


EXPECTED_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".json": "application/json",
}


def test_third_party_script_docs_page_loads_only_local_assets(shared: LiveServer) -> None:
    r = shared.http.get("/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = _Page()
    page.feed(r.text)
    assert page.inline == []
    assert "://" not in r.text  # no absolute URL at all: nothing from another origin
    assert {tag for tag, _ in page.urls} >= {"script", "link", "div", "a"}
    for tag, url in page.urls:
        assert url.startswith("/"), (tag, url)
        assert not url.startswith("//"), (tag, url)
        asset = shared.http.get(url)
        assert asset.status_code == 200, url
        media = asset.headers["content-type"].split(";")[0]
        assert media == EXPECTED_TYPES[Path(url).suffix], url
        if media in ("text/javascript", "text/css"):
            assert "//cdn" not in asset.text, url
            assert "jsdelivr" not in asset.text, url
    csp = _csp(r.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'none'"]
    assert not any("unsafe" in value for values in csp.values() for value in values)
    assert r.headers["x-frame-options"] == "DENY"


def test_third_party_script_docs_assets_are_the_packaged_swagger_ui(shared: LiveServer) -> None:
    from swagger_ui_bundle import swagger_ui_path

    served = shared.http.get("/docs/assets/swagger-ui-bundle.js")
    assert served.content == (Path(swagger_ui_path) / "swagger-ui-bundle.js").read_bytes()
    init = shared.http.get("/docs/assets/init.js")
    assert "SwaggerUIBundle(" in init.text
    assert "http" not in init.text  # the document URL comes from the page
    assert "validatorUrl: null" in init.text  # no badge fetched from validator.swagger.io
    # Only named files: not the bundle's index.html (with its petstore URL) nor a path.
    for name in ("index.html", "swagger-initializer.js", "..%2F__init__.py", "x"):
        assert_problem(shared.http.get(f"/docs/assets/{name}"), 404, "not_found")


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_third_party_script_docs_render_in_headless_chromium(shared: LiveServer) -> None:
    """Swagger UI renders every operation under the page's CSP, and the browser logs no
    console message (a CSP violation or a script error would be one)."""
    browser = _browser()
    if browser is None:
        unavailable("no Chromium on this machine (apt-get install chromium)")
    result = subprocess.run(
        [
            browser,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--log-level=0",
            "--virtual-time-budget=15000",
            "--dump-dom",
            f"{shared.url}/docs",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    operations = sum(
        len(item) for item in shared.http.get("/openapi.json").json()["paths"].values()
    )
    assert result.stdout.count('class="opblock ') == operations, result.stdout[-2000:]
    assert "/auth/login" in result.stdout
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []


def test_third_party_script_docs_document_is_a_3_0_rendition(shared: LiveServer) -> None:
    """The bundled Swagger UI reads OpenAPI 3.0: the page gets the same operations and
    schemas in that dialect, and /openapi.json stays the 3.1 original."""
    original = shared.http.get("/openapi.json").json()
    r = shared.http.get("/docs/openapi-3.0.json")
    assert r.status_code == 200
    rendition = r.json()
    assert original["openapi"].startswith("3.1")
    assert rendition["openapi"] == "3.0.3"
    assert rendition["paths"].keys() == original["paths"].keys()
    for path, item in original["paths"].items():
        assert rendition["paths"][path].keys() == item.keys(), path
    assert rendition["components"]["schemas"].keys() == original["components"]["schemas"].keys()
    text = r.text
    assert '"const"' not in text
    assert '{"type":"null"}' not in text.replace(" ", "")
    assert '"nullable":true' in text.replace(" ", "")
    assert _values(original, "exclusiveMinimum")  # a 3.1 numeric bound is there to convert
    for bound in ("exclusiveMinimum", "exclusiveMaximum"):
        assert all(v is True for v in _values(rendition, bound)), bound


def _values(node: Any, key: str) -> list[Any]:
    if isinstance(node, dict):
        found = [node[key]] if key in node else []
        return found + [v for child in node.values() for v in _values(child, key)]
    if isinstance(node, list):
        return [v for child in node for v in _values(child, key)]
    return []


# --- /metrics ------------------------------------------------------------------------------


def test_metrics_exposure_absent_in_production_without_a_token(make_server: ServerFactory) -> None:
    live = make_server(PRODUCTION)
    assert_problem(live.http.get("/metrics"), 404, "not_found")
    assert_problem(live.http.get("/metrics", headers=bearer("anything")), 404, "not_found")


@pytest.mark.parametrize("env", [{}, PRODUCTION], ids=["development", "production"])
def test_metrics_exposure_needs_the_token(make_server: ServerFactory, env: dict[str, str]) -> None:
    token = metrics_token()
    live = make_server({**env, "AUTHGATE_METRICS_TOKEN": token})
    r = live.http.get("/metrics")
    assert_problem(r, 401, "authentication_required")
    assert r.headers["www-authenticate"].startswith("Bearer")
    for wrong in (token[:-1], token + "x", metrics_token(), token.upper()):
        r = live.http.get("/metrics", headers=bearer(wrong))
        assert_problem(r, 401, "invalid_token")
        assert 'error="invalid_token"' in r.headers["www-authenticate"]
    r = live.http.get("/metrics", headers={"Authorization": f"Basic {token}"})
    assert_problem(r, 401, "authentication_required")
    ok = live.http.get("/metrics", headers=bearer(token))
    assert ok.status_code == 200
    assert "authgate_http_request_duration_seconds" in ok.text
    assert token not in ok.text


def test_metrics_exposure_token_file(make_server: ServerFactory, tmp_path: Path) -> None:
    token = metrics_token()
    secret = tmp_path / "metrics.token"
    secret.write_text(token + "\n")
    live = make_server({**PRODUCTION, "AUTHGATE_METRICS_TOKEN_FILE": str(secret)})
    assert live.http.get("/metrics", headers=bearer(token)).status_code == 200
    assert live.http.get("/metrics").status_code == 401


@pytest.mark.parametrize("weak", ["metrics", "a" * 40, "0123456789" * 4, "password123"])
@pytest.mark.parametrize("env", [{}, PRODUCTION], ids=["development", "production"])
def test_metrics_exposure_weak_token_is_refused(env: dict[str, str], weak: str) -> None:
    environ = {**env, "AUTHGATE_MASTER_KEY": new_master_key(), "AUTHGATE_METRICS_TOKEN": weak}
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(environ)
    assert "AUTHGATE_METRICS_TOKEN" in info.value.reason
    assert weak not in info.value.reason


def test_metrics_exposure_token_is_never_shown() -> None:
    token = metrics_token()
    settings = Settings.from_env({"AUTHGATE_METRICS_TOKEN": token})
    assert token not in repr(settings)
    assert token not in str(settings.describe())


# --- RFC 8414 scopes -----------------------------------------------------------------------


def test_internal_scope_disclosure_admin_permission_is_not_advertised(
    server: LiveServer,
) -> None:
    server.make_admin()

    async def roles() -> None:
        await server.services.directory.put_role("editor", ["posts:read", "posts:write"])
        await server.services.directory.put_role("ops", ["authgate:console", "metrics:read"])

    server.call(roles())
    doc = server.http.get("/.well-known/oauth-authorization-server").json()
    assert doc["scopes_supported"] == [
        "authgate:introspect",
        "authgate:revocations",
        "email",
        "metrics:read",
        "openid",
        "posts:read",
        "posts:write",
        "profile",
    ]


# --- the SQLite files ---------------------------------------------------------------------


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which SQLite alone would create the files 0644."""
    with umask(0o022):
        yield


def test_world_readable_database_server_files_are_0600(
    make_server: ServerFactory, umask_022: None
) -> None:
    live = make_server()
    live.register(f"mode-{secrets.token_hex(4)}@example.com")  # writes: the WAL exists
    files: dict[str, Any] = {}
    for suffix in ("", "-wal", "-shm"):
        path = Path(str(live.db_path) + suffix)
        files[path.name] = oct(path.stat().st_mode & 0o777)
    assert files == {name: "0o600" for name in files}, files
    assert len(files) == 3
