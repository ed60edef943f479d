"""Login throttling: a growing delay, then 429 with Retry-After, per account and per IP."""

from __future__ import annotations

import httpx

from _support.http import PASSWORD, assert_problem, new_email

from .conftest import ServerFactory
from .server import LiveServer

WRONG = "not the password 99"
GROWING = [0.25, 0.5, 1.0, 2.0, 4.0]


def attempt(live: LiveServer, email: str, password: str = WRONG) -> httpx.Response:
    return live.http.post("/auth/login", json={"email": email, "password": password})


def test_growing_delay_from_the_5th_failure(server: LiveServer) -> None:
    email = new_email()
    server.register(email)
    for n in range(1, 10):  # failures 1..9: refused, delayed from the 5th on
        assert_problem(attempt(server, email), 401, "invalid_credentials")
        assert server.sleeps.delays == GROWING[: max(0, n - 4)], f"after failure {n}"


def test_429_from_the_10th_attempt(server: LiveServer) -> None:
    """API.md: a growing delay from the 5th failure, then 429 from the 10th: after nine
    failures the 10th attempt is locked, whatever the password."""
    email = new_email()
    server.register(email)
    for _ in range(9):
        assert_problem(attempt(server, email), 401, "invalid_credentials")
    r = attempt(server, email, PASSWORD)
    assert_problem(r, 429, "too_many_attempts")
    assert 1 <= int(r.headers["retry-after"]) <= 901


def test_locked_account_refuses_the_right_password_until_the_window_passes(
    server: LiveServer,
) -> None:
    email = new_email()
    server.register(email)
    for _ in range(10):
        attempt(server, email)
    delays = list(server.sleeps.delays)
    assert delays == GROWING
    for password in (WRONG, PASSWORD, PASSWORD):
        r = attempt(server, email, password)
        assert_problem(r, 429, "too_many_attempts")
        retry_after = int(r.headers["retry-after"])
        assert retry_after == int(server.settings.throttle_window) + 1
    assert server.sleeps.delays == delays  # a locked attempt is refused, not delayed

    server.clock.advance(retry_after - 2)  # still inside the window
    r = attempt(server, email, PASSWORD)
    assert_problem(r, 429, "too_many_attempts")
    assert int(r.headers["retry-after"]) == 2
    server.clock.advance(2)
    body = server.login(email)
    assert body["access_token"]


def test_lock_is_per_account(server: LiveServer) -> None:
    locked = new_email()
    other = new_email()
    server.register(locked)
    server.register(other)
    for _ in range(12):
        attempt(server, locked)
    assert_problem(attempt(server, locked, PASSWORD), 429, "too_many_attempts")
    server.login(other)  # the same IP, another account: fine under the IP limit


def test_locked_unknown_account_answers_like_a_known_one(server: LiveServer) -> None:
    known = new_email()
    server.register(known)
    unknown = new_email()
    for _ in range(11):
        attempt(server, known)
        attempt(server, unknown)
    a, b = attempt(server, known), attempt(server, unknown)
    assert_problem(a, 429, "too_many_attempts")
    assert_problem(b, 429, "too_many_attempts")
    assert a.content == b.content
    assert a.headers["retry-after"] == b.headers["retry-after"]


def test_success_resets_the_account_counter(server: LiveServer) -> None:
    email = new_email()
    server.register(email)
    for _ in range(4):
        attempt(server, email)
    server.login(email)
    for _ in range(4):
        attempt(server, email)
    assert server.sleeps.delays == []  # never reached the 5th failure in a row


def test_window_slides_past_old_failures(server: LiveServer) -> None:
    email = new_email()
    server.register(email)
    for _ in range(9):
        attempt(server, email)
    server.clock.advance(server.settings.throttle_window + 1)
    server.sleeps.delays.clear()
    assert_problem(attempt(server, email), 401, "invalid_credentials")
    assert server.sleeps.delays == []
    server.login(email)


def test_per_ip_limit(make_server: ServerFactory) -> None:
    live = make_server({"AUTHGATE_THROTTLE_IP_LIMIT": "3"})
    victim = new_email()
    live.register(victim)
    for _ in range(3):  # three failures, each on a different account
        assert_problem(attempt(live, new_email()), 401, "invalid_credentials")
    r = attempt(live, victim, PASSWORD)
    assert_problem(r, 429, "too_many_attempts")
    assert 1 <= int(r.headers["retry-after"]) <= 901
    assert live.sleeps.delays == []
    live.clock.advance(live.settings.throttle_window + 1)
    live.login(victim)


def test_forwarded_for_is_ignored_without_trusted_proxies(make_server: ServerFactory) -> None:
    live = make_server({"AUTHGATE_THROTTLE_IP_LIMIT": "2"})
    for n in range(2):
        live.http.post(
            "/auth/login",
            json={"email": new_email(), "password": WRONG},
            headers={"X-Forwarded-For": f"203.0.113.{n}"},
        )
    r = live.http.post(
        "/auth/login",
        json={"email": new_email(), "password": WRONG},
        headers={"X-Forwarded-For": "203.0.113.77"},
    )
    assert_problem(r, 429, "too_many_attempts")


def test_forwarded_for_is_believed_from_a_trusted_proxy(make_server: ServerFactory) -> None:
    live = make_server({"AUTHGATE_THROTTLE_IP_LIMIT": "2", "AUTHGATE_TRUSTED_PROXIES": "127.0.0.1"})
    for _ in range(2):
        live.http.post(
            "/auth/login",
            json={"email": new_email(), "password": WRONG},
            headers={"X-Forwarded-For": "203.0.113.1"},
        )
    blocked = live.http.post(
        "/auth/login",
        json={"email": new_email(), "password": WRONG},
        headers={"X-Forwarded-For": "203.0.113.1"},
    )
    assert_problem(blocked, 429, "too_many_attempts")
    other = live.http.post(
        "/auth/login",
        json={"email": new_email(), "password": WRONG},
        headers={"X-Forwarded-For": "203.0.113.2"},
    )
    assert_problem(other, 401, "invalid_credentials")
