"""Passkeys (WebAuthn, with py_webauthn): registration, authentication as a second factor
or as a passwordless first factor, and the user's list of passkeys.

Every ceremony starts with a challenge that the server stores (as a SHA-256 digest), bound
to its purpose and to a user, or to a login waiting for its second factor; it lives five
minutes and is used once (a compare-and-set), whether the response then verifies or not.
The RP ID and the allowed origins come from settings; py_webauthn checks the origin, the RP
ID hash, the challenge, the flags and the signature.

Signature counters: a counter that does not increase, when either side is not 0, is refused
as a clone and audited. The check runs after the signature verifies (py_webauthn would
compare before it), and the new counter is stored by a compare-and-set, so that of two
concurrent assertions with one counter value only one succeeds.

``amr`` (RFC 8176): a passkey is proof of possession of a key, ``hwk`` for a device-bound
credential and ``swk`` for a synced one (backup eligible: the key leaves the hardware).
When the authenticator verified the user (UV: a PIN or a biometric, which WebAuthn does not
tell apart) a passwordless login adds ``user`` and counts as multi-factor (``mfa``);
without UV it is one factor. As a second factor after the password, ``pwd``, ``hwk`` or
``swk``, and ``mfa``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any, Final, Protocol

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    decode_credential_public_key,
    decoded_public_key_to_cryptography,
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from authgate.clock import Clock
from authgate.errors import (
    Conflict,
    EmailNotVerified,
    InvalidRequest,
    NotFound,
    PasskeyCloned,
    PasskeyExists,
    PasskeyRefused,
    PasskeyRegistrationRefused,
)
from authgate.service.accounts import Accounts
from authgate.service.audit import Audit
from authgate.service.sessions import OpenedT, Sessions, TokenPair
from authgate.storage.base import (
    PasskeyRecord,
    PasskeyStore,
    UserRecord,
    UserStore,
    WebauthnChallengeRecord,
    WebauthnPurpose,
)

CHALLENGE_TTL: Final = 300
MAX_PASSKEYS: Final = 32  # per user
MAX_NAME: Final = 64
MAX_RESPONSE: Final = 16384  # characters of a ceremony response, as JSON

# RFC 8176 method references.
AMR_HARDWARE_KEY: Final = "hwk"
AMR_SOFTWARE_KEY: Final = "swk"
AMR_USER: Final = "user"
AMR_MFA: Final = "mfa"

_TRANSPORTS: Final = frozenset(t.value for t in AuthenticatorTransport)


@dataclass(frozen=True, slots=True)
class PasskeyAssertion:
    """A verified passkey assertion: whose, which passkey, and the ``amr`` it proves."""

    user: UserRecord
    passkey: PasskeyRecord
    user_verified: bool
    amr: tuple[str, ...]


class _PasskeyStorage(UserStore, PasskeyStore, Protocol):
    """What passkeys need of the store."""


MAX_CREDENTIAL_ID = 1023


def _digest(challenge: bytes) -> str:
    return hashlib.sha256(challenge).hexdigest()


def _options(options: Any) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(options_to_json(options))
    return parsed


def _key_amr(passkey: PasskeyRecord) -> str:
    return AMR_SOFTWARE_KEY if passkey.backup_eligible else AMR_HARDWARE_KEY


def _checked(response: object) -> dict[str, Any]:
    """A ceremony response as py_webauthn takes it: a JSON object of bounded size."""
    if not isinstance(response, dict):
        raise InvalidRequest("the WebAuthn response must be a JSON object", field="credential")
    if len(json.dumps(response)) > MAX_RESPONSE:
        raise InvalidRequest("the WebAuthn response is too large", field="credential")
    return response


@dataclass(frozen=True, eq=False, repr=False)
class Passkeys:
    """Passkey registration and authentication, and the user's list of passkeys."""

    store: _PasskeyStorage
    _: KW_ONLY
    accounts: Accounts
    sessions: Sessions
    audit: Audit
    clock: Clock
    rp_id: str
    origins: tuple[str, ...]
    rp_name: str = "authgate"
    require_verified_email: bool = False

    # --- challenges ----------------------------------------------------------------------

    async def _issue(
        self,
        purpose: WebauthnPurpose,
        *,
        user_id: str | None = None,
        login_jti: str | None = None,
    ) -> bytes:
        challenge = secrets.token_bytes(32)
        now = self.clock.now()
        await self.store.create_webauthn_challenge(
            WebauthnChallengeRecord(
                digest=_digest(challenge),
                purpose=purpose,
                created_at=now,
                expires_at=now + CHALLENGE_TTL,
                user_id=user_id,
                login_jti=login_jti,
            )
        )
        return challenge

    async def _use(
        self, client_data_json: bytes, purpose: WebauthnPurpose
    ) -> tuple[bytes, WebauthnChallengeRecord | None]:
        """The challenge the response answers, used up now: its record, or None when it is
        unknown, used, expired or of another purpose."""
        challenge = parse_client_data_json(client_data_json).challenge
        used = await self.store.use_webauthn_challenge(
            _digest(challenge), purpose=purpose, now=self.clock.now()
        )
        return challenge, used

    # --- registration --------------------------------------------------------------------

    async def registration_options(self, user: UserRecord, *, ip: str | None) -> dict[str, Any]:
        """The options of ``navigator.credentials.create()`` for the signed-in user: no
        attestation, a discoverable credential preferred, user verification preferred, and
        the user's passkeys excluded. EmailNotVerified when a verified address is
        required and missing."""
        if self.require_verified_email and not user.email_verified:
            raise EmailNotVerified("verify the email address before adding a passkey")
        existing = await self.store.list_passkeys(user.id)
        if len(existing) >= MAX_PASSKEYS:
            raise InvalidRequest(f"at most {MAX_PASSKEYS} passkeys per account")
        challenge = await self._issue("register", user_id=user.id)
        options = generate_registration_options(
            rp_id=self.rp_id,
            rp_name=self.rp_name,
            user_name=user.email,
            user_id=user.id.encode("utf-8"),
            user_display_name=user.name or user.email,
            challenge=challenge,
            timeout=CHALLENGE_TTL * 1000,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=self._descriptors(existing),
        )
        await self.audit.record("passkey_registration_started", user_id=user.id, ip=ip)
        return _options(options)

    async def register(
        self,
        user: UserRecord,
        response: object,
        *,
        name: str | None = None,
        ip: str | None,
    ) -> PasskeyRecord:
        """Verify the response of ``navigator.credentials.create()`` against a challenge
        issued to this user, and store the passkey. PasskeyRegistrationRefused if it does
        not verify (the challenge is used up all the same), PasskeyExists if the
        credential is registered already."""
        label = _name(name) if name is not None else None
        try:
            credential: RegistrationCredential = parse_registration_credential_json(
                _checked(response)
            )
            challenge, issued = await self._use(credential.response.client_data_json, "register")
            if issued is None or issued.user_id != user.id:
                raise PasskeyRegistrationRefused("the challenge is unknown, used or expired")
            verified = verify_registration_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=list(self.origins),
            )
            # "none" attestation signs nothing: refuse a public key that could never verify.
            decoded_public_key_to_cryptography(
                decode_credential_public_key(verified.credential_public_key)
            )
        except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
            await self.audit.record(
                "passkey_registration_failed", user_id=user.id, ip=ip, reason=str(exc)[:200]
            )
            raise PasskeyRegistrationRefused(f"the registration does not verify: {exc}") from exc
        except PasskeyRegistrationRefused:
            await self.audit.record(
                "passkey_registration_failed", user_id=user.id, ip=ip, reason="challenge"
            )
            raise
        if len(verified.credential_id) > MAX_CREDENTIAL_ID:  # WebAuthn L3: at most 1023 bytes
            raise PasskeyRegistrationRefused("the credential id is over 1023 bytes")
        now = self.clock.now()
        count = await self.store.count_passkeys(user.id)
        record = PasskeyRecord(
            id="pk_" + secrets.token_urlsafe(12),
            credential_id=bytes_to_base64url(verified.credential_id),
            user_id=user.id,
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            name=label or f"Passkey {count + 1}",
            created_at=now,
            transports=tuple(
                t.value for t in credential.response.transports or () if t.value in _TRANSPORTS
            ),
            aaguid=verified.aaguid,
            backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
            backed_up=verified.credential_backed_up,
        )
        try:
            added = await self.store.add_passkey(record)
        except Conflict as exc:
            await self.audit.record(
                "passkey_registration_failed", user_id=user.id, ip=ip, reason="exists"
            )
            raise PasskeyExists("this credential is registered already") from exc
        if not added:
            raise NotFound("no such user")
        await self.audit.record(
            "passkey_added",
            user_id=user.id,
            ip=ip,
            passkey=record.id,
            aaguid=record.aaguid,
            user_verified=verified.user_verified,
        )
        return record

    # --- authentication ------------------------------------------------------------------

    def _descriptors(
        self, passkeys: Sequence[PasskeyRecord]
    ) -> list[PublicKeyCredentialDescriptor]:
        return [
            PublicKeyCredentialDescriptor(
                id=base64url_to_bytes(p.credential_id),
                transports=[AuthenticatorTransport(t) for t in p.transports],
            )
            for p in passkeys
        ]

    async def authentication_options(
        self, *, user_id: str | None = None, login_jti: str | None = None
    ) -> dict[str, Any]:
        """The options of ``navigator.credentials.get()``: for a second factor (the user
        and the pending login given: the user's passkeys allowed), or for a passwordless
        login (neither given: any discoverable credential). User verification preferred.
        PasskeyRefused when a second factor is asked of a user without passkeys."""
        if (user_id is None) != (login_jti is None):
            raise InvalidRequest("a second factor needs both the user and the login")
        allowed: list[PublicKeyCredentialDescriptor] = []
        if user_id is not None:
            passkeys = await self.store.list_passkeys(user_id)
            if not passkeys:
                raise PasskeyRefused("the user has no passkey")
            allowed = self._descriptors(passkeys)
            challenge = await self._issue("second_factor", user_id=user_id, login_jti=login_jti)
        else:
            challenge = await self._issue("passwordless")
        options = generate_authentication_options(
            rp_id=self.rp_id,
            challenge=challenge,
            timeout=CHALLENGE_TTL * 1000,
            allow_credentials=allowed,
            # A passwordless login is refused without user verification.
            user_verification=(
                UserVerificationRequirement.PREFERRED
                if user_id is not None
                else UserVerificationRequirement.REQUIRED
            ),
        )
        return _options(options)

    async def _assert(
        self,
        response: object,
        purpose: WebauthnPurpose,
        *,
        user_id: str | None,
        login_jti: str | None,
        ip: str | None,
    ) -> PasskeyAssertion:
        """Verify an assertion against a challenge of ``purpose`` (bound to ``user_id`` and
        ``login_jti`` where given), check and store the counter."""
        try:
            credential: AuthenticationCredential = parse_authentication_credential_json(
                _checked(response)
            )
            challenge, issued = await self._use(credential.response.client_data_json, purpose)
        except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
            await self.audit.record(
                "passkey_failed", user_id=user_id, ip=ip, reason="malformed", purpose=purpose
            )
            raise PasskeyRefused(f"the assertion is malformed: {exc}") from exc
        if issued is None or issued.user_id != user_id or issued.login_jti != login_jti:
            await self.audit.record(
                "passkey_failed", user_id=user_id, ip=ip, reason="challenge", purpose=purpose
            )
            raise PasskeyRefused("the challenge is unknown, used, expired or not this login's")
        passkey = await self.store.get_passkey(bytes_to_base64url(credential.raw_id))
        if passkey is None or (user_id is not None and passkey.user_id != user_id):
            await self.audit.record(
                "passkey_failed", user_id=user_id, ip=ip, reason="unknown", purpose=purpose
            )
            raise PasskeyRefused("no such passkey")
        handle = credential.response.user_handle
        if handle is not None and handle != passkey.user_id.encode("utf-8"):
            await self.audit.record(
                "passkey_failed", user_id=passkey.user_id, ip=ip, reason="user_handle"
            )
            raise PasskeyRefused("the user handle is not the passkey's user")
        try:
            # Counter 0 here: the clone check runs below, once the signature verified.
            verified = verify_authentication_response(
                credential=credential,
                expected_challenge=challenge,
                expected_rp_id=self.rp_id,
                expected_origin=list(self.origins),
                credential_public_key=passkey.public_key,
                credential_current_sign_count=0,
            )
        except (WebAuthnException, ValueError, TypeError, KeyError) as exc:
            await self.audit.record(
                "passkey_failed",
                user_id=passkey.user_id,
                ip=ip,
                passkey=passkey.id,
                reason=str(exc)[:200],
                purpose=purpose,
            )
            raise PasskeyRefused(f"the assertion does not verify: {exc}") from exc
        new = verified.new_sign_count
        went_back = (new != 0 or passkey.sign_count != 0) and new <= passkey.sign_count
        # The store refuses too when a concurrent use with the same counter won.
        if went_back or not await self.store.use_passkey(
            passkey.id,
            sign_count=new,
            backed_up=verified.credential_backed_up,
            now=self.clock.now(),
        ):
            await self.audit.record(
                "passkey_clone_suspected",
                user_id=passkey.user_id,
                ip=ip,
                passkey=passkey.id,
                stored=passkey.sign_count,
                presented=new,
            )
            raise PasskeyCloned("the signature counter did not increase")
        amr: tuple[str, ...] = (_key_amr(passkey),)
        try:
            user = await self.accounts.get(passkey.user_id)
        except NotFound as exc:
            raise PasskeyRefused("the account is gone") from exc
        await self.audit.record(
            "passkey_used",
            user_id=passkey.user_id,
            ip=ip,
            passkey=passkey.id,
            purpose=purpose,
            user_verified=verified.user_verified,
        )
        return PasskeyAssertion(
            user=user, passkey=passkey, user_verified=verified.user_verified, amr=amr
        )

    async def verify_second_factor(
        self, user_id: str, response: object, *, login_jti: str, ip: str | None
    ) -> tuple[str, ...]:
        """Verify a passkey assertion as the second factor of the pending login
        ``login_jti``; the ``amr`` it adds (``hwk`` or ``swk``). PasskeyRefused (or
        PasskeyCloned) otherwise."""
        assertion = await self._assert(
            response, "second_factor", user_id=user_id, login_jti=login_jti, ip=ip
        )
        return assertion.amr

    async def login(self, response: object, *, ip: str | None, user_agent: str | None) -> TokenPair:
        """A passwordless login with a discoverable passkey: a new session whose ``amr``
        is ``hwk`` or ``swk``, with ``user`` and ``mfa`` when the authenticator verified
        the user. PasskeyRefused (or PasskeyCloned) if the assertion is refused or the
        account is disabled; EmailNotVerified when a verified address is required."""

        async def start(user: UserRecord, amr: tuple[str, ...]) -> TokenPair:
            return await self.sessions.start(user, ip=ip, user_agent=user_agent, amr=amr)

        return await self.login_with(response, ip=ip, open_session=start)

    async def login_with(
        self,
        response: object,
        *,
        ip: str | None,
        open_session: Callable[[UserRecord, tuple[str, ...]], Awaitable[OpenedT]],
    ) -> OpenedT:
        """``login``, with the session opened by ``open_session(user, amr)`` (a token
        pair, or the hosted login's): every rule of a passwordless login is here, once."""
        assertion = await self._assert(
            response, "passwordless", user_id=None, login_jti=None, ip=ip
        )
        user = assertion.user
        if not assertion.user_verified:
            # Possession alone is one factor, weaker than the password and second factor
            # the account asks of every other login.
            await self.audit.record("passkey_failed", user_id=user.id, ip=ip, reason="no_uv")
            raise PasskeyRefused("a passwordless login needs user verification")
        if user.disabled:
            await self.audit.record("passkey_failed", user_id=user.id, ip=ip, reason="disabled")
            raise PasskeyRefused("the account is disabled")
        if self.require_verified_email and not user.email_verified:
            await self.audit.record("login_unverified", user_id=user.id, ip=ip)
            raise EmailNotVerified("the email address is not verified yet")
        amr = assertion.amr
        if assertion.user_verified:
            amr = (*amr, AMR_USER, AMR_MFA)
        opened = await open_session(user, tuple(amr))
        await self.audit.record(
            "passkey_login", user_id=user.id, sid=opened.sid, ip=ip, amr=list(amr)
        )
        return opened

    # --- the user's passkeys -------------------------------------------------------------

    async def list_passkeys(self, user_id: str) -> list[PasskeyRecord]:
        """The user's passkeys, oldest first."""
        return await self.store.list_passkeys(user_id)

    async def count(self, user_id: str) -> int:
        """How many passkeys the user has."""
        return await self.store.count_passkeys(user_id)

    async def rename(self, user: UserRecord, passkey_id: str, name: str, *, ip: str | None) -> None:
        """Rename one of the user's passkeys; NotFound if the user has no such passkey."""
        if not await self.store.rename_passkey(user.id, passkey_id, _name(name)):
            raise NotFound("no such passkey")
        await self.audit.record("passkey_renamed", user_id=user.id, ip=ip, passkey=passkey_id)

    async def delete(
        self, user: UserRecord, passkey_id: str, *, password: str, ip: str | None
    ) -> None:
        """Delete one of the user's passkeys, with the password (the login throttle);
        InvalidCredentials if it is wrong, NotFound if the user has no such passkey."""
        await self.accounts.verify_password(user, password, ip=ip)
        if not await self.store.delete_passkey(user.id, passkey_id):
            raise NotFound("no such passkey")
        await self.audit.record("passkey_deleted", user_id=user.id, ip=ip, passkey=passkey_id)

    async def delete_all(self, user_id: str) -> int:
        """Delete every passkey of the user (an admin's MFA reset); how many."""
        return await self.store.delete_passkeys(user_id)

    async def purge(self) -> int:
        """Delete the challenges that expired over a minute ago."""
        return await self.store.purge_webauthn_challenges(before=self.clock.now() - 60)


def _name(name: object) -> str:
    """A passkey's name: printable, 1 to 64 characters once trimmed."""
    if not isinstance(name, str):
        raise InvalidRequest("a passkey name is a string", field="name")
    text = name.strip()
    if not 0 < len(text) <= MAX_NAME or not text.isprintable():
        raise InvalidRequest(f"a passkey name is 1 to {MAX_NAME} printable characters")
    return text


__all__ = [
    "AMR_HARDWARE_KEY",
    "AMR_MFA",
    "AMR_SOFTWARE_KEY",
    "AMR_USER",
    "CHALLENGE_TTL",
    "MAX_NAME",
    "MAX_PASSKEYS",
    "PasskeyAssertion",
    "Passkeys",
]
