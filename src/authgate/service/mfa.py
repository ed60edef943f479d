"""Multi-factor authentication: TOTP (RFC 6238, with pyotp), recovery codes, passkeys as
a second factor (``authgate.service.passkeys``), and the two-step login.

The first step (the password) never opens a session when the user has a second factor: it
answers an ``mfa_token``, a JWT of its own type (``mfa+jwt``) and audience (the issuer's
``/auth/login/mfa``), so that no guard and no endpoint takes it for an access token. It
lives five minutes, names a server-side record that is used once, and carries the password
hash that was checked: the session opens only while that is still the stored hash.

A TOTP code is accepted within one time step either side of now, and only for a step later
than the last one accepted (a compare-and-set), so no code works twice. Second-factor
failures have a throttle of their own, per account and per IP. TOTP secrets are encrypted
at rest (AES-256-GCM under a subkey of the master key, the user id as associated data);
recovery codes are stored as keyed digests and each works once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any, Final, Protocol

import pyotp
import segno
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from authgate.clock import Clock
from authgate.errors import (
    EmailNotVerified,
    InsufficientUserAuthentication,
    InvalidCredentials,
    InvalidMfaCode,
    InvalidMfaToken,
    InvalidRequest,
    InvalidToken,
    MfaConflict,
    MfaNotEnabled,
    NotFound,
    StorageError,
)
from authgate.jose import ClaimsPolicy, decode, encode
from authgate.service.accounts import Accounts
from authgate.service.audit import Audit
from authgate.service.keyring import Keyring
from authgate.service.limits import LoginThrottle
from authgate.service.mail import MailQueue, MailTemplates
from authgate.service.passkeys import Passkeys
from authgate.service.sessions import OpenedT, Sessions, TokenPair
from authgate.storage.base import (
    MfaLoginRecord,
    MfaStore,
    PasskeyRecord,
    UserRecord,
    UserStore,
)

MFA_TOKEN_TYPE: Final = "mfa+jwt"  # noqa: S105  (a JWT typ, not a secret)
MFA_TOKEN_TTL: Final = 300
TOTP_STEP: Final = 30
TOTP_DIGITS: Final = 6
TOTP_WINDOW: Final = 1  # steps accepted either side of now
RECOVERY_CODES: Final = 10
FRESH_LOGIN_S: Final = 600  # turning a factor on without the password needs a login this recent
PENDING_TTL_S: Final = 600  # an enrolment not confirmed by then starts over
MFA_TOKEN_ATTEMPTS: Final = 3  # wrong second factors before an mfa_token dies
_RECOVERY_ALPHABET: Final = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
_RECOVERY_LEN: Final = 12  # 59 bits
_NONCE: Final = 12

# RFC 8176 method references.
AMR_PASSWORD: Final = "pwd"  # noqa: S105  (an RFC 8176 name, not a secret)
AMR_OTP: Final = "otp"
AMR_MFA: Final = "mfa"


class OtpThrottle(LoginThrottle):
    """The throttle of second-factor checks: the login throttle's rules on counters of
    their own, apart from password failures."""

    prefixes = ("otp:acct", "otp:ip")


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    """What the user needs to add the secret to an authenticator app."""

    secret: str
    otpauth_uri: str
    qr_svg: str


@dataclass(frozen=True, slots=True)
class MfaStatus:
    """The user's second factors, as ``/auth/me`` shows them."""

    totp: bool
    passkeys: int
    recovery_codes_left: int

    @property
    def enabled(self) -> bool:
        """True when a login needs a second factor."""
        return self.totp or self.passkeys > 0


@dataclass(frozen=True, slots=True)
class LoginFacts:
    """How and when the caller's session logged in (its access token's ``amr``,
    ``auth_time`` and ``sid``)."""

    sid: str | None
    amr: tuple[str, ...]
    auth_time: float | None

    @classmethod
    def of(cls, claims: Mapping[str, Any]) -> LoginFacts:
        """The facts of verified access-token claims."""
        amr = claims.get("amr")
        auth_time = claims.get("auth_time")
        sid = claims.get("sid")
        return cls(
            sid=sid if isinstance(sid, str) else None,
            amr=tuple(a for a in amr if isinstance(a, str)) if isinstance(amr, list) else (),
            auth_time=float(auth_time) if type(auth_time) is int else None,
        )


@dataclass(frozen=True, slots=True)
class MfaChallenge:
    """The answer of a right password when a second factor is needed."""

    mfa_token: str
    methods: tuple[str, ...]
    expires_in: int = MFA_TOKEN_TTL


class _MfaStorage(UserStore, MfaStore, Protocol):
    """What MFA needs of the store."""


def normalize_recovery_code(code: str) -> str:
    """A recovery code as stored: lower case, without spaces and hyphens."""
    return "".join(ch for ch in code.lower() if ch not in " -\t")


def new_recovery_code() -> str:
    """A fresh recovery code: 12 characters without look-alikes, as xxxx-xxxx-xxxx."""
    raw = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(_RECOVERY_LEN))
    return "-".join(raw[i : i + 4] for i in range(0, _RECOVERY_LEN, 4))


@dataclass(frozen=True, eq=False, repr=False)
class Mfa:
    """TOTP enrolment, recovery codes, and the second step of a login."""

    store: _MfaStorage
    _: KW_ONLY
    accounts: Accounts
    sessions: Sessions
    keyring: Keyring
    throttle: OtpThrottle
    audit: Audit
    clock: Clock
    mail: MailQueue
    templates: MailTemplates
    issuer: str
    secret_key: bytes  # AES-256-GCM key of TOTP secrets
    code_key: bytes  # HMAC key of recovery-code digests
    require_verified_email: bool = False
    totp_label: str = "authgate"
    passkeys: Passkeys | None = None

    # --- at rest -------------------------------------------------------------------------

    def _seal(self, user_id: str, secret: str) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + AESGCM(self.secret_key).encrypt(
            nonce, secret.encode("ascii"), b"totp:" + user_id.encode("utf-8")
        )

    def _open(self, user_id: str, blob: bytes) -> str:
        try:
            plain = AESGCM(self.secret_key).decrypt(
                blob[:_NONCE], blob[_NONCE:], b"totp:" + user_id.encode("utf-8")
            )
        except (InvalidTag, ValueError) as exc:
            raise StorageError("a TOTP secret does not decrypt under this master key") from exc
        return plain.decode("ascii")

    def _code_digest(self, code: str) -> str:
        normalized = normalize_recovery_code(code)
        return hmac.new(self.code_key, normalized.encode("utf-8"), hashlib.sha256).hexdigest()

    # --- status --------------------------------------------------------------------------

    async def status(self, user_id: str) -> MfaStatus:
        """The user's second factors, in one read (passkeys count only where they are
        available)."""
        return self.status_of(await self.store.mfa_summary(user_id))

    async def statuses(self, user_ids: Sequence[str]) -> dict[str, MfaStatus]:
        """``status`` of each of these users (a page of them), in one read: one entry per
        id, with no factor for an id that is gone (as ``status`` answers)."""
        found = await self.store.mfa_summaries(user_ids)
        return {uid: self.status_of(found.get(uid, (False, 0, 0))) for uid in user_ids}

    def status_of(self, summary: tuple[bool, int, int]) -> MfaStatus:
        """The status of a summary as the store reads it (``MfaStore.mfa_summary``)."""
        totp, left, keys = summary
        count = keys if self.passkeys is not None else 0
        return MfaStatus(totp=totp, passkeys=count, recovery_codes_left=left)

    # --- TOTP ----------------------------------------------------------------------------

    def require_fresh(self, login: LoginFacts, *, seconds: int = FRESH_LOGIN_S) -> None:
        """InsufficientUserAuthentication (RFC 9470, with ``max_age``) unless the session
        logged in at most ``seconds`` ago."""
        if login.auth_time is None or self.clock.now() - login.auth_time > seconds:
            raise InsufficientUserAuthentication(
                "the login is not recent enough",
                description="a recent login is needed",
                max_age=seconds,
            )

    async def require_second_factor(self, user_id: str, login: LoginFacts) -> None:
        """For an account with a second factor: InsufficientUserAuthentication unless this
        session logged in with it (a password-only session, opened before MFA was turned
        on or stolen, cannot change the account's credentials)."""
        if AMR_MFA not in login.amr and (await self.status(user_id)).enabled:
            raise InsufficientUserAuthentication(
                "the account has a second factor and this session did not use it",
                description="a login with the second factor is needed",
                acr_values="mfa",
            )

    async def begin_totp(
        self,
        user: UserRecord,
        *,
        login: LoginFacts,
        password: str | None = None,
        code: str | None = None,
        ip: str | None,
    ) -> TotpEnrolment:
        """Start enrolling a new TOTP secret; it is not active until confirmed (within ten
        minutes). The first enrolment needs the password or a login of the last ten
        minutes (InsufficientUserAuthentication), so that a stolen access token cannot
        lock the owner out; re-enrolling while one is active needs the password and a
        current code (MfaConflict without them)."""
        if self.require_verified_email and not user.email_verified:
            raise EmailNotVerified("verify the email address before turning on MFA")
        current = await self.store.get_totp(user.id)
        if current is not None and current.secret is not None:
            if password is None or code is None:
                raise MfaConflict("TOTP is on: send the password and a current code")
            await self._reauthenticate(user, password, code, ip=ip)
            return await self._new_pending(user, ip=ip)
        # Another second factor (a passkey) is on: only a session that used it adds one.
        await self.require_second_factor(user.id, login)
        if password is not None:
            await self.accounts.verify_password(user, password, ip=ip)
        else:
            self.require_fresh(login)
        return await self._new_pending(user, ip=ip)

    async def _new_pending(self, user: UserRecord, *, ip: str | None) -> TotpEnrolment:
        """Store a new secret being enrolled; what the authenticator app needs."""
        secret = pyotp.random_base32()
        if not await self.store.put_pending_totp(
            user.id, self._seal(user.id, secret), now=self.clock.now()
        ):
            raise NotFound("no such user")
        await self.audit.record("totp_enrolment_started", user_id=user.id, ip=ip)
        uri = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP).provisioning_uri(
            name=user.email, issuer_name=self.totp_label
        )
        qr = segno.make(uri, error="m").svg_inline(scale=4, title="TOTP QR code")
        return TotpEnrolment(secret=secret, otpauth_uri=uri, qr_svg=qr)

    def _steps(self, secret: str, code: str) -> list[int]:
        """The time steps within the window whose code is ``code``."""
        if len(code) != TOTP_DIGITS or not code.isascii() or not code.isdigit():
            return []
        totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP)
        now_step = int(self.clock.now() // TOTP_STEP)
        return [
            step
            for step in range(now_step - TOTP_WINDOW, now_step + TOTP_WINDOW + 1)
            if hmac.compare_digest(totp.generate_otp(step), code)
        ]

    async def confirm_totp(
        self, user: UserRecord, code: str, *, login: LoginFacts, ip: str | None
    ) -> list[str]:
        """Activate the secret being enrolled with a current code from it; a new set of
        recovery codes (shown once; the old set dies). Every other session of the user
        ends (a password-only intruder is evicted), and the user is told by mail."""
        record = await self.store.get_totp(user.id)
        if (
            record is None
            or record.pending_secret is None
            or record.pending_at is None
            or self.clock.now() - record.pending_at > PENDING_TTL_S
        ):
            raise MfaNotEnabled("no TOTP enrolment to confirm (or it is over ten minutes old)")
        pending = record.pending_secret
        secret = self._open(user.id, pending)

        async def check() -> int:
            steps = self._steps(secret, _clean(code))
            if not steps:
                await self.audit.record("mfa_failed", user_id=user.id, ip=ip, method="totp")
                raise InvalidMfaCode("the code does not match the new secret")
            return max(steps)

        step = await self.throttle.attempt(user.id, ip, check)
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        if not await self.store.confirm_totp(
            user.id,
            pending=pending,
            step=step,
            now=self.clock.now(),
            recovery_digests=[self._code_digest(c) for c in codes],
        ):
            raise MfaNotEnabled("the enrolment changed meanwhile: start again")
        await self.audit.record("totp_enabled", user_id=user.id, ip=ip)
        await self.sessions.end_all(user.id, keep=login.sid, reason="mfa_enabled")
        self._notify(user, "Two-step sign-in was turned on")
        return codes

    async def _check_totp(self, user_id: str, code: str) -> bool:
        """True (and the step used up) if ``code`` is a current code of the active
        secret, for a step later than the last one accepted."""
        record = await self.store.get_totp(user_id)
        if record is None or record.secret is None:
            return False
        secret = self._open(user_id, record.secret)
        for step in sorted(self._steps(secret, _clean(code)), reverse=True):
            if record.last_step is not None and step <= record.last_step:
                continue
            if await self.store.use_totp_step(user_id, step):
                return True
        return False

    async def _check_recovery(self, user_id: str, code: str) -> bool:
        if not isinstance(code, str) or not 0 < len(code) <= 64:
            return False
        return await self.store.use_recovery_code(
            user_id, self._code_digest(code), now=self.clock.now()
        )

    async def _second_factor(
        self,
        user_id: str,
        *,
        code: str | None,
        recovery_code: str | None,
        ip: str | None,
        webauthn: object = None,
        login_jti: str | None = None,
    ) -> tuple[str, ...]:
        """Check one second factor through the throttle; the RFC 8176 ``amr`` it adds."""
        if sum(x is not None for x in (code, recovery_code, webauthn)) != 1:
            raise InvalidRequest("send one of code, recovery_code or webauthn")

        async def check() -> tuple[str, ...]:
            if webauthn is not None:
                if self.passkeys is None or login_jti is None:
                    raise InvalidRequest("passkeys are not available here")
                # PasskeyRefused is an InvalidCredentials: it counts as a failure.
                return await self.passkeys.verify_second_factor(
                    user_id, webauthn, login_jti=login_jti, ip=ip
                )
            if code is not None:
                if await self._check_totp(user_id, code):
                    return (AMR_OTP,)
                method = "totp"
            else:
                assert recovery_code is not None
                if await self._check_recovery(user_id, recovery_code):
                    await self.audit.record("recovery_code_used", user_id=user_id, ip=ip)
                    return ()
                method = "recovery_code"
            await self.audit.record("mfa_failed", user_id=user_id, ip=ip, method=method)
            raise InvalidMfaCode("the second factor is wrong or was used already")

        return await self.throttle.attempt(user_id, ip, check)

    async def _reauthenticate(
        self, user: UserRecord, password: str, code: str, *, ip: str | None
    ) -> None:
        """The password (login throttle) and a second factor (its own throttle): a current
        TOTP code, or a recovery code for a user who lost the authenticator."""
        await self.accounts.verify_password(user, password, ip=ip)
        if _looks_like_totp(code):
            await self._second_factor(user.id, code=code, recovery_code=None, ip=ip)
        else:
            await self._second_factor(user.id, code=None, recovery_code=code, ip=ip)

    async def confirm_identity(
        self, user: UserRecord, *, password: str | None, code: str | None, ip: str | None
    ) -> str:
        """A signed-in user proves again who they are before a dangerous action: a current
        TOTP code when the user has TOTP and sends one (the second-factor throttle), else
        the password (the login throttle). The method used (``otp`` or ``pwd``).
        InvalidCredentials (nothing sent, or wrong), InvalidMfaCode, Throttled."""
        if code and (await self.status(user.id)).totp:
            await self._second_factor(user.id, code=code, recovery_code=None, ip=ip)
            return AMR_OTP
        if not password:
            await self.audit.record("password_check_failed", user_id=user.id, ip=ip)
            raise InvalidCredentials("no password was sent")
        await self.accounts.verify_password(user, password, ip=ip)
        return AMR_PASSWORD

    async def disable_totp(
        self, user: UserRecord, *, password: str, code: str, ip: str | None
    ) -> None:
        """Turn TOTP off, with the password and a current code; the recovery codes go
        with it."""
        status = await self.status(user.id)
        if not status.totp:
            raise MfaNotEnabled("TOTP is not on")
        await self._reauthenticate(user, password, code, ip=ip)
        await self.store.delete_totp(user.id, keep_recovery_codes=status.passkeys > 0)
        await self.audit.record("totp_disabled", user_id=user.id, ip=ip)
        self._notify(user, "Two-step sign-in with an authenticator app was turned off")

    async def regenerate_recovery_codes(
        self,
        user: UserRecord,
        *,
        password: str,
        code: str,
        login: LoginFacts,
        ip: str | None,
    ) -> list[str]:
        """A new set of recovery codes (the old set dies): from a session that logged in
        with the second factor, with the password and a current code."""
        if not (await self.status(user.id)).enabled:
            raise MfaNotEnabled("turn on a second factor first")
        await self.require_second_factor(user.id, login)
        await self._reauthenticate(user, password, code, ip=ip)
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        await self.store.replace_recovery_codes(
            user.id, [self._code_digest(c) for c in codes], now=self.clock.now()
        )
        await self.audit.record("recovery_codes_regenerated", user_id=user.id, ip=ip)
        self._notify(user, "New recovery codes were made; the old ones no longer work")
        return codes

    def _notify(self, user: UserRecord, change: str) -> None:
        """Tell the user by mail that a second factor changed."""
        self.mail.enqueue(
            self.templates.render("mfa_changed", to=user.email, name=user.name, change=change)
        )

    async def reset(self, user_id: str, *, by: str, ip: str | None = None) -> None:
        """An admin turns every second factor of the user off (the recovery codes too);
        audited (``by``: the acting admin's user id, or ``cli``), and the user is told by
        mail."""
        user = await self.accounts.get(user_id)
        codes = await self.store.recovery_codes_left(user.id)
        had = await self.store.delete_totp(user.id, keep_recovery_codes=False)
        await self.store.replace_recovery_codes(user.id, [], now=self.clock.now())
        passkeys = await self.passkeys.delete_all(user.id) if self.passkeys is not None else 0
        await self.audit.record(
            "mfa_reset", user_id=user.id, ip=ip, by=by, had_totp=had, passkeys=passkeys
        )
        if had or codes or passkeys:  # nothing to tell a user who had no second factor
            self.mail.enqueue(self.templates.render("mfa_reset", to=user.email, name=user.name))

    # --- the two-step login --------------------------------------------------------------

    @property
    def token_policy(self) -> ClaimsPolicy:
        """What an mfa_token must be: its own typ and audience, five minutes at most."""
        return ClaimsPolicy(
            issuer=self.issuer,
            audience=self.audience,
            typ=MFA_TOKEN_TYPE,
            max_lifetime=MFA_TOKEN_TTL,
        )

    @property
    def audience(self) -> str:
        """The mfa_token's audience: the endpoint that takes it."""
        return self.issuer + "/auth/login/mfa"

    async def challenge(
        self, user: UserRecord, *, status: MfaStatus | None = None
    ) -> MfaChallenge | None:
        """After the right password: None when the user has no second factor, otherwise
        the mfa_token that the second step needs (no session is opened). ``status``: the
        user's factors when the caller has read them already."""
        if status is None:
            status = await self.status(user.id)
        if not status.enabled:
            return None
        now = self.clock.now()
        jti = secrets.token_urlsafe(24)
        await self.store.create_mfa_login(
            MfaLoginRecord(
                jti=jti,
                user_id=user.id,
                password_hash=user.password_hash,
                created_at=now,
                expires_at=now + MFA_TOKEN_TTL,
            )
        )
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": user.id,
            "aud": self.audience,
            "iat": int(now),
            "exp": int(now) + MFA_TOKEN_TTL,
            "jti": jti,
        }
        token = encode(claims, self.keyring.keyset, typ=MFA_TOKEN_TYPE)
        methods = []
        if status.totp:
            methods.append("totp")
        if status.passkeys:
            methods.append("webauthn")
        if status.recovery_codes_left:
            methods.append("recovery_code")
        await self.audit.record("mfa_required", user_id=user.id)
        return MfaChallenge(mfa_token=token, methods=tuple(methods))

    def _claims(self, mfa_token: object) -> dict[str, Any]:
        if not isinstance(mfa_token, str) or not 0 < len(mfa_token) <= 4096:
            raise InvalidMfaToken("not an mfa_token")
        try:
            return decode(
                mfa_token,
                self.keyring.keyset,
                algorithms=self.keyring.view.algorithms,
                policy=self.token_policy,
                now=self.clock.now(),
            )
        except InvalidToken as exc:
            raise InvalidMfaToken(f"the mfa_token is refused: {exc.code}") from None

    async def _pending(self, mfa_token: object) -> tuple[MfaLoginRecord, UserRecord]:
        """The live pending login an mfa_token names, and its user; InvalidMfaToken."""
        claims = self._claims(mfa_token)
        login = await self.store.get_mfa_login(str(claims["jti"]))
        now = self.clock.now()
        if (
            login is None
            or login.user_id != claims["sub"]
            or login.used_at is not None
            or login.expires_at <= now
        ):
            raise InvalidMfaToken("the mfa_token is unknown, used or expired")
        try:
            user = await self.accounts.get(login.user_id)
        except NotFound as exc:
            raise InvalidMfaToken("the account is gone") from exc
        if user.disabled:
            raise InvalidMfaToken("the account is disabled")
        if not hmac.compare_digest(user.password_hash, login.password_hash):
            raise InvalidMfaToken("the password changed since the first step")
        return login, user

    async def webauthn_options(self, mfa_token: object) -> dict[str, Any]:
        """The options of ``navigator.credentials.get()`` for the second step of the login
        that ``mfa_token`` names: its challenge is bound to that login. InvalidMfaToken,
        or PasskeyRefused when the user has no passkey."""
        login, user = await self._pending(mfa_token)
        return await self._passkeys().authentication_options(user_id=user.id, login_jti=login.jti)

    async def finish_login(
        self,
        mfa_token: object,
        *,
        code: str | None = None,
        recovery_code: str | None = None,
        webauthn: object = None,
        ip: str | None,
        user_agent: str | None,
    ) -> TokenPair:
        """The second step: the mfa_token of the first and one second factor (a TOTP
        code, a recovery code, or a passkey assertion answering a challenge of this
        login); the token pair of a new session whose ``amr`` names both factors."""

        async def start(user: UserRecord, amr: tuple[str, ...]) -> TokenPair:
            return await self.sessions.start(user, ip=ip, user_agent=user_agent, amr=amr)

        return await self.finish_login_with(
            mfa_token,
            code=code,
            recovery_code=recovery_code,
            webauthn=webauthn,
            ip=ip,
            open_session=start,
        )

    async def finish_login_with(
        self,
        mfa_token: object,
        *,
        code: str | None = None,
        recovery_code: str | None = None,
        webauthn: object = None,
        ip: str | None,
        open_session: Callable[[UserRecord, tuple[str, ...]], Awaitable[OpenedT]],
    ) -> OpenedT:
        """``finish_login``, with the session opened by ``open_session(user, amr)`` (a
        token pair, or the hosted login's): every rule of the second step is here, once.
        ``open_session`` must refuse a user whose password hash is not ``user``'s."""
        login, user = await self._pending(mfa_token)
        now = self.clock.now()
        # Claim the pending login before a single-use factor is spent: a racer that loses
        # the claim, or a login that cannot open, uses up no code. A wrong factor gives
        # the claim back, so the user may try again (through the throttle).
        if await self.store.use_mfa_login(login.jti, now=now) is None:
            raise InvalidMfaToken("the mfa_token was used meanwhile")
        try:
            added = await self._second_factor(
                user.id,
                code=code,
                recovery_code=recovery_code,
                webauthn=webauthn,
                login_jti=login.jti,
                ip=ip,
            )
        except BaseException:
            # Given back for another try, or, at the last allowed failure, kept used.
            await self.store.release_mfa_login(
                login.jti, used_at=now, burn_after=MFA_TOKEN_ATTEMPTS
            )
            raise
        amr = (AMR_PASSWORD, *added, AMR_MFA)
        # The session opens only while the password checked in the first step is stored.
        checked = dataclasses.replace(user, password_hash=login.password_hash)
        opened = await open_session(checked, amr)
        await self.audit.record("mfa_ok", user_id=user.id, sid=opened.sid, ip=ip, amr=list(amr))
        return opened

    # --- passkeys as a second factor -----------------------------------------------------

    def _passkeys(self) -> Passkeys:
        if self.passkeys is None:
            raise InvalidRequest("passkeys are not available here")
        return self.passkeys

    async def passkey_registration_options(
        self, user: UserRecord, *, login: LoginFacts, ip: str | None
    ) -> dict[str, Any]:
        """Start adding a passkey (``Passkeys.registration_options``), from a login of the
        last ten minutes, and, for an account with a second factor, one made with it
        (InsufficientUserAuthentication otherwise): a stolen access token must not add a
        key that logs in without a password."""
        await self.require_second_factor(user.id, login)
        self.require_fresh(login)
        return await self._passkeys().registration_options(user, ip=ip)

    async def add_passkey(
        self,
        user: UserRecord,
        response: object,
        *,
        name: str | None,
        login: LoginFacts,
        ip: str | None,
    ) -> tuple[PasskeyRecord, list[str] | None]:
        """Register a passkey (``Passkeys.register``; its challenge came from
        :meth:`passkey_registration_options`) and tell the user by mail. When it is the
        user's first second factor, every other session ends (as when TOTP is turned on)
        and the answer carries a set of recovery codes (shown once); else None."""
        passkey = await self._passkeys().register(user, response, name=name, ip=ip)
        self._notify(user, f"A passkey was added: {passkey.name}")
        status = await self.status(user.id)
        if status.totp or status.passkeys != 1 or status.recovery_codes_left:
            return passkey, None
        await self.sessions.end_all(user.id, keep=login.sid, reason="mfa_enabled")
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        await self.store.replace_recovery_codes(
            user.id, [self._code_digest(c) for c in codes], now=self.clock.now()
        )
        await self.audit.record("recovery_codes_generated", user_id=user.id, ip=ip)
        return passkey, codes

    async def delete_passkey(
        self,
        user: UserRecord,
        passkey_id: str,
        *,
        password: str,
        login: LoginFacts,
        ip: str | None,
    ) -> None:
        """Delete a passkey with the password (``Passkeys.delete``), from a session that
        used the second factor (InsufficientUserAuthentication otherwise); the user is
        told by mail. With the last second factor gone, the recovery codes go too."""
        await self.require_second_factor(user.id, login)
        await self._passkeys().delete(user, passkey_id, password=password, ip=ip)
        self._notify(user, "A passkey was removed")
        if not (await self.status(user.id)).enabled:
            await self.store.replace_recovery_codes(user.id, [], now=self.clock.now())

    async def purge(self) -> int:
        """Delete the pending logins that expired over a minute ago."""
        return await self.store.purge_mfa_logins(before=self.clock.now() - 60)


def _looks_like_totp(code: str) -> bool:
    cleaned = _clean(code)
    return len(cleaned) == TOTP_DIGITS and cleaned.isascii() and cleaned.isdigit()


def _clean(code: str) -> str:
    return code.replace(" ", "") if isinstance(code, str) else ""


__all__ = [
    "AMR_MFA",
    "AMR_OTP",
    "AMR_PASSWORD",
    "MFA_TOKEN_TYPE",
    "Mfa",
    "MfaChallenge",
    "MfaStatus",
    "OtpThrottle",
    "TotpEnrolment",
    "new_recovery_code",
    "normalize_recovery_code",
]
