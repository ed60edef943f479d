"""CVE-2016-7036 (python-jose < 1.3.2): HMAC signatures compared with ``==``, a timing
side channel that lets an attacker recover a valid MAC byte by byte.

authgate delegates the comparison to pyca/cryptography's ``HMAC.verify`` (constant time).
Timing itself is too noisy to test reliably, so this checks the delegation: the expected MAC
is never materialised for a Python-level comparison.
"""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import hmac as pyca_hmac

from _support.tokens import b64, claims, unb64
from authgate.errors import InvalidSignature
from authgate.jose import encode, keys

from ._helpers import HMAC_ALGS, decode_as, refused


class _SpyHMAC:
    calls: list[str] = []  # noqa: RUF012 - shared on purpose across instances

    def __init__(self, key: bytes, algorithm: Any, *, inner: Any = None) -> None:
        self._inner = inner if inner is not None else pyca_hmac.HMAC(key, algorithm)

    def copy(self) -> _SpyHMAC:
        return _SpyHMAC(b"", None, inner=self._inner.copy())

    def update(self, data: bytes) -> None:
        self._inner.update(data)

    def finalize(self) -> bytes:
        _SpyHMAC.calls.append("finalize")
        return self._inner.finalize()

    def verify(self, signature: bytes) -> None:
        _SpyHMAC.calls.append("verify")
        self._inner.verify(signature)


class _SpyModule:
    HMAC = _SpyHMAC


@pytest.mark.parametrize("alg", HMAC_ALGS)
def test_cve_2016_7036_hmac_is_verified_in_constant_time(
    alg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys, "hmac", _SpyModule)
    key = keys.Key.generate(alg)  # a fresh key, built with the spy: it keeps its context
    token = encode(claims(), key)
    head, payload, sig = token.split(".")
    raw = unb64(sig)
    wrong_last = raw[:-1] + bytes([raw[-1] ^ 1])
    wrong_first = bytes([raw[0] ^ 1]) + raw[1:]

    _SpyHMAC.calls = []
    assert decode_as(token, key)["jti"] == "jti-1"
    assert _SpyHMAC.calls == ["verify"]

    for bad in (wrong_last, wrong_first, raw[:-1], b"\x00" * len(raw)):
        _SpyHMAC.calls = []
        with refused(InvalidSignature):
            decode_as(f"{head}.{payload}.{b64(bad)}", key)
        assert _SpyHMAC.calls == ["verify"]
