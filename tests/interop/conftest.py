"""Shared fixtures for the interop tests: one key per algorithm, made once per session.

Peers (PyJWT, joserfc, Node's jose and jsonwebtoken) check expiry against the real clock,
so the claims are built around the real time at session start, with an hour of margin; our
own ``decode`` is always given that same instant as ``now=``.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from authgate.errors import InvalidToken
from authgate.jose import ALGORITHMS, ClaimsPolicy, Key, KeySet, decode, encode

# RSA keys are slow to generate: an "other" RSA key reuses the material of a sibling alg's key.
_RSA_SIBLING = {
    "RS256": "RS384", "RS384": "RS512", "RS512": "PS256",
    "PS256": "PS384", "PS384": "PS512", "PS512": "RS256",
}  # fmt: skip


@dataclass
class Interop:
    """What every interop test shares: keys, the issuer and audience, and the time."""

    issuer: str
    audience: str
    now: int
    keys: dict[str, Key]
    _others: dict[str, Key] = field(default_factory=dict)
    _jti: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def policy(self) -> ClaimsPolicy:
        return ClaimsPolicy(issuer=self.issuer, audience=self.audience)

    @property
    def access_policy(self) -> ClaimsPolicy:
        return ClaimsPolicy.access_token(issuer=self.issuer, audience=self.audience)

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """A full claim set (every claim the default policy requires), with a fresh jti."""
        base: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": "user-8f3a",
            "iat": self.now,
            "exp": self.now + 3600,
            "jti": f"jti-{next(self._jti)}",
            "scope": "posts:read posts:write",
            "roles": ["editor"],
            # Non-ASCII, astral plane and an escape-worthy character: UTF-8 must round-trip.
            "name": 'Zoë "Ω" 🚀',
        }
        base.update(overrides)
        return base

    def signed_here(self, alg: str, **claims: Any) -> tuple[Key, dict[str, Any], str]:
        """Our key for ``alg``, a fresh claim set (with ``claims``) and our token over it."""
        key = self.keys[alg]
        full = self.claims(**claims)
        return key, full, encode(full, key)

    def access_token_here(self, alg: str) -> tuple[Key, dict[str, Any], str]:
        """Our key for ``alg``, the claims of an access token and our ``at+jwt`` over them."""
        key = self.keys[alg]
        full = self.claims(client_id="authgate", sid="sid-1")
        return key, full, encode(full, key, typ="at+jwt")

    def swapped_payload(self, alg: str) -> str:
        """Our token for alice carrying the payload of our token for mallory."""
        head, _, sig = encode(self.claims(sub="alice"), self.keys[alg]).split(".")
        _, payload, _ = encode(self.claims(sub="mallory"), self.keys[alg]).split(".")
        return f"{head}.{payload}.{sig}"

    def decode_here(
        self, token: str, keys: Key | KeySet, alg: str, *, access: bool = False
    ) -> dict[str, Any]:
        """Our ``decode`` of a peer's token at the session's instant, allowing ``alg`` only,
        under the plain policy (or, with ``access``, the access-token one)."""
        policy = self.access_policy if access else self.policy
        return decode(token, keys, algorithms=[alg], policy=policy, now=self.now)

    def refused_here(
        self, token: str, keys: KeySet, alg: str, error: type[InvalidToken], code: str
    ) -> None:
        """Our ``decode`` refuses a peer's token with ``error`` and its stable ``code``."""
        with pytest.raises(error) as info:
            self.decode_here(token, keys, alg)
        assert info.value.code == code

    def secret_or_public_jwk(self, alg: str) -> dict[str, str]:
        """What a verifying peer is given: the secret for HMAC, else the public JWK."""
        key = self.keys[alg]
        return key.to_jwk(private=key.is_symmetric)

    def other_key(self, alg: str) -> Key:
        """A key with the same ``alg`` and ``kid`` as ours, but different material.

        A token it signs finds our key by kid and must then fail the signature check.
        """
        if alg not in self._others:
            ours = self.keys[alg]
            if alg in _RSA_SIBLING:
                material = self.keys[_RSA_SIBLING[alg]].to_jwk(private=True)
            else:
                material = Key.generate(alg).to_jwk(private=True)
            material |= {"alg": alg, "kid": ours.kid}
            other = Key.from_jwk(material)
            assert other.kid == ours.kid
            assert other.thumbprint() != ours.thumbprint()
            self._others[alg] = other
        return self._others[alg]


@pytest.fixture(scope="session")
def interop() -> Interop:
    return Interop(
        issuer="https://auth.example.com",
        audience="api.example.com",
        now=int(time.time()),
        keys={alg: Key.generate(alg) for alg in sorted(ALGORITHMS)},
    )
