"""Signing-key lifecycle: next -> current -> retiring -> retired, keys encrypted at rest.

The lifecycle runs once per kept algorithm: the server's (access tokens) and those of the
OpenID Connect ID tokens (``id_token_algs``). With a static HMAC key (AUTHGATE_HS256_SECRET)
the access tokens use it and only the ID-token algorithms live in the store.

The next key is published in the JWKS a whole rotation period before it signs; a
retiring key stays published until every token it signed has expired. Private keys are
stored as AES-256-GCM ciphertext under the master key, with the kid as associated data.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from authgate.clock import Clock
from authgate.errors import ConfigurationError, InvalidKey, NotFound, UnsupportedAlgorithm
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
    """An immutable snapshot: the access-token keys (``signing``, the server's algorithm
    only), each kept algorithm's keys, and every published key."""

    signing: KeySet
    records: tuple[KeyRecord, ...]
    by_alg: Mapping[str, KeySet] = field(default_factory=dict)
    published: KeySet | None = None

    @property
    def algorithms(self) -> frozenset[str]:
        """The access tokens' verification allowlist: the server's algorithm only, so that
        a token signed with another algorithm's key (an ID token) never passes as one."""
        return frozenset(k.alg for k in self.signing)

    def keyset_for(self, alg: str) -> KeySet:
        """The keys of ``alg``, signing with its current one; UnsupportedAlgorithm if the
        keyring does not keep that algorithm."""
        found = self.by_alg.get(alg)
        if found is None:
            raise UnsupportedAlgorithm(f"the keyring keeps no {alg} key", alg=alg)
        return found

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The public JWKS of every published key, of every algorithm."""
        return (self.published or self.signing).to_jwks()


class Keyring:
    """Keeps the signing keys of every kept algorithm: loads, generates, rotates and
    imports them."""

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
        id_token_algs: Sequence[str] = (),
        id_token_lifetime: float = 0.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._timer = timer  # elapsed time (not the clock, which tests freeze): reload pacing
        self._master = master_key
        self._alg = alg
        self._rotation = rotation
        self._token_lifetime = token_lifetime
        self._id_algs = tuple(dict.fromkeys(id_token_algs))
        self._id_lifetime = id_token_lifetime
        self._clock = clock
        self._static = static_key
        # The algorithms whose keys live in the store, each with its own lifecycle.
        stored = () if static_key is not None else (alg,)
        self._algs: tuple[str, ...] = tuple(dict.fromkeys((*stored, *self._id_algs)))
        self._view: KeyringView | None = None
        self._loaded_at = 0.0

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The algorithms whose keys the store keeps (the server's first)."""
        return self._algs

    @property
    def id_token_algs(self) -> tuple[str, ...]:
        """The algorithms ID tokens may be signed with."""
        return self._id_algs

    @property
    def view(self) -> KeyringView:
        """The current snapshot; call :meth:`load` first."""
        if self._view is None:
            raise ConfigurationError("the keyring is not loaded")
        return self._view

    @property
    def keyset(self) -> KeySet:
        """The access-token keys: sign with ``keyset.current``; verify with any key in it."""
        return self.view.signing

    def _lifetime(self, alg: str) -> float:
        """How long a retiring key of ``alg`` stays published: its longest token's life."""
        extra = self._id_lifetime if alg in self._id_algs else 0.0
        return max(self._token_lifetime, extra)

    async def load(self) -> KeyringView:
        """Read every key from the store; create the first ones of each kept algorithm
        that has none.

        Refuses (ConfigurationError) when stored keys do not decrypt: it never starts
        issuing tokens with a new key while old ones are still stored.
        """
        if self._algs:
            records = await self._store.list_keys()
            if self._missing(records):
                # Never add keys beside stored ones this master key cannot read.
                for r in records:
                    if r.state in PUBLISHED:
                        decrypt_private(self._master, r)
                async with self._store.key_lock():
                    records = await self._store.list_keys()
                    now = self._clock.now()
                    for alg in self._missing(records):
                        await self._store.insert_key(
                            self._new_record("current", now, alg=alg, activated=now)
                        )
                        await self._store.insert_key(self._new_record("next", now, alg=alg))
                    records = await self._store.list_keys()
        else:
            records = []
        self._view = self._make_view(records)
        self._loaded_at = self._timer()
        return self._view

    def _missing(self, records: list[KeyRecord]) -> list[str]:
        return [
            alg
            for alg in self._algs
            if not any(r.state in PUBLISHED and r.alg == alg for r in records)
        ]

    def _new_record(
        self,
        state: str,
        now: float,
        *,
        alg: str,
        activated: float | None = None,
        key: Key | None = None,
    ) -> KeyRecord:
        key = key or Key.generate(alg)
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
        keys = {r.kid: decrypt_private(self._master, r) for r in published}
        by_alg: dict[str, KeySet] = {}
        for alg in self._algs:
            mine = [r for r in published if r.alg == alg]
            current = next((r.kid for r in mine if r.state == "current"), None)
            if current is None:
                raise ConfigurationError(f"no current {alg} signing key is stored")
            by_alg[alg] = KeySet([keys[r.kid] for r in mine], current=current)
        if self._static is not None:
            signing = KeySet([self._static])
            by_alg.setdefault(self._static.alg, signing)
        else:
            signing = by_alg[self._alg]
        everything = [*keys.values()]
        if self._static is not None:
            everything.append(self._static)
        return KeyringView(signing, tuple(published), by_alg=by_alg, published=KeySet(everything))

    async def maintain(self) -> bool:
        """For each kept algorithm, rotate if due and drop expired retiring keys; return
        True if anything changed. A current or next key of an algorithm no longer kept
        starts retiring.

        Safe to call from every instance: the store's key lock lets one act at a time.
        """
        if not self._algs:
            return False
        changed = False
        async with self._store.key_lock():
            now = self._clock.now()
            records = await self._store.list_keys()
            for r in records:
                if r.state == "retiring" and r.expires_at is not None and r.expires_at <= now:
                    await self._store.update_key(r.kid, state="retired", drop_private=True)
                    changed = True
                elif r.alg not in self._algs and r.state in ("current", "next"):
                    await self._store.update_key(
                        r.kid,
                        state="retiring",
                        retired_at=now,
                        expires_at=now + self._lifetime(r.alg),
                    )
                    changed = True
            for alg in self._algs:
                mine = [r for r in records if r.alg == alg]
                if not any(r.state == "next" for r in mine):
                    await self._store.insert_key(self._new_record("next", now, alg=alg))
                    changed = True
                current = next((r for r in mine if r.state == "current"), None)
                due = current is None or (current.activated_at or 0) + self._rotation <= now
                if due:
                    changed = await self._promote(now, alg) or changed
        await self.refresh()
        return changed

    async def _promote(self, now: float, alg: str) -> bool:
        records = [r for r in await self._store.list_keys() if r.alg == alg]
        nxt = next((r for r in records if r.state == "next"), None)
        if nxt is None:
            return False
        await self._retire_current(records, now)
        await self._store.update_key(nxt.kid, state="current", activated_at=now)
        await self._store.insert_key(self._new_record("next", now, alg=alg))
        return True

    async def _retire_current(self, records: list[KeyRecord], now: float) -> None:
        """The current key (of the records given: one algorithm's) starts retiring:
        published until every token it signed expires."""
        for r in records:
            if r.state == "current":
                await self._store.update_key(
                    r.kid,
                    state="retiring",
                    retired_at=now,
                    expires_at=now + self._lifetime(r.alg),
                )

    async def rotate(self) -> KeyringView:
        """For every kept algorithm, make the next key current now; the current one
        retires; a new next is made. ConfigurationError if nothing is stored to rotate
        (a static HMAC key without ID-token algorithms)."""
        if not self._algs:
            raise ConfigurationError("a key from AUTHGATE_HS256_SECRET does not rotate")
        async with self._store.key_lock():
            now = self._clock.now()
            for alg in self._algs:
                await self._promote(now, alg)
        return await self.refresh()

    async def import_key(self, key: Key, *, activate: bool) -> KeyRecord:
        """Store an imported private key of a kept algorithm: published at once, and that
        algorithm's current key if ``activate``. InvalidKey for a public key or an
        algorithm the keyring does not keep."""
        if not key.can_sign:
            raise InvalidKey("an imported key must hold its private part")
        if key.alg not in self._algs:
            raise InvalidKey(
                f"the keyring keeps no {key.alg} keys (AUTHGATE_SIGNING_ALG, "
                "AUTHGATE_ID_TOKEN_ALGS)",
                kid=key.kid,
            )
        async with self._store.key_lock():
            now = self._clock.now()
            records = [r for r in await self._store.list_keys() if r.alg == key.alg]
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
                alg=key.alg,
                activated=now if activate else None,
                key=key,
            )
            await self._store.insert_key(record)
        await self.refresh()
        return record

    async def refresh(self) -> KeyringView:
        """Reload the snapshot from the store (another instance may have rotated)."""
        if not self._algs:
            return self.view
        self._view = self._make_view(await self._store.list_keys())
        self._loaded_at = self._timer()
        return self._view

    async def refresh_if_older_than(self, seconds: float) -> bool:
        """Reload unless the snapshot is fresher than ``seconds``; True if it reloaded.
        Bounds how often unknown kids can make this instance read the store."""
        if not self._algs or self._timer() - self._loaded_at < seconds:
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
