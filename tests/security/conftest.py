"""Fixtures for the security suite.

Keys are generated once per session by ``_helpers.key_for`` / ``attacker_key_for`` (cached),
so that parametrize lists and hypothesis tests can use them too; fixtures here build on them.
"""

from __future__ import annotations

import pytest

from authgate.jose import Key, KeySet

from ._helpers import ALL_ALGS, ASYM_ALGS, key_for


@pytest.fixture(scope="session")
def keys() -> dict[str, Key]:
    """One private key per algorithm, each with its RFC 7638 thumbprint as kid."""
    return {alg: key_for(alg) for alg in ALL_ALGS}


@pytest.fixture(scope="session")
def public_keyset(keys: dict[str, Key]) -> KeySet:
    """What a verifier loads from the issuer's JWKS: every asymmetric public key."""
    published = KeySet([keys[alg].public() for alg in ASYM_ALGS]).to_jwks()
    return KeySet.from_jwks(published)
