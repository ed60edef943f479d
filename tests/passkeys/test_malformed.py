"""Malformed ceremony answers are refused with a 4xx and a stable code, never a 500: each
member of a real answer replaced by a wrong type, bad base64url, truncated or junk bytes."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from _support.http import assert_problem
from lifecycle.conftest import Server

from ._authenticator import SoftAuthenticator, b64, unb64
from .conftest import Account

JUNK: list[Any] = [None, 7, [], {}, "", "!!!", "a", b64(b"\x00" * 3)]


def mutants(answer: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``answer`` with one member (top level or in ``response``) at a time replaced by
    junk, or its bytes truncated or flipped."""
    for where in (answer, answer["response"]):
        for name in list(where):
            for junk in JUNK:
                mutant = copy.deepcopy(answer)
                target = mutant if where is answer else mutant["response"]
                target[name] = junk
                yield mutant
            if isinstance(where[name], str) and name not in ("type", "authenticatorAttachment"):
                try:
                    raw = unb64(where[name])
                except ValueError:
                    continue
                for changed in (raw[: len(raw) // 2], raw[:-1] + bytes([raw[-1] ^ 1])):
                    mutant = copy.deepcopy(answer)
                    target = mutant if where is answer else mutant["response"]
                    target[name] = b64(changed)
                    yield mutant


def test_malformed_registrations_are_refused(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    """Each mutant answers a fresh challenge, so that the checks past the challenge run."""
    template = authenticator.create(account.post("/auth/passkeys/register/options").json())
    accepted = 0
    for index, _ in enumerate(mutants(template)):
        key = SoftAuthenticator(origin=authenticator.origin, rp_id=authenticator.rp_id)
        fresh = key.create(account.post("/auth/passkeys/register/options").json())
        mutant = list(mutants(fresh))[index]
        answer = account.post("/auth/passkeys/register/verify", json={"credential": mutant})
        if answer.status_code == 201:
            accepted += 1  # a member py_webauthn ignores (transports, clientExtensionResults)
            account.login_with(key)  # the next passkey needs a session that used one
            continue
        assert answer.status_code in (400, 422), (mutant, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["code"] in (
            "passkey_registration_refused",
            "invalid_request",
            "validation_error",
        )
    assert len(server.http.get("/auth/passkeys", headers=account.auth).json()) == accepted


def test_malformed_assertions_are_refused(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    account.add_passkey(authenticator)
    seen = set()
    for mutant in mutants(
        authenticator.get(server.http.post("/auth/passkeys/login/options").json())
    ):
        answer = server.http.post("/auth/passkeys/login/verify", json={"credential": mutant})
        assert answer.status_code in (400, 401, 422), (mutant, answer.text)
        seen.add(answer.json()["code"])
    assert seen <= {"passkey_refused", "invalid_request", "validation_error"}, seen


def test_fresh_malformed_assertions_are_refused(
    server: Server, account: Account, authenticator: SoftAuthenticator
) -> None:
    """Each mutant answers a fresh challenge, so that the checks past the challenge run."""
    account.add_passkey(authenticator)
    template = authenticator.get(server.http.post("/auth/passkeys/login/options").json())
    count = 0
    for index, _ in enumerate(mutants(template)):
        fresh = authenticator.get(server.http.post("/auth/passkeys/login/options").json())
        mutant = list(mutants(fresh))[index]
        answer = server.http.post("/auth/passkeys/login/verify", json={"credential": mutant})
        if answer.status_code == 200:
            continue  # a member py_webauthn ignores (e.g. authenticatorAttachment)
        assert_problem(answer, answer.status_code, answer.json()["code"])
        assert answer.status_code in (400, 401, 422), (mutant, answer.text)
        count += 1
    assert count > 20
