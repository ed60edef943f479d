"""Third-party verifiers check authgate's client_credentials tokens with nothing but the
issuer's URL: the JWKS URL comes from the RFC 8414 metadata document. PyJWT's PyJWKClient
and Node jose's createRemoteJWKSet, as their docs show; a token with a forged signature
(same kid, another key) and a token with a swapped payload are refused by both."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from _support.http import basic
from _support.tokens import claims_of, header_of
from authgate.jose import DEFAULT_REQUIRED, Key, encode

from .harness import AUDIENCE, LiveServer

HERE = Path(__file__).resolve().parent
NODE_SCRIPT = HERE / "remote_jwks.mjs"
JOSE = HERE.parent / "interop" / "node_modules" / "jose" / "package.json"
METADATA = "/.well-known/oauth-authorization-server"


def _grant(live: LiveServer, client: dict[str, Any], scope: str | None = None) -> str:
    form = {"grant_type": "client_credentials"} | ({"scope": scope} if scope else {})
    r = live.http.post(
        "/oauth2/token", data=form, headers=basic(client["client_id"], client["client_secret"])
    )
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


@pytest.fixture(scope="module")
def tokens(live: LiveServer, secret_client: dict[str, Any]) -> dict[str, str]:
    """Two genuine tokens, a forged one (same header and kid, another key) and a spliced one
    (a genuine signature over another token's payload)."""
    first = _grant(live, secret_client)
    second = _grant(live, secret_client, "posts:read")
    header = header_of(first)
    impostor = Key.generate(header["alg"], kid=header["kid"])
    forged = encode(claims_of(first), impostor, typ="at+jwt")
    assert header_of(forged) == header
    head, _, sig = first.split(".")
    spliced = f"{head}.{second.split('.')[1]}.{sig}"
    return {"first": first, "second": second, "forged": forged, "spliced": spliced}


def _jwks_uri(live: LiveServer) -> str:
    meta = httpx.get(live.url + METADATA).json()
    uri: str = meta["jwks_uri"]
    assert uri == f"{live.url}/.well-known/jwks.json"
    return uri


def _verified_by_pyjwt(live: LiveServer, token: str) -> dict[str, Any]:
    """The claims of ``token`` as PyJWT verifies them, with the key its PyJWKClient finds
    (by kid) in the JWKS that the server's metadata names."""
    signing_key = jwt.PyJWKClient(_jwks_uri(live)).get_signing_key_from_jwt(token)
    assert signing_key.key_id == header_of(token)["kid"]
    expected = {"algorithms": ["ES256"], "audience": AUDIENCE, "issuer": live.url}
    claims: dict[str, Any] = jwt.decode(
        token, signing_key.key, **expected, options={"require": list(DEFAULT_REQUIRED)}
    )
    return claims


def test_pyjwt_pyjwkclient_verifies_client_tokens(
    live: LiveServer, secret_client: dict[str, Any], tokens: dict[str, str]
) -> None:
    for name, scope in (("first", "posts:read reports:read"), ("second", "posts:read")):
        claims = _verified_by_pyjwt(live, tokens[name])
        assert claims["sub"] == secret_client["client_id"]
        assert claims["client_id"] == secret_client["client_id"]
        assert claims["scope"] == scope
    assert jwt.get_unverified_header(tokens["first"])["typ"] == "at+jwt"


@pytest.mark.parametrize("name", ["forged", "spliced"])
def test_pyjwt_pyjwkclient_refuses_bad_signatures(
    live: LiveServer, tokens: dict[str, str], name: str
) -> None:
    with pytest.raises(jwt.InvalidSignatureError):
        _verified_by_pyjwt(live, tokens[name])


@pytest.fixture(scope="module")
def node_run(live: LiveServer, tokens: dict[str, str]) -> dict[str, Any]:
    """One Node process verifies every token (Node starts slowly)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed (Node 20+ is needed)", pytrace=False)
    if not JOSE.is_file():
        pytest.fail("jose is missing: run `npm ci --prefix tests/interop`", pytrace=False)
    request = {
        "metadata_url": live.url + METADATA,
        "issuer": live.url,
        "audience": AUDIENCE,
        "tokens": tokens,
    }
    proc = subprocess.run(
        [node, str(NODE_SCRIPT)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def test_node_jose_remote_jwks_verifies_client_tokens(
    live: LiveServer, secret_client: dict[str, Any], node_run: dict[str, Any]
) -> None:
    assert node_run["jwks_uri"] == f"{live.url}/.well-known/jwks.json"
    for name, scope in (("first", "posts:read reports:read"), ("second", "posts:read")):
        result = node_run["results"][name]
        assert result["ok"], result
        assert result["header"]["typ"] == "at+jwt"
        assert result["payload"]["sub"] == secret_client["client_id"]
        assert result["payload"]["client_id"] == secret_client["client_id"]
        assert result["payload"]["scope"] == scope


@pytest.mark.parametrize("name", ["forged", "spliced"])
def test_node_jose_remote_jwks_refuses_bad_signatures(node_run: dict[str, Any], name: str) -> None:
    result = node_run["results"][name]
    assert result["ok"] is False
    assert result["code"] == "ERR_JWS_SIGNATURE_VERIFICATION_FAILED", result
