"""Real third-party verifiers accept the server's tokens from its JWKS URL: PyJWT's
PyJWKClient, and Node jose's createRemoteJWKSet. The Node package comes from
tests/interop (``npm ci --prefix tests/interop``); a missing install is a failure."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from authgate.clock import FixedClock

from ._support import AUDIENCE, AuthServer, auth_server

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "remote_jwks.mjs"
JOSE = HERE.parent / "interop" / "node_modules" / "jose" / "package.json"
PASSWORD = "correct horse battery staple 42"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    # Third-party verifiers read the real clock: this server's clock starts at it.
    with auth_server(tmp_path_factory.mktemp("interop"), clock=FixedClock(time.time())) as s:
        yield s


@pytest.fixture(scope="module")
def tokens(live: AuthServer) -> dict[str, str]:
    user = live.register("interop@example.com", PASSWORD)["access_token"]
    client_id, secret = live.new_client()
    r = live.http.post(
        "/oauth2/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert r.status_code == 200, r.text
    return {"user": user, "client": r.json()["access_token"]}


@pytest.fixture(scope="module")
def jwks_uri(live: AuthServer) -> str:
    uri: str = live.http.get("/.well-known/oauth-authorization-server").json()["jwks_uri"]
    assert uri == f"{live.url}/.well-known/jwks.json"
    return uri


@pytest.mark.parametrize("kind", ["user", "client"])
def test_pyjwt_pyjwkclient(
    live: AuthServer, tokens: dict[str, str], jwks_uri: str, kind: str
) -> None:
    token = tokens[kind]
    client = jwt.PyJWKClient(jwks_uri, cache_keys=True)
    signing_key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=["ES256"],
        audience=AUDIENCE,
        issuer=live.url,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    assert claims["iss"] == live.url
    assert claims["aud"] == AUDIENCE
    assert ("sid" in claims) is (kind == "user")
    # A different audience is refused by PyJWT too.
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(token, signing_key.key, algorithms=["ES256"], audience="other", issuer=live.url)


def run_node(request: dict[str, Any]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node is not None, "`node` is not on PATH: install Node 20+"
    assert JOSE.is_file(), "Node `jose` is missing: run `npm ci --prefix tests/interop`"
    proc = subprocess.run(
        [node, str(SCRIPT)],
        input=json.dumps(request).encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    results: list[dict[str, Any]] = json.loads(proc.stdout)["results"]
    return results


def test_node_jose_create_remote_jwk_set(
    live: AuthServer, tokens: dict[str, str], jwks_uri: str
) -> None:
    head, _, sig = tokens["user"].split(".")
    tampered = f"{head}.{tokens['client'].split('.')[1]}.{sig}"
    results = run_node(
        {
            "jwks_uri": jwks_uri,
            "issuer": live.url,
            "audience": AUDIENCE,
            "tokens": [tokens["user"], tokens["client"], tampered],
            "now": live.clock.now(),
        }
    )
    user, client, bad = results
    assert user["ok"], user
    assert user["header"]["typ"] == "at+jwt"
    assert user["claims"]["sid"].startswith("sid_")
    assert client["ok"], client
    assert "sid" not in client["claims"]
    assert not bad["ok"]
    assert bad["code"] == "ERR_JWS_SIGNATURE_VERIFICATION_FAILED"


def test_node_jose_refuses_another_audience(
    live: AuthServer, tokens: dict[str, str], jwks_uri: str
) -> None:
    (result,) = run_node(
        {"jwks_uri": jwks_uri, "issuer": live.url, "audience": "other", "tokens": [tokens["user"]]}
    )
    assert not result["ok"]
    assert result["code"] == "ERR_JWT_CLAIM_VALIDATION_FAILED"
