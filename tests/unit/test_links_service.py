"""AccountLinks, the account lifecycle by mailed links, on real services: a migrated SQLite
database, the real argon2id hasher (at test parameters) and mail queue, opened by the
composition root with a FixedClock; the mail goes to a recording EmailSender.

Each refusal of a link has its own exception and code; a refused link costs no password
hash and consumes nothing; the mail limits count per address and per IP; and a
forgot-password request does the same storage work in the request whether or not the
account exists (the difference lives only in the background job).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from sqlalchemy import event

from _support.live import FAST_ARGON2, no_sleep
from authgate.clock import FixedClock
from authgate.errors import (
    EmailTaken,
    LinkTokenExpired,
    LinkTokenRefused,
    LinkTokenRevoked,
    LinkTokenSuperseded,
    LinkTokenUsed,
    LinkTokenWrongPurpose,
    Throttled,
    WeakPassword,
)
from authgate.service.links import AccountLinks, link_digest
from authgate.service.mail import Message
from authgate.settings import Settings
from authgate.storage.base import RefreshRecord, SessionRecord, UserRecord
from authgate.wiring import Services, new_master_key, open_services

pytestmark = pytest.mark.anyio

T0 = 1_700_000_000.0
PASSWORD = "correct horse battery staple 1"
NEW_PASSWORD = "a fresh and long passphrase 2"
MAIL_LIMIT = 3
MAIL_IP_LIMIT = 5


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio only."""
    return "asyncio"


class RecordingSender:
    """An EmailSender that keeps every message it is handed."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def send(self, message: Message) -> None:
        self.messages.append(message)

    async def wait_for(self, count: int, *, timeout: float = 5.0) -> list[Message]:
        """The messages, once there are at least ``count`` of them."""
        async with asyncio.timeout(timeout):
            while len(self.messages) < count:
                await asyncio.sleep(0.005)
        return list(self.messages)


class CountingHasher:
    """Counts the password hashes computed (the argon2id work) through ``hash``."""

    def __init__(self, hash_: Callable[[str], Awaitable[str]]) -> None:
        self._hash = hash_
        self.count = 0

    async def __call__(self, password: str) -> str:
        self.count += 1
        return await self._hash(password)


@dataclasses.dataclass
class World:
    services: Services
    clock: FixedClock
    sender: RecordingSender
    hashes: CountingHasher

    @property
    def links(self) -> AccountLinks:
        return self.services.links

    async def user(self, email: str = "ada@example.com") -> UserRecord:
        return await self.services.accounts.create_user(email, PASSWORD, name="Ada")

    async def fresh(self, user: UserRecord) -> UserRecord:
        got = await self.services.storage.get_user(user.id)
        assert got is not None
        return got


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    env = {
        "AUTHGATE_MASTER_KEY": new_master_key(),
        "AUTHGATE_DATABASE_URL": f"sqlite:///{tmp_path / 'authgate.db'}",
        "AUTHGATE_MAIL_LIMIT": str(MAIL_LIMIT),
        "AUTHGATE_MAIL_IP_LIMIT": str(MAIL_IP_LIMIT),
        **FAST_ARGON2,
    }
    settings = Settings.from_env(env, config_dir=tmp_path)
    clock = FixedClock(T0)
    async with open_services(settings, clock=clock, sleep=no_sleep) as services:
        sender = RecordingSender()
        services.mail.sender = sender
        hashes = CountingHasher(services.hasher.hash)
        monkeypatch.setattr(services.hasher, "hash", hashes)
        yield World(services, clock, sender, hashes)


def token_of(message: Message | None) -> str:
    """The link token in a mail."""
    assert message is not None
    found = re.search(r"token=([^\s\"'&<>]+)", message.text)
    assert found is not None, message.text
    return unquote(found.group(1))


async def reset_token(world: World, user: UserRecord) -> str:
    return token_of(await world.links.reset_mail(user, by="cli"))


async def verify_token(world: World, user: UserRecord) -> str:
    return token_of(await world.links.verification_mail(user))


async def refused(
    call: Awaitable[Any], expected: type[LinkTokenRefused], code: str
) -> LinkTokenRefused:
    """``call`` raises exactly ``expected`` (not a sibling, not the base), with ``code``."""
    with pytest.raises(LinkTokenRefused) as info:
        await call
    assert type(info.value) is expected, repr(info.value)
    assert info.value.code == code
    return info.value


# -- each refusal, its own code ----------------------------------------------------------


@pytest.mark.parametrize("junk", ["not-a-link-token", "", "x" * 500, None, 12345, ["t"]])
async def test_a_junk_token_is_refused_and_costs_no_hash(world: World, junk: Any) -> None:
    user = await world.user()
    live = await reset_token(world, user)
    before = world.hashes.count
    await refused(
        world.links.reset_password(junk, NEW_PASSWORD, ip="192.0.2.1"),
        LinkTokenRefused,
        "invalid_link_token",
    )
    await refused(
        world.links.verify_email(junk, ip="192.0.2.1"), LinkTokenRefused, "invalid_link_token"
    )
    await refused(
        world.links.confirm_email_change(junk, ip="192.0.2.1"),
        LinkTokenRefused,
        "invalid_link_token",
    )
    assert world.hashes.count == before
    assert (await world.fresh(user)).password_hash == user.password_hash
    # The live link was not touched.
    await world.links.reset_password(live, NEW_PASSWORD, ip="192.0.2.1")


async def test_a_used_link_is_refused_as_used(world: World) -> None:
    user = await world.user()
    token = await reset_token(world, user)
    assert await world.links.reset_password(token, NEW_PASSWORD, ip=None) == user.id
    hashed = world.hashes.count
    await refused(
        world.links.reset_password(token, "yet another long passphrase 3", ip=None),
        LinkTokenUsed,
        "link_token_used",
    )
    assert world.hashes.count == hashed  # refused before the hash
    assert await world.services.hasher.verify((await world.fresh(user)).password_hash, NEW_PASSWORD)

    verify = await verify_token(world, await world.fresh(user))
    await world.links.verify_email(verify, ip=None)
    await refused(world.links.verify_email(verify, ip=None), LinkTokenUsed, "link_token_used")


async def test_a_link_after_a_newer_one_is_refused_as_superseded(world: World) -> None:
    user = await world.user()
    older = await reset_token(world, user)
    world.clock.advance(1)
    newer = await reset_token(world, user)
    await refused(
        world.links.reset_password(older, NEW_PASSWORD, ip=None),
        LinkTokenSuperseded,
        "link_token_superseded",
    )
    assert world.hashes.count == 1  # the account's creation only
    await world.links.reset_password(newer, NEW_PASSWORD, ip=None)

    first = await verify_token(world, user)
    await verify_token(world, user)
    await refused(
        world.links.verify_email(first, ip=None), LinkTokenSuperseded, "link_token_superseded"
    )


async def test_a_reset_link_after_a_password_change_is_refused_as_revoked(world: World) -> None:
    user = await world.user()
    token = await reset_token(world, user)
    await world.services.accounts.set_password(user, NEW_PASSWORD, keep_sid=None)
    changed = await world.fresh(user)
    hashed = world.hashes.count
    await refused(
        world.links.reset_password(token, "yet another long passphrase 3", ip=None),
        LinkTokenRevoked,
        "link_token_revoked",
    )
    assert world.hashes.count == hashed
    assert (await world.fresh(user)).password_hash == changed.password_hash


async def test_links_after_an_email_change_are_refused_as_revoked(world: World) -> None:
    user = await world.user()
    verify = await verify_token(world, user)
    reset = await reset_token(world, user)
    await world.links.request_email_change(user, "ada@new.example.com", PASSWORD, ip=None)
    [confirm] = [m for m in await world.sender.wait_for(2) if m.kind == "email_change_confirm"]
    assert confirm.to == "ada@new.example.com"
    assert await world.links.confirm_email_change(token_of(confirm), ip=None) == user.id
    moved = await world.fresh(user)
    assert (moved.email, moved.email_verified, moved.ver) == ("ada@new.example.com", True, 1)

    await refused(world.links.verify_email(verify, ip=None), LinkTokenRevoked, "link_token_revoked")
    await refused(
        world.links.reset_password(reset, NEW_PASSWORD, ip=None),
        LinkTokenRevoked,
        "link_token_revoked",
    )


async def test_an_expired_link_is_refused_as_expired(world: World) -> None:
    user = await world.user()
    token = await reset_token(world, user)
    verify = await verify_token(world, user)
    world.clock.advance(world.services.settings.link_policy().reset_ttl)  # at its expiry
    hashed = world.hashes.count
    await refused(
        world.links.reset_password(token, NEW_PASSWORD, ip=None),
        LinkTokenExpired,
        "link_token_expired",
    )
    assert world.hashes.count == hashed
    # The verification link lives longer.
    await world.links.verify_email(verify, ip=None)
    world.clock.advance(world.services.settings.link_policy().verify_ttl)
    again = await verify_token(world, user)
    world.clock.advance(world.services.settings.link_policy().verify_ttl + 1)
    await refused(world.links.verify_email(again, ip=None), LinkTokenExpired, "link_token_expired")


async def test_a_link_of_another_purpose_is_refused_and_stays_usable(world: World) -> None:
    user = await world.user()
    verify = await verify_token(world, user)
    reset = await reset_token(world, user)
    await refused(
        world.links.reset_password(verify, NEW_PASSWORD, ip=None),
        LinkTokenWrongPurpose,
        "link_token_wrong_purpose",
    )
    await refused(
        world.links.verify_email(reset, ip=None),
        LinkTokenWrongPurpose,
        "link_token_wrong_purpose",
    )
    await refused(
        world.links.confirm_email_change(reset, ip=None),
        LinkTokenWrongPurpose,
        "link_token_wrong_purpose",
    )
    assert world.hashes.count == 1
    # Neither was consumed by the wrong use.
    assert await world.links.verify_email(verify, ip=None) == user.id
    assert await world.links.reset_password(reset, NEW_PASSWORD, ip=None) == user.id


@pytest.mark.parametrize("route", ["reset link", "password change"])
async def test_a_new_password_ends_a_pending_email_change(world: World, route: str) -> None:
    """An email change is authorised by the current password. A thief who has it asks for
    a change to their own address (the link goes to them, a notice to the owner); the owner,
    warned, sets a new password. The thief's pending link must die with the old password,
    or it still hands them the account's address, and with it the next reset link."""
    user = await world.user()
    await world.links.request_email_change(user, "thief@example.net", PASSWORD, ip=None)
    [confirm] = [m for m in await world.sender.wait_for(2) if m.kind == "email_change_confirm"]
    if route == "reset link":
        await world.links.reset_password(await reset_token(world, user), NEW_PASSWORD, ip=None)
    else:
        await world.services.accounts.change_password(
            user, PASSWORD, NEW_PASSWORD, ip=None, keep_sid=None
        )
    await refused(
        world.links.confirm_email_change(token_of(confirm), ip=None),
        LinkTokenRevoked,
        "link_token_revoked",
    )
    assert (await world.fresh(user)).email == "ada@example.com"


async def test_purge_keeps_expired_links_a_week_so_that_a_late_click_reads_expired(
    world: World,
) -> None:
    user = await world.user()
    old = await reset_token(world, user)
    world.clock.advance(8 * 86_400)
    recent = await verify_token(world, user)
    world.clock.advance(2 * 86_400)  # "recent" expired a day ago, "old" over a week ago
    assert await world.links.purge() == 1
    await refused(world.links.verify_email(recent, ip=None), LinkTokenExpired, "link_token_expired")
    await refused(
        world.links.reset_password(old, NEW_PASSWORD, ip=None),
        LinkTokenRefused,
        "invalid_link_token",
    )


async def test_an_email_change_onto_an_address_taken_meanwhile_is_refused_and_stays_usable(
    world: World,
) -> None:
    user = await world.user()
    await world.links.request_email_change(user, "wanted@example.com", PASSWORD, ip=None)
    [confirm] = [m for m in await world.sender.wait_for(2) if m.kind == "email_change_confirm"]
    squatter = await world.user("wanted@example.com")
    with pytest.raises(EmailTaken):
        await world.links.confirm_email_change(token_of(confirm), ip=None)
    assert await world.fresh(user) == user
    assert await world.services.storage.delete_user(squatter.id) is not None
    assert await world.links.confirm_email_change(token_of(confirm), ip=None) == user.id
    assert (await world.fresh(user)).email == "wanted@example.com"


# -- reset_password ----------------------------------------------------------------------


async def test_a_weak_password_consumes_nothing(world: World) -> None:
    user = await world.user()
    token = await reset_token(world, user)
    for weak in ("short", "password123", "aaaaaaaaaaaa"):
        with pytest.raises(WeakPassword):
            await world.links.reset_password(token, weak, ip=None)
    assert world.hashes.count == 1
    stored = await world.services.storage.get_link_token(link_digest(token))
    assert stored is not None
    assert (stored.used_at, stored.ended_at) == (None, None)
    assert (await world.fresh(user)).password_hash == user.password_hash
    assert await world.links.reset_password(token, NEW_PASSWORD, ip=None) == user.id


async def test_a_reset_ends_every_session_through_the_feed_and_signs_no_one_in(
    world: World,
) -> None:
    user = await world.user()
    storage = world.services.storage
    for sid in ("s1", "s2"):
        await storage.create_session(
            SessionRecord(
                sid=sid,
                user_id=user.id,
                client_id="authgate",
                created_at=T0,
                last_used_at=T0,
                expires_at=T0 + 86_400,
            ),
            RefreshRecord(
                digest=link_digest(f"refresh-{sid}"),
                sid=sid,
                created_at=T0,
                idle_expires_at=T0 + 86_400,
            ),
            password_hash=None,
        )
    token = await reset_token(world, user)
    world.clock.advance(5)
    assert await world.links.reset_password(token, NEW_PASSWORD, ip="192.0.2.9") == user.id

    after = await world.fresh(user)
    assert after.email_verified is True
    assert await world.services.hasher.verify(after.password_hash, NEW_PASSWORD)
    sessions = await storage.list_sessions(user.id, live_at=None)
    assert sorted(s.sid for s in sessions) == ["s1", "s2"]
    assert all(s.revoked_at == T0 + 5 for s in sessions)
    assert await world.services.revocations.is_revoked("sid", "s1")
    assert await world.services.revocations.is_revoked("sid", "s2")
    assert await storage.list_sessions(user.id, live_at=T0 + 5) == []


async def test_concurrent_resets_with_one_link_have_one_winner(world: World) -> None:
    user = await world.user()
    token = await reset_token(world, user)
    passwords = [f"racing passphrase number {i:02d}" for i in range(10)]
    results = await asyncio.gather(
        *(world.links.reset_password(token, p, ip=None) for p in passwords),
        return_exceptions=True,
    )
    winners = [p for p, r in zip(passwords, results, strict=True) if r == user.id]
    assert len(winners) == 1, results
    losers = [r for r in results if r != user.id]
    assert all(type(r) is LinkTokenUsed for r in losers), losers
    stored = (await world.fresh(user)).password_hash
    assert await world.services.hasher.verify(stored, winners[0])


# -- mail limits -------------------------------------------------------------------------


async def test_send_limit_over_an_address_answers_alike_and_sends_nothing(world: World) -> None:
    """Over an address's limit the caller gets the same answer (no 429 that an anonymous
    caller could use to lock the owner out of their own mail), and no job runs."""
    await world.user()
    jobs = world.services.jobs
    for address in ("ada@example.com", "nobody@example.com"):
        for i in range(MAIL_LIMIT):
            await world.links.forgot_password(address, ip=f"198.51.100.{i}")
            assert jobs.pending == 1
            await jobs.drain()
        await world.links.forgot_password(address, ip="198.51.100.200")
        assert jobs.pending == 0
        # The address is folded before it is counted.
        await world.links.forgot_password(address.upper(), ip="198.51.100.201")
        assert jobs.pending == 0
    # Another address is not held back, and the window passes.
    await world.links.forgot_password("other@example.com", ip="198.51.100.202")
    assert jobs.pending == 1
    await jobs.drain()
    world.clock.advance(3600)
    await world.links.forgot_password("ada@example.com", ip="198.51.100.203")
    assert jobs.pending == 1
    await jobs.drain()


async def test_send_limit_throttles_per_ip(world: World) -> None:
    for i in range(MAIL_IP_LIMIT):
        await world.links.forgot_password(f"u{i}@example.com", ip="203.0.113.7")
    with pytest.raises(Throttled) as info:
        await world.links.forgot_password("fresh@example.com", ip="203.0.113.7")
    retry = info.value.context["retry_after"]
    assert 0 < retry <= 3601
    # The IP limit is shared by the other mail-sending requests.
    with pytest.raises(Throttled):
        await world.links.request_verification("fresh2@example.com", ip="203.0.113.7")
    await world.links.forgot_password("fresh@example.com", ip="203.0.113.8")
    world.clock.advance(retry)
    await world.links.forgot_password("fresh3@example.com", ip="203.0.113.7")
    await world.services.jobs.drain()


async def test_requests_refused_at_the_ip_limit_do_not_use_up_an_address_budget(
    world: World,
) -> None:
    """One IP over its limit must not go on spending other addresses' budgets: each
    refused request would otherwise count against the victim's address, so that a single
    IP could keep any number of accounts from getting a reset link."""
    for i in range(MAIL_IP_LIMIT):
        await world.links.forgot_password(f"u{i}@example.com", ip="203.0.113.66")
    for _ in range(MAIL_LIMIT + 2):
        with pytest.raises(Throttled):
            await world.links.forgot_password("victim@example.com", ip="203.0.113.66")
    # The victim, from their own IP, still gets their link.
    await world.links.forgot_password("victim@example.com", ip="198.51.100.77")
    await world.services.jobs.drain()


# -- forgot-password: the same work for a known and an unknown address -------------------


class RecordingStore:
    """The store, with the name of every call made through it recorded."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return await attr(*args, **kwargs)

        return call


async def test_forgot_password_does_the_same_storage_work_in_the_request(world: World) -> None:
    await world.user("known@example.com")
    services = world.services
    store = RecordingStore(services.storage)
    links = dataclasses.replace(
        services.links,
        store=store,
        limit=dataclasses.replace(services.links.limit, counters=store),
    )
    statements: list[str] = []

    def on_statement(*args: Any) -> None:
        statements.append(re.sub(r"\s+", " ", str(args[2])))

    # Every engine the store runs statements on (on SQLite, its own synchronous ones).
    storage: Any = services.storage
    engines = [storage.engine.sync_engine, *storage.sqlite_engines]
    for engine in engines:
        event.listen(engine, "before_cursor_execute", on_statement)
    try:
        seen: dict[str, tuple[list[str], list[str], list[str]]] = {}
        for n, address in enumerate(["known@example.com", "unknown@example.com"]):
            store.calls.clear()
            statements.clear()
            await links.forgot_password(address, ip=f"192.0.2.{n + 1}")
            # The job is spawned, not run yet: this is what the request did.
            in_request = (list(store.calls), list(statements))
            assert services.jobs.pending == 1
            await services.jobs.drain()
            seen[address] = (*in_request, list(store.calls[len(in_request[0]) :]))
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", on_statement)

    known_calls, known_sql, known_job = seen["known@example.com"]
    unknown_calls, unknown_sql, unknown_job = seen["unknown@example.com"]
    assert known_calls == unknown_calls == ["hit", "hit"]
    assert known_sql == unknown_sql
    assert known_sql  # the recorder saw the statements
    # The recorder sees the job's calls too: the known account's link is made there.
    assert "issue_link_token" in known_job
    assert "issue_link_token" not in unknown_job
    [mail] = await world.sender.wait_for(1)
    assert (mail.kind, mail.to) == ("reset_password", "known@example.com")
    assert world.hashes.count == 1  # the account's creation only: forgot hashes nothing


async def test_forgot_password_mails_a_working_link_to_a_known_address_only(
    world: World,
) -> None:
    user = await world.user()
    await world.links.forgot_password("  ADA@example.com ", ip="192.0.2.1")
    await world.links.forgot_password("nobody@example.com", ip="192.0.2.1")
    await world.services.jobs.drain()
    [mail] = await world.sender.wait_for(1)
    await asyncio.sleep(0.05)
    assert len(world.sender.messages) == 1
    assert mail.to == "ada@example.com"
    assert await world.links.reset_password(token_of(mail), NEW_PASSWORD, ip=None) == user.id


Call = Callable[[AccountLinks, str, str], Awaitable[None]]
QUIET_REQUESTS: dict[str, tuple[Call, str]] = {
    # name: (the request, the address whose background job makes a link)
    "resend-verification": (
        lambda links, address, ip: links.request_verification(address, ip=ip),
        "known@example.com",  # the account's verification link
    ),
    "enumeration-safe registration": (
        lambda links, address, ip: links.register_quietly(address, PASSWORD, name=None, ip=ip),
        "unknown@example.com",  # the new account's verification link
    ),
}


@pytest.mark.parametrize("name", sorted(QUIET_REQUESTS))
async def test_the_other_anonymous_requests_do_the_same_work_in_the_request(
    world: World, name: str
) -> None:
    request, linked = QUIET_REQUESTS[name]
    await world.user("known@example.com")
    services = world.services
    store = RecordingStore(services.storage)
    links = dataclasses.replace(
        services.links,
        store=store,
        limit=dataclasses.replace(services.links.limit, counters=store),
    )
    seen: dict[str, tuple[list[str], int, list[str]]] = {}
    for n, address in enumerate(["known@example.com", "unknown@example.com"]):
        store.calls.clear()
        hashed = world.hashes.count
        await request(links, address, f"192.0.2.{n + 1}")
        in_request = (list(store.calls), world.hashes.count - hashed)
        assert services.jobs.pending == 1
        await services.jobs.drain()
        seen[address] = (*in_request, store.calls[len(in_request[0]) :])
    known, unknown = seen["known@example.com"], seen["unknown@example.com"]
    assert known[:2] == unknown[:2]
    assert known[0] == ["hit", "hit"]
    # Only the enumeration-safe registration hashes in the request, on both paths alike.
    assert known[1] == (1 if name == "enumeration-safe registration" else 0)
    # The recorder sees the job's calls too.
    for address, (_, _, job) in seen.items():
        assert ("issue_link_token" in job) == (address == linked), (address, job)
