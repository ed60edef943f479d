"""Signing-key lifecycle: next -> current -> retiring -> retired, keys encrypted at rest.

The next key is published in the JWKS a whole rotation period before it signs; a
retiring key stays published until every token it signed has expired. Private keys are
stored as AES-256-GCM ciphertext under the master key, with the kid as associated data.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from authgate.clock import Clock
from authgate.errors import ConfigurationError, InvalidKey, NotFound
from authgate.jose import Key, KeySet
from authgate.storage.base import KeyRecord, KeyStore

_NONCE = 12
PUBLISHED = ("next", "current", "retiring")


def encrypt_private(master_key: bytes, key: Key) -> bytes:
    """AES-256-GCM of the private JWK, with the kid as associated data; nonce || ct."""
    nonce = os.urandom(_NONCE)
    plaintext = json.dumps(key.to_jwk(private=True)).encode("utf-8")
    return nonce + AESGCM(master_key).encrypt(nonce, plaintext, key.kid.encode("utf-8"))


def decrypt_private(master_key: bytes, record: KeyRecord) -> Key:
    """Decrypt a stored key; ConfigurationError if the master key is not the one used."""
    blob = record.encrypted_private
    if blob is None or len(blob) <= _NONCE:
        raise InvalidKey(f"key {record.kid} has no private part stored", kid=record.kid)
    try:
        plaintext = AESGCM(master_key).decrypt(
            blob[:_NONCE], blob[_NONCE:], record.kid.encode("utf-8")
        )
    except InvalidTag as exc:
        raise ConfigurationError(
            "the master key does not decrypt the stored signing keys: "
            "it is not the key they were stored with",
            kid=record.kid,
        ) from exc
    return Key.from_jwk(plaintext, alg=record.alg)


@dataclass(frozen=True, slots=True)
class KeyringView:
    """An immutable snapshot: the signing key and every published key."""

    signing: KeySet
    records: tuple[KeyRecord, ...]

    @property
    def algorithms(self) -> frozenset[str]:
        """The algorithms of the published keys: the verification allowlist."""
        return frozenset(k.alg for k in self.signing)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public JWKS of every published key."""
        return self.signing.to_jwks()


class Keyring:
    """Keeps the signing keys: loads, generates, rotates and imports them."""

    def __init__(
        self,
        store: KeyStore,
        *,
        master_key: bytes,
        alg: str,
        rotation: float,
        token_lifetime: float,
        clock: Clock,
        static_key: Key | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._timer = timer  # elapsed time (not the clock, which tests freeze): reload pacing
        self._master = master_key
        self._alg = alg
        self._rotation = rotation
        self._token_lifetime = token_lifetime
        self._clock = clock
        self._static = static_key
        self._view: KeyringView | None = None
        self._loaded_at = 0.0

    @property
    def view(self) -> KeyringView:
        """The current snapshot; call :meth:`load` first."""
        if self._view is None:
            raise ConfigurationError("the keyring is not loaded")
        return self._view

    @property
    def keyset(self) -> KeySet:
        """Sign with ``keyset.current``; verify with any key in it."""
        return self.view.signing

    async def load(self) -> KeyringView:
        """Read every key from the store; create the first ones if there are none.

        Refuses (ConfigurationError) when stored keys do not decrypt: it never starts
        issuing tokens with a new key while old ones are still stored.
        """
        if self._static is not None:
            self._view = KeyringView(KeySet([self._static]), ())
            return self._view
        records = await self._store.list_keys()
        if not any(r.state in PUBLISHED for r in records):
            async with self._store.key_lock():
                records = await self._store.list_keys()
                if not any(r.state in PUBLISHED for r in records):
                    now = self._clock.now()
                    await self._store.insert_key(self._new_record("current", now, activated=now))
                    await self._store.insert_key(self._new_record("next", now))
                    records = await self._store.list_keys()
        self._view = self._make_view(records)
        self._loaded_at = self._timer()
        return self._view

    def _new_record(
        self, state: str, now: float, *, activated: float | None = None, key: Key | None = None
    ) -> KeyRecord:
        key = key or Key.generate(self._alg)
        public = None if key.is_symmetric else json.dumps(key.to_jwk())
        return KeyRecord(
            kid=key.kid,
            alg=key.alg,
            state=state,  # type: ignore[arg-type]
            public_jwk=public,
            encrypted_private=encrypt_private(self._master, key),
            created_at=now,
            activated_at=activated,
        )

    def _make_view(self, records: list[KeyRecord]) -> KeyringView:
        published = [r for r in records if r.state in PUBLISHED]
        keys = [decrypt_private(self._master, r) for r in published]
        current = next((r.kid for r in published if r.state == "current"), None)
        if current is None:
            raise ConfigurationError("no current signing key is stored")
        return KeyringView(KeySet(keys, current=current), tuple(published))

    async def maintain(self) -> bool:
        """Rotate if due and drop expired retiring keys; return True if anything changed.

        Safe to call from every instance: the store's key lock lets one act at a time.
        """
        if self._static is not None:
            return False
        changed = False
        async with self._store.key_lock():
            now = self._clock.now()
            records = await self._store.list_keys()
            for r in records:
                if r.state == "retiring" and r.expires_at is not None and r.expires_at <= now:
                    await self._store.update_key(r.kid, state="retired", drop_private=True)
                    changed = True
            if not any(r.state == "next" for r in records):
                await self._store.insert_key(self._new_record("next", now))
                changed = True
            current = next((r for r in records if r.state == "current"), None)
            due = current is None or (current.activated_at or 0) + self._rotation <= now
            if due:
                changed = await self._promote(now) or changed
        await self.refresh()
        return changed

    async def _promote(self, now: float) -> bool:
        records = await self._store.list_keys()
        nxt = next((r for r in records if r.state == "next"), None)
        if nxt is None:
            return False
        await self._retire_current(records, now)
        await self._store.update_key(nxt.kid, state="current", activated_at=now)
        await self._store.insert_key(self._new_record("next", now))
        return True

    async def _retire_current(self, records: list[KeyRecord], now: float) -> None:
        """The current key starts retiring: published until every token it signed expires."""
        for r in records:
            if r.state == "current":
                await self._store.update_key(
                    r.kid,
                    state="retiring",
                    retired_at=now,
                    expires_at=now + self._token_lifetime,
                )

    async def rotate(self) -> KeyringView:
        """Make the next key current now; the current one retires; a new next is made."""
        if self._static is not None:
            raise ConfigurationError("a key from AUTHGATE_HS256_SECRET does not rotate")
        async with self._store.key_lock():
            await self._promote(self._clock.now())
        return await self.refresh()

    async def import_key(self, key: Key, *, activate: bool) -> KeyRecord:
        """Store an imported private key: published at once, and current if ``activate``."""
        if not key.can_sign:
            raise InvalidKey("an imported key must hold its private part")
        async with self._store.key_lock():
            now = self._clock.now()
            records = await self._store.list_keys()
            if activate:
                await self._retire_current(records, now)
            else:
                for r in records:
                    if r.state == "next":
                        await self._store.update_key(
                            r.kid, state="retired", retired_at=now, drop_private=True
                        )
            record = self._new_record(
                "current" if activate else "next",
                now,
                activated=now if activate else None,
                key=key,
            )
            await self._store.insert_key(record)
        await self.refresh()
        return record

    async def refresh(self) -> KeyringView:
        """Reload the snapshot from the store (another instance may have rotated)."""
        if self._static is not None:
            return self.view
        self._view = self._make_view(await self._store.list_keys())
        self._loaded_at = self._timer()
        return self._view

    async def refresh_if_older_than(self, seconds: float) -> bool:
        """Reload unless the snapshot is fresher than ``seconds``; True if it reloaded.
        Bounds how often unknown kids can make this instance read the store."""
        if self._static is not None or self._timer() - self._loaded_at < seconds:
            return False
        await self.refresh()
        return True

    async def records(self) -> list[KeyRecord]:
        """Every stored key, for listing."""
        return await self._store.list_keys()

    async def get(self, kid: str) -> KeyRecord:
        """One stored key; NotFound if there is none."""
        for r in await self._store.list_keys():
            if r.kid == kid:
                return r
        raise NotFound("no such key", kid=kid)
