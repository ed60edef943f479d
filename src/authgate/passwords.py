"""Password hashing with argon2id (argon2-cffi), off the event loop, with bounded concurrency.

Each hash holds ``memory_cost`` KiB, so at most ``max_concurrency`` run at once and at most
``max_queue`` more may wait; beyond that :class:`Overloaded` is raised, which the server maps
to 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from typing import Final

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from authgate.errors import InvalidRequest, Overloaded, PredictablePassword, WeakPassword

MAX_PASSWORD_BYTES = 1024
MIN_PASSWORD_CHARS = 8


class PasswordTooLong(InvalidRequest):
    """A password over 1024 bytes is never hashed."""

    code = "password_too_long"


@dataclass(frozen=True, slots=True, kw_only=True)
class Argon2Params:
    """argon2id parameters; the defaults are OWASP's first recommendation."""

    memory_cost: int = 19 * 1024  # KiB
    time_cost: int = 2
    parallelism: int = 1
    hash_len: int = 32
    salt_len: int = 16


def normalize_password(password: str) -> bytes:
    """NFKC-normalise and encode a password; refuse one over 1024 bytes."""
    if len(password) > MAX_PASSWORD_BYTES:
        raise PasswordTooLong(f"passwords are at most {MAX_PASSWORD_BYTES} bytes")
    encoded = unicodedata.normalize("NFKC", password).encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_PASSWORD_BYTES:
        raise PasswordTooLong(f"passwords are at most {MAX_PASSWORD_BYTES} bytes")
    return encoded


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The bundled list of common passwords (lower case)."""
    text = resources.files("authgate.data").joinpath("common-passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


# Sequences a person types without thinking: the digits (0 follows 9), the alphabet, and
# the rows of a QWERTY keyboard.
_SEQUENCES: Final = (
    "0123456789" * 2,
    "abcdefghijklmnopqrstuvwxyz" * 2,
    "qwertyuiop",
    "asdfghjkl",
    "zxcvbnm",
)
_MIN_DISTINCT: Final = 4
_MAX_RUNS: Final = 2


def _in_sequence(pair: str) -> bool:
    """True if ``pair`` is two neighbours (either way) in one of the sequences."""
    return any(pair in seq or pair[::-1] in seq for seq in _SEQUENCES)


def _runs(text: str) -> int:
    """The fewest pieces ``text`` splits into, each a repetition of one character or a
    sequence read one way (``aaaa``, ``1234``, ``9876``, ``qwer``). Any piece of a run is a
    run, so taking the longest run from the left is optimal."""
    runs = 0
    i = 0
    while i < len(text):
        runs += 1
        j = i + 1
        if j < len(text):
            step = text[i : j + 1]
            if step[0] == step[1]:
                while j < len(text) and text[j] == text[i]:
                    j += 1
            elif _in_sequence(step):
                forward = any(step in seq for seq in _SEQUENCES)
                while j < len(text):
                    pair = text[j - 1 : j + 1]
                    if not (
                        (forward and any(pair in seq for seq in _SEQUENCES))
                        or (not forward and any(pair[::-1] in seq for seq in _SEQUENCES))
                    ):
                        break
                    j += 1
        i = j
    return runs


def predictability(password: str) -> str | None:
    """Why ``password`` is repetitive or sequential (NIST SP 800-63B 3.1.1.2), or None.

    Repetitive: fewer than 4 distinct characters (``aaaaaaaa``, sixteen spaces,
    ``abababab``). Sequential: it splits into at most 2 runs, each one repeated character
    or a sequence of digits, letters or keyboard keys read one way (``1234567890123456``,
    ``1234abcd``, ``zyxwvuts``). Compared case-folded, after NFKC."""
    folded = unicodedata.normalize("NFKC", password).casefold()
    if len(set(folded)) < _MIN_DISTINCT:
        return "repetitive"
    if _runs(folded) <= _MAX_RUNS:
        return "sequential"
    return None


def check_new_password(password: str) -> None:
    """Refuse a password under 8 characters, over 1024 bytes, on the common list
    (WeakPassword), or repetitive or sequential (PredictablePassword)."""
    normalize_password(password)
    normalized = unicodedata.normalize("NFKC", password)
    # Counted as typed and as normalised: NFKC expands some code points (U+FDFA is 18
    # characters), and one keystroke must not pass for eight.
    if min(len(password), len(normalized)) < MIN_PASSWORD_CHARS:
        raise WeakPassword(f"passwords need at least {MIN_PASSWORD_CHARS} characters")
    if normalized.casefold() in common_passwords():
        raise WeakPassword("this password is on the list of common passwords")
    why = predictability(normalized)
    if why is not None:
        raise PredictablePassword(f"this password is {why}", kind=why)


class PasswordHasher:
    """argon2id hash/verify in a thread pool, with a bounded queue."""

    def __init__(
        self,
        params: Argon2Params | None = None,
        *,
        max_concurrency: int = 2,
        max_queue: int = 64,
        retry_after: int = 1,
    ) -> None:
        self.params = params or Argon2Params()
        # Each field of Argon2Params is the argon2-cffi keyword of the same name.
        self._argon = _Argon2(**asdict(self.params), type=Type.ID)
        self._pool = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="argon2")
        self._slots = max_concurrency + max_queue
        self._in_flight = 0
        self._started = 0
        self.retry_after = retry_after
        self._dummy_hash: str | None = None

    @property
    def in_flight(self) -> int:
        """Hashes running or queued now."""
        return self._in_flight

    @property
    def started(self) -> int:
        """Hashes and verifications started since this hasher was made."""
        return self._started

    async def _run(self, fn: object, *args: object) -> object:
        if self._in_flight >= self._slots:
            raise Overloaded("password hashing queue is full", retry_after=self.retry_after)
        self._in_flight += 1
        self._started += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, fn, *args)  # type: ignore[arg-type]
        finally:
            self._in_flight -= 1

    def hash_sync(self, password: str) -> str:
        """Hash a password (blocking)."""
        return self._argon.hash(normalize_password(password))

    def _verify_sync(self, stored: str, password: bytes) -> bool:
        try:
            return self._argon.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def hash(self, password: str) -> str:
        """Hash a password off the event loop."""
        encoded = normalize_password(password)
        result = await self._run(self._argon.hash, encoded)
        assert isinstance(result, str)
        return result

    async def verify(self, stored: str | None, password: str) -> bool:
        """Check a password against a stored hash, in constant work.

        With ``stored=None`` (an unknown user) a dummy hash is verified, so the cost is
        the same. Returns False on any mismatch; never raises for a wrong password.
        """
        try:
            encoded = normalize_password(password)
        except PasswordTooLong:
            encoded = b""
            stored = None
        if stored is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash("authgate dummy password for unknown users")
            await self._run(self._verify_sync, self._dummy_hash, encoded)
            return False
        ok = await self._run(self._verify_sync, stored, encoded)
        return ok is True

    def needs_rehash(self, stored: str) -> bool:
        """True if ``stored`` was made with other parameters than the current ones."""
        try:
            return self._argon.check_needs_rehash(stored)
        except (InvalidHashError, ValueError):
            return True

    def close(self) -> None:
        """Stop the thread pool."""
        self._pool.shutdown(wait=False, cancel_futures=True)


__all__ = [
    "MAX_PASSWORD_BYTES",
    "Argon2Params",
    "PasswordHasher",
    "PasswordTooLong",
    "check_new_password",
    "common_passwords",
    "normalize_password",
    "predictability",
]
