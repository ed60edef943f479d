"""Interop with Node's `jose` and `jsonwebtoken`, through peer.mjs.

Node starts slowly, so every job of this module runs in ONE peer process (the module-scoped
``node`` fixture); each test then checks its own results. The Node packages come from
tests/interop/package-lock.json: CI runs ``npm ci --prefix tests/interop`` first, and a
missing install is a failure, never a skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from authgate.errors import InvalidIssuer, InvalidSignature
from authgate.jose import ALGORITHMS, KeySet, encode

HERE = Path(__file__).resolve().parent
PEER = HERE / "peer.mjs"
NODE_PACKAGES = ("jose", "jsonwebtoken")
INSTALL_HINT = "run `npm ci --prefix tests/interop` (Node 20+) before pytest"

ALGS = sorted(ALGORITHMS)
# jsonwebtoken has no EdDSA; jose has every algorithm we do.
LIB_ALGS = {"jose": ALGS, "jsonwebtoken": [a for a in ALGS if a != "EdDSA"]}
CASES = [
    pytest.param(lib, alg, id=f"{lib}-{alg}") for lib in NODE_PACKAGES for alg in LIB_ALGS[lib]
]
LIBS = [pytest.param(lib, id=lib) for lib in NODE_PACKAGES]
EXTRA_ALG = "ES256"  # the default signing algorithm, for the one-off checks


@dataclass
class NodeRun:
    """Results of the single peer.mjs run, by job id; or why there are none."""

    error: str | None = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    claims: dict[str, dict[str, Any]] = field(default_factory=dict)

    def result(self, job_id: str) -> dict[str, Any]:
        if self.error is not None:
            pytest.fail(self.error, pytrace=False)
        assert job_id in self.results, f"peer.mjs returned no result for {job_id}"
        return self.results[job_id]

    def ok(self, job_id: str) -> dict[str, Any]:
        result = self.result(job_id)
        assert result["ok"], f"{job_id} failed in node: {result}"
        return result

    def refused(self, job_id: str) -> dict[str, Any]:
        result = self.result(job_id)
        assert not result["ok"], f"{job_id} was accepted by node: {result}"
        return result


def _missing_install() -> str | None:
    missing = [
        p for p in NODE_PACKAGES if not (HERE / "node_modules" / p / "package.json").is_file()
    ]
    if missing:
        where = "tests/interop/node_modules"
        return f"Node packages {missing} are not installed in {where}: {INSTALL_HINT}"
    return None


def _swap_payload(token_a: str, token_b: str) -> str:
    head, _, sig = token_a.split(".")
    return f"{head}.{token_b.split('.')[1]}.{sig}"


def _jobs(interop: Any) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every job of the module, and the claims each job is expected to carry."""
    jobs: list[dict[str, Any]] = []
    claims: dict[str, dict[str, Any]] = {}
    common = {"issuer": interop.issuer, "audience": interop.audience}

    def verify(job_id: str, lib: str, alg: str, token: str, **extra: Any) -> None:
        jwk = interop.secret_or_public_jwk(alg)
        job = {"id": job_id, "lib": lib, "op": "verify", "alg": alg, "jwk": jwk, "token": token}
        jobs.append(job | common | {"now": interop.now} | extra)

    def sign(job_id: str, lib: str, alg: str, body: dict[str, Any], **extra: Any) -> None:
        jwk = extra.pop("jwk", None) or interop.keys[alg].to_jwk(private=True)
        jobs.append(
            {"id": job_id, "lib": lib, "op": "sign", "alg": alg, "jwk": jwk, "claims": body} | extra
        )
        claims[job_id] = body

    for lib in NODE_PACKAGES:
        for alg in LIB_ALGS[lib]:
            key = interop.keys[alg]
            body = interop.claims()
            claims[f"{lib}/{alg}/verify"] = body
            verify(f"{lib}/{alg}/verify", lib, alg, encode(body, key))
            swapped = _swap_payload(
                encode(interop.claims(sub="alice"), key), encode(interop.claims(sub="mallory"), key)
            )
            verify(f"{lib}/{alg}/verify-swapped", lib, alg, swapped)
            sign(f"{lib}/{alg}/sign", lib, alg, interop.claims())
            impostor = interop.other_key(alg).to_jwk(private=True)  # same kid, other material
            sign(f"{lib}/{alg}/sign-impostor", lib, alg, interop.claims(), jwk=impostor)

        key = interop.keys[EXTRA_ALG]
        body = interop.claims(client_id="authgate", sid="sid-1")
        claims[f"{lib}/verify-at+jwt"] = body
        verify(
            f"{lib}/verify-at+jwt", lib, EXTRA_ALG, encode(body, key, typ="at+jwt"), typ="at+jwt"
        )
        body = interop.claims(aud="other-api")
        verify(f"{lib}/verify-other-aud", lib, EXTRA_ALG, encode(body, key))
        sign(
            f"{lib}/sign-at+jwt", lib, EXTRA_ALG, interop.claims(client_id="authgate"), typ="at+jwt"
        )
        sign(
            f"{lib}/sign-other-iss", lib, EXTRA_ALG, interop.claims(iss="https://evil.example.com")
        )
    return jobs, claims


@pytest.fixture(scope="module")
def node(interop: Any) -> NodeRun:
    missing = _missing_install()
    if missing is not None:
        return NodeRun(error=missing)
    node_bin = shutil.which("node")
    if node_bin is None:
        return NodeRun(error=f"`node` is not on PATH: install Node 20+ and {INSTALL_HINT}")
    jobs, claims = _jobs(interop)
    proc = subprocess.run(
        [node_bin, str(PEER)],
        input=json.dumps({"jobs": jobs}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        return NodeRun(error=f"peer.mjs exited {proc.returncode}:\n{proc.stderr}")
    results = json.loads(proc.stdout)["results"]
    assert [r["id"] for r in results] == [j["id"] for j in jobs]
    return NodeRun(results={r["id"]: r for r in results}, claims=claims)


@pytest.fixture(scope="module")
def verify_set(interop: Any) -> KeySet:
    """Every key of the session, public only where there is a public part: kid selects."""
    return KeySet(k if k.is_symmetric else k.public() for k in interop.keys.values())


def test_node_packages_are_installed() -> None:
    # Fails (never skips) without `npm ci --prefix tests/interop`: CI must run the Node peers.
    missing = _missing_install()
    assert missing is None, missing
    lock = json.loads((HERE / "package-lock.json").read_text())
    for name in NODE_PACKAGES:
        installed = json.loads((HERE / "node_modules" / name / "package.json").read_text())
        assert installed["version"] == lock["packages"][f"node_modules/{name}"]["version"], (
            f"node_modules/{name} does not match package-lock.json: {INSTALL_HINT}"
        )


# --- our tokens in Node -----------------------------------------------------------------------


@pytest.mark.parametrize(("lib", "alg"), CASES)
def test_our_token_verifies_in_node(interop: Any, node: NodeRun, lib: str, alg: str) -> None:
    result = node.ok(f"{lib}/{alg}/verify")

    assert result["claims"] == node.claims[f"{lib}/{alg}/verify"]
    assert result["header"] == {"alg": alg, "kid": interop.keys[alg].kid, "typ": "JWT"}


@pytest.mark.parametrize(("lib", "alg"), CASES)
def test_node_refuses_our_token_with_a_swapped_payload(node: NodeRun, lib: str, alg: str) -> None:
    result = node.refused(f"{lib}/{alg}/verify-swapped")

    if lib == "jose":
        assert result["code"] == "ERR_JWS_SIGNATURE_VERIFICATION_FAILED", result
    else:
        assert (result["error"], result["message"]) == ("JsonWebTokenError", "invalid signature")


@pytest.mark.parametrize("lib", LIBS)
def test_our_access_token_verifies_in_node(node: NodeRun, lib: str) -> None:
    result = node.ok(f"{lib}/verify-at+jwt")

    assert result["claims"] == node.claims[f"{lib}/verify-at+jwt"]
    assert result["header"]["typ"] == "at+jwt"


@pytest.mark.parametrize("lib", LIBS)
def test_node_refuses_our_token_for_another_audience(node: NodeRun, lib: str) -> None:
    result = node.refused(f"{lib}/verify-other-aud")

    if lib == "jose":
        assert result["code"] == "ERR_JWT_CLAIM_VALIDATION_FAILED", result
        assert "aud" in result["message"]
    else:
        assert result["error"] == "JsonWebTokenError"
        assert result["message"].startswith("jwt audience invalid"), result


# --- Node's tokens here -----------------------------------------------------------------------


@pytest.mark.parametrize(("lib", "alg"), CASES)
def test_node_token_verifies_here(
    interop: Any, node: NodeRun, verify_set: KeySet, lib: str, alg: str
) -> None:
    job_id = f"{lib}/{alg}/sign"
    token = node.ok(job_id)["token"]

    assert interop.decode_here(token, verify_set, alg) == node.claims[job_id]


@pytest.mark.parametrize(("lib", "alg"), CASES)
def test_node_token_signed_with_another_key_is_refused_here(
    interop: Any, node: NodeRun, verify_set: KeySet, lib: str, alg: str
) -> None:
    token = node.ok(f"{lib}/{alg}/sign-impostor")["token"]

    interop.refused_here(token, verify_set, alg, InvalidSignature, "invalid_signature")


@pytest.mark.parametrize("lib", LIBS)
def test_node_access_token_verifies_here(
    interop: Any, node: NodeRun, verify_set: KeySet, lib: str
) -> None:
    job_id = f"{lib}/sign-at+jwt"
    token = node.ok(job_id)["token"]

    assert interop.decode_here(token, verify_set, EXTRA_ALG, access=True) == node.claims[job_id]


@pytest.mark.parametrize("lib", LIBS)
def test_node_token_from_another_issuer_is_refused_here(
    interop: Any, node: NodeRun, verify_set: KeySet, lib: str
) -> None:
    token = node.ok(f"{lib}/sign-other-iss")["token"]

    interop.refused_here(token, verify_set, EXTRA_ALG, InvalidIssuer, "invalid_issuer")
