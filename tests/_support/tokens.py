"""Tokens assembled by hand, for the codec, security and fuzzing tests, and read back
unverified, for the server tests.

Every byte is the test's to choose: the segments are JSON the test wrote (or raw bytes),
and the signing input is signed with ``key.sign``, so that the ONLY defect of a token is
the one under test.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from authgate.jose import Key

NOW = 1_700_000_000
ISS = "https://auth.example.com"
AUD = "api"

DROP: Any = object()
"""A change to ``DROP`` deletes the member."""


def changed(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied in order; a change to ``DROP`` deletes the member."""
    return {name: value for name, value in {**base, **changes}.items() if value is not DROP}


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims at NOW for a policy on ISS and AUD, with ``changes``."""
    base = {
        "iss": ISS,
        "sub": "user-1",
        "aud": AUD,
        "exp": NOW + 600,
        "iat": NOW - 10,
        "jti": "jti-1",
    }
    return changed(base, changes)


def header_for(key: Key, **changes: Any) -> dict[str, Any]:
    """The header our signer would write for ``key`` (alg, kid, typ JWT), with ``changes``."""
    return changed({"alg": key.alg, "kid": key.kid, "typ": "JWT"}, changes)


def b64(data: bytes) -> str:
    """Canonical unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(segment: str) -> bytes:
    """Lenient base64url decoding, for taking valid tokens apart."""
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def jbytes(obj: Any) -> bytes:
    """Compact JSON bytes (what a normal signer emits)."""
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def sign_segments(head_seg: str, payload_seg: str, key: Key) -> str:
    """Join two already-encoded segments and sign them with ``key``."""
    signing_input = f"{head_seg}.{payload_seg}".encode()
    return f"{head_seg}.{payload_seg}.{b64(key.sign(signing_input))}"


def forge(
    key: Key,
    *,
    header: Mapping[str, Any] | bytes | None = None,
    payload: Mapping[str, Any] | bytes | None = None,
) -> str:
    """A token signed by ``key``. ``header``/``payload`` are dicts (compact JSON) or raw bytes."""
    head = header_for(key) if header is None else header
    body = claims() if payload is None else payload
    head_raw = head if isinstance(head, bytes) else jbytes(head)
    body_raw = body if isinstance(body, bytes) else jbytes(body)
    return sign_segments(b64(head_raw), b64(body_raw), key)


def resign(token: str, key: Key) -> str:
    """Replace the signature of ``token`` with a valid one over its (possibly odd) first part."""
    head_seg, payload_seg = token.split(".")[:2]
    return sign_segments(head_seg, payload_seg, key)


def _segment(token: str, index: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(unb64(token.split(".")[index]))
    return data


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a JWS, unverified (for reading sid, jti, ...)."""
    return _segment(token, 1)


def header_of(token: str) -> dict[str, Any]:
    """The protected header of a JWS, unverified."""
    return _segment(token, 0)
