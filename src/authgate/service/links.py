"""The account lifecycle by mail: email verification, password reset and email change.

Each flow mails a single-use link: 256 random bits, stored only as their SHA-256 digest,
bound to one purpose and one address, ended by a newer link of its kind and, for a reset,
by any password change. Using a link and applying it (the password, the address) is one
transaction in the store.

The two anonymous requests (forgot-password, resend-verification) and the enumeration-safe
registration do the same work in the request whatever the address: they validate, count
the attempt on the address and the IP, and hand the rest to a background job. Whether an
account exists decides only what that job mails, after the answer has gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import KW_ONLY, dataclass
from typing import Final, Protocol

from authgate.clock import Clock
from authgate.errors import (
    Conflict,
    EmailTaken,
    InvalidRequest,
    LinkTokenExpired,
    LinkTokenRefused,
    LinkTokenRevoked,
    LinkTokenSuperseded,
    LinkTokenUsed,
    LinkTokenWrongPurpose,
    MailError,
    NotFound,
    RegistrationClosed,
    Throttled,
)
from authgate.passwords import PasswordHasher, check_new_password
from authgate.service.accounts import (
    Accounts,
    check_display_name,
    lookup_email,
    normalize_email,
)
from authgate.service.audit import Audit
from authgate.service.mail import MailQueue, MailTemplates, Message
from authgate.service.revocation import Revocations
from authgate.storage.base import (
    Counters,
    CounterState,
    LinkPurpose,
    LinkRedemption,
    LinkTokenRecord,
    LinkTokenStore,
    UserRecord,
    UserStore,
)

log = logging.getLogger("authgate.links")

TOKEN_BYTES: Final = 32  # 256 bits
_RANDOM: Final = secrets.SystemRandom()
# How long a link's record outlives its expiry, so that a late click is told "expired".
KEEP_EXPIRED_S: Final = 7 * 86400.0
_MAX_TOKEN_CHARS: Final = 128


def link_digest(token: str) -> str:
    """The stored form of a link token: SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _ttl_text(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = max(1, int(seconds // 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkPolicy:
    """Lifetimes of the links, and the limits on mail a caller can trigger: per address
    and per IP, ``send_limit`` and ``send_ip_limit`` requests in ``send_window`` seconds."""

    verify_ttl: float = 86400.0
    reset_ttl: float = 1800.0
    email_change_ttl: float = 3600.0
    send_window: float = 3600.0
    send_limit: int = 5
    send_ip_limit: int = 50

    def ttl(self, purpose: LinkPurpose) -> float:
        """The lifetime of a link of ``purpose``."""
        return {
            "verify_email": self.verify_ttl,
            "reset_password": self.reset_ttl,
            "change_email": self.email_change_ttl,
        }[purpose]


@dataclass(frozen=True, eq=False, repr=False)
class SendLimit:
    """Fixed-window limits in the shared counters: on requests that send mail, per address
    (or account) and per IP, and on refused links per IP."""

    counters: Counters
    _: KW_ONLY
    window: float
    per_subject: int
    per_ip: int
    clock: Clock

    def _over(self, state: CounterState, limit: int, now: float) -> Throttled | None:
        if state.count <= limit:
            return None
        return Throttled("too many requests", retry_after=self._retry(state, now))

    async def allow(self, kind: str, subject: str, ip: str | None) -> bool:
        """Count one mail-sending request of ``kind`` for ``subject`` and ``ip``: Throttled
        when the IP is over its limit; False (send nothing) when the subject is. An
        anonymous caller then gets the same answer as any other, and cannot lock the
        owner of an address out of their own mail."""
        now = self.clock.now()
        if ip:
            state = await self.counters.hit(f"mail-ip:{ip}", now=now, window=self.window)
            refused = self._over(state, self.per_ip, now)
            if refused is not None:
                raise refused
        state = await self.counters.hit(f"mail:{kind}:{subject}", now=now, window=self.window)
        return state.count <= self.per_subject

    async def ip_budget(self, kind: str, ip: str | None, limit: int) -> None:
        """Count one anonymous request of ``kind`` from ``ip``: Throttled over ``limit`` in
        the window."""
        if ip:
            now = self.clock.now()
            state = await self.counters.hit(f"{kind}-ip:{ip}", now=now, window=self.window)
            refused = self._over(state, limit, now)
            if refused is not None:
                raise refused

    async def check_refusals(self, ip: str | None) -> None:
        """Throttled while ``ip`` is over its limit of refused links."""
        if ip:
            now = self.clock.now()
            state = await self.counters.peek(f"link-refused:{ip}", now=now, window=self.window)
            if state.count >= self.per_ip:
                raise Throttled("too many refused links", retry_after=self._retry(state, now))

    async def refused(self, ip: str | None) -> None:
        """Count one refused link of ``ip``."""
        if ip:
            await self.counters.hit(f"link-refused:{ip}", now=self.clock.now(), window=self.window)

    def _retry(self, state: CounterState, now: float) -> int:
        return max(1, int(state.window_start + self.window - now) + 1)


class Jobs:
    """Background work that must not hold up a response: at most ``limit`` at once (the
    rest is dropped and audited), each failure logged and audited, all awaited on close.

    Each job starts after a random pause of ``jitter`` seconds (on the injected sleep):
    after its request's answer has gone, and at no time an observer can line up with the
    requests that follow, so the work a job does (or not) does not show in their timing."""

    def __init__(
        self,
        *,
        audit: Audit,
        limit: int = 256,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: tuple[float, float] = (0.05, 0.5),
    ) -> None:
        self._audit = audit
        self._limit = limit
        self._sleep = sleep
        self._jitter = jitter
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def pending(self) -> int:
        """Jobs running now."""
        return len(self._tasks)

    def spawn(self, name: str, job: Callable[[], Awaitable[None]]) -> bool:
        """Run ``job`` in the background; False (and ``job_dropped`` audited) when closed
        or at the limit."""
        if self._closed or len(self._tasks) >= self._limit:
            self._track(self._record("job_dropped", name))
            return False
        self._track(self._run(name, job))
        return True

    def _track(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, name: str, job: Callable[[], Awaitable[None]]) -> None:
        try:
            await self._sleep(_RANDOM.uniform(*self._jitter))
            await job()
        except Exception as exc:
            log.exception("the background job %s failed", name)
            await self._record("job_failed", name, error=type(exc).__name__)

    async def _record(self, event: str, name: str, **detail: str) -> None:
        try:
            await self._audit.record(event, job=name, **detail)
        except Exception:
            log.exception("cannot audit %s", event)

    async def drain(self, *, deadline: float = 10.0) -> None:
        """Wait (up to ``deadline`` seconds) for the running jobs."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=deadline)

    async def close(self, *, deadline: float = 10.0) -> None:
        """Take no more jobs; wait for the running ones, then cancel what is left."""
        self._closed = True
        await self.drain(deadline=deadline)
        for task in set(self._tasks):
            task.cancel()
        for task in set(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


class _LinkStorage(UserStore, LinkTokenStore, Protocol):
    """What the lifecycle needs of the store."""


@dataclass(frozen=True, eq=False, repr=False)
class AccountLinks:
    """Verification, reset and email change, by mailed single-use links."""

    store: _LinkStorage
    _: KW_ONLY
    accounts: Accounts
    hasher: PasswordHasher
    mail: MailQueue
    templates: MailTemplates
    revocations: Revocations
    audit: Audit
    limit: SendLimit
    jobs: Jobs
    clock: Clock
    policy: LinkPolicy

    # --- links ---------------------------------------------------------------------------

    async def purge(self) -> int:
        """Delete the records of links expired for over a week; how many."""
        return await self.store.purge_link_tokens(before=self.clock.now() - KEEP_EXPIRED_S)

    async def _issue(self, user: UserRecord, purpose: LinkPurpose, email: str) -> str | None:
        """A new link token (the older ones of its kind end); None if the user is gone."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = self.clock.now()
        record = LinkTokenRecord(
            digest=link_digest(token),
            purpose=purpose,
            user_id=user.id,
            email=email,
            created_at=now,
            expires_at=now + self.policy.ttl(purpose),
        )
        if not await self.store.issue_link_token(record):
            return None
        return token

    def _render(self, kind: str, user: UserRecord | None, *, to: str, **context: object) -> Message:
        """A mail; ``user`` None leaves the name out (a mail to an address nobody has
        proved yet must not carry text that whoever registered it chose)."""
        return self.templates.render(kind, to=to, name=user.name if user else None, **context)

    async def verification_mail(self, user: UserRecord) -> Message | None:
        """A new verification link for the user's address, as a mail; None if the user is
        gone. The caller sends it (:meth:`MailQueue.enqueue`, or the sender at once)."""
        token = await self._issue(user, "verify_email", user.email)
        if token is None:
            return None
        await self.audit.record("verification_sent", user_id=user.id)
        return self._render(
            "verify_email",
            None,
            to=user.email,
            token=token,
            ttl=_ttl_text(self.policy.verify_ttl),
        )

    async def reset_token(self, user: UserRecord, *, by: str) -> str:
        """A new password-reset token (the older one ends); NotFound if the user is gone.
        ``by`` names who asked (``user``, ``admin``, ``cli``) for the audit log."""
        token = await self._issue(user, "reset_password", user.email)
        if token is None:
            raise NotFound("no such user")
        await self.audit.record("password_reset_sent", user_id=user.id, by=by)
        return token

    def reset_message(self, user: UserRecord, token: str) -> Message:
        """The mail that carries a reset token."""
        return self._render(
            "reset_password",
            user,
            to=user.email,
            token=token,
            ttl=_ttl_text(self.policy.reset_ttl),
        )

    async def reset_mail(self, user: UserRecord, *, by: str) -> Message:
        """A new password-reset link, as a mail; NotFound if the user is gone."""
        return self.reset_message(user, await self.reset_token(user, by=by))

    async def _send(self, message: Message | None) -> None:
        if message is not None:
            self.mail.enqueue(message)

    async def _classify(self, token: object, purpose: LinkPurpose) -> LinkTokenRefused:
        """Why a token that did not redeem is refused."""
        if not isinstance(token, str) or not 0 < len(token) <= _MAX_TOKEN_CHARS:
            return LinkTokenRefused("not a link token")
        found = await self.store.get_link_token(link_digest(token))
        if found is None:
            return LinkTokenRefused("unknown link token")
        if found.purpose != purpose:
            return LinkTokenWrongPurpose(f"a {found.purpose} link used for {purpose}")
        if found.used_at is not None:
            return LinkTokenUsed("the link was used already")
        if found.ended_by == "superseded":
            return LinkTokenSuperseded("a newer link was sent")
        if found.ended_at is not None:
            return LinkTokenRevoked(f"the link ended: {found.ended_by}")
        if found.expires_at <= self.clock.now():
            return LinkTokenExpired("the link expired")
        # Live now, yet it did not redeem: the account changed under it.
        return LinkTokenRevoked("the account no longer matches the link")

    async def _refuse(
        self, token: object, purpose: LinkPurpose, *, ip: str | None
    ) -> LinkTokenRefused:
        """Classify, count (per IP) and audit a refused link."""
        refusal = await self._classify(token, purpose)
        await self.limit.refused(ip)
        await self.audit.record("link_refused", ip=ip, purpose=purpose, code=refusal.code)
        return refusal

    async def _redeem(
        self,
        token: object,
        purpose: LinkPurpose,
        *,
        ip: str | None,
        password_hash: str | None = None,
    ) -> LinkRedemption:
        await self.limit.check_refusals(ip)
        redeemed = None
        if isinstance(token, str) and 0 < len(token) <= _MAX_TOKEN_CHARS:
            redeemed = await self.store.redeem_link_token(
                link_digest(token),
                purpose=purpose,
                now=self.clock.now(),
                password_hash=password_hash,
            )
        if redeemed is None:
            raise await self._refuse(token, purpose, ip=ip)
        return redeemed

    async def _live_token(self, token: object, purpose: LinkPurpose, *, ip: str | None) -> None:
        """Refuse (with its reason) a token that is not a live one of ``purpose``, before
        paying for a password hash."""
        await self.limit.check_refusals(ip)
        if isinstance(token, str) and 0 < len(token) <= _MAX_TOKEN_CHARS:
            found = await self.store.get_link_token(link_digest(token))
            if (
                found is not None
                and found.purpose == purpose
                and found.used_at is None
                and found.ended_at is None
                and found.expires_at > self.clock.now()
            ):
                return
        raise await self._refuse(token, purpose, ip=ip)

    # --- verification --------------------------------------------------------------------

    async def send_verification(self, user: UserRecord) -> None:
        """Mail a verification link to the user's address (through the queue), unless it
        is verified already. A mail that cannot be rendered is logged and audited, never
        raised: the account stays as it is, and the link can be asked for again."""
        if user.email_verified:
            return
        try:
            await self._send(await self.verification_mail(user))
        except MailError as exc:
            log.error("the verification mail cannot be rendered: %s", exc.reason)
            await self.audit.record(
                "mail_failed", user_id=user.id, kind="verify_email", error=exc.code
            )

    async def resend_verification(self, user: UserRecord, *, ip: str | None) -> None:
        """A signed-in user's resend: Throttled over the limits."""
        if not await self.limit.allow("verify", user.id, ip):
            raise Throttled("too many verification mails", retry_after=int(self.limit.window))
        await self.send_verification(user)

    async def request_verification(self, email: str, *, ip: str | None) -> None:
        """Anonymous resend: the same work for any address; the link goes out in the
        background only to an account whose address is not verified yet (and not past
        its mail limit)."""
        address = lookup_email(email)
        if not await self.limit.allow("verify", address, ip):
            return

        async def job() -> None:
            user = await self.store.get_user_by_email(address)
            if user is not None and not user.disabled:
                await self.send_verification(user)

        self.jobs.spawn("verification", job)

    async def verify_email(self, token: object, *, ip: str | None) -> str:
        """Mark the address of the link verified; the user id. LinkTokenRefused (a
        subclass with its reason) if the link is not live."""
        redeemed = await self._redeem(token, "verify_email", ip=ip)
        await self.audit.record("email_verified", user_id=redeemed.token.user_id, ip=ip)
        return redeemed.token.user_id

    async def mark_verified(self, user_id: str, *, by: str) -> None:
        """Mark a user's address verified without a link (an admin); NotFound if none."""
        if not await self.store.set_email_verified(user_id, True):
            raise NotFound("no such user")
        await self.audit.record("email_verified", user_id=user_id, by=by)

    # --- registration --------------------------------------------------------------------

    async def self_register(
        self, email: str, password: str, *, name: str | None, ip: str | None, quiet: bool
    ) -> UserRecord | None:
        """Self-service registration, for every front end (``/auth/register``, the hosted
        page). With ``quiet`` (enumeration-safe): ``register_quietly``, and None. Otherwise
        the attempt counts against the mail limits, the account is created (RegistrationClosed,
        EmailTaken, WeakPassword...) and mailed its verification link; the user when it may
        log in now, None when it must verify its address first."""
        if quiet:
            if not self.accounts.registration_open:
                raise RegistrationClosed("registration is closed")
            await self.register_quietly(email, password, name=name, ip=ip)
            return None
        # Registration mails the address: it counts against the IP's mail limit.
        await self.limit.allow("register", email, ip)
        user = await self.accounts.create_user(email, password, name=name, self_service=True)
        await self.send_verification(user)
        return None if self.accounts.require_verified_email else user

    async def register_quietly(
        self, email: str, password: str, *, name: str | None, ip: str | None
    ) -> None:
        """Enumeration-safe registration: check the input, count the attempt, hash the
        password (in the request, whatever the address: the hashing pool's back-pressure
        reaches the caller as 503, never a lost account), answer; in the background,
        create the account and mail its verification link, or, when the address has an
        account, mail its owner instead. The caller answers 202 alike."""
        address = normalize_email(email)
        check_new_password(password)
        check_display_name(name)
        allowed = await self.limit.allow("register", address, ip)
        password_hash = await self.hasher.hash(password)
        if not allowed:
            return

        async def job() -> None:
            try:
                user = await self.accounts.create_user(
                    address,
                    password,
                    name=name,
                    self_service=True,
                    password_hash=password_hash,
                )
            except EmailTaken:
                owner = await self.store.get_user_by_email(address)
                if owner is not None:
                    await self.audit.record("registration_on_taken_email", user_id=owner.id, ip=ip)
                    await self._send(self._render("account_exists", owner, to=owner.email))
                return
            await self.send_verification(user)

        self.jobs.spawn("registration", job)

    # --- password reset ------------------------------------------------------------------

    async def forgot_password(self, email: str, *, ip: str | None) -> None:
        """Anonymous reset request: the same work for any address (the caller always
        answers 202); the link goes out in the background only to an existing, enabled
        account. InvalidRequest for a malformed address, Throttled over the limits."""
        address = lookup_email(email)
        if not await self.limit.allow("reset", address, ip):
            return

        async def job() -> None:
            user = await self.store.get_user_by_email(address)
            if user is None or user.disabled:
                await self.audit.record("password_reset_unknown", ip=ip)
                return
            with contextlib.suppress(NotFound):  # deleted meanwhile
                await self._send(await self.reset_mail(user, by="user"))

        self.jobs.spawn("forgot_password", job)

    async def reset_password(self, token: object, new_password: str, *, ip: str | None) -> str:
        """Set the password from a reset link: the link is used, the password stored, the
        address marked verified (the link reached it) and every session ended (at each
        guard through the feed), all at once. It signs no one in. The user id."""
        check_new_password(new_password)
        await self._live_token(token, "reset_password", ip=ip)
        new_hash = await self.hasher.hash(new_password)
        redeemed = await self._redeem(token, "reset_password", ip=ip, password_hash=new_hash)
        user_id = redeemed.token.user_id
        for sid in redeemed.ended_sids:
            await self.revocations.revoke_sid(sid)
        await self.audit.record("password_reset", user_id=user_id, ip=ip)
        await self.audit.record(
            "sessions_revoked",
            user_id=user_id,
            count=len(redeemed.ended_sids),
            reason="password_reset",
        )
        return user_id

    # --- email change --------------------------------------------------------------------

    async def request_email_change(
        self, user: UserRecord, new_email: str, current_password: str, *, ip: str | None
    ) -> None:
        """Check the password (through the login throttle), then mail a confirmation link
        to the new address and a notice to the old one. Nothing changes until the link is
        used. When the new address has an account, its owner gets a notice instead of a
        link, and the caller's answer is the same."""
        address = normalize_email(new_email)
        if address == user.email:
            raise InvalidRequest("that is the current address", field="new_email")
        if not await self.limit.allow("email_change", user.id, ip):
            raise Throttled("too many email changes", retry_after=int(self.limit.window))
        await self.accounts.verify_password(user, current_password, ip=ip)
        owner = await self.store.get_user_by_email(address)
        if owner is not None:
            await self.audit.record("email_change_on_taken_email", user_id=user.id, ip=ip)
            await self._send(self._render("account_exists", owner, to=owner.email))
        else:
            token = await self._issue(user, "change_email", address)
            if token is None:
                raise NotFound("no such user")
            await self.audit.record("email_change_requested", user_id=user.id, ip=ip)
            await self._send(
                self._render(
                    "email_change_confirm",
                    user,
                    to=address,
                    token=token,
                    ttl=_ttl_text(self.policy.email_change_ttl),
                )
            )
        await self._send(
            self._render("email_change_notice", user, to=user.email, new_email=address)
        )

    async def confirm_email_change(self, token: object, *, ip: str | None) -> str:
        """Make the link's address the account's verified address; the user's access
        tokens die (a refresh carries the new address). EmailTaken if another account took
        the address meanwhile (the link stays usable). The user id."""
        try:
            redeemed = await self._redeem(token, "change_email", ip=ip)
        except Conflict as exc:
            raise EmailTaken("an account with this email exists") from exc
        user_id = redeemed.token.user_id
        if redeemed.ver is not None:
            await self.revocations.revoke_user(user_id, ver=redeemed.ver)
        await self.audit.record("email_changed", user_id=user_id, ip=ip)
        return user_id


__all__ = [
    "AccountLinks",
    "Jobs",
    "LinkPolicy",
    "SendLimit",
    "link_digest",
]
