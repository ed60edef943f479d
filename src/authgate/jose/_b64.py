"""Canonical base64url (RFC 7515 section 2): no padding, no '+' or '/', no stray bits."""

from __future__ import annotations

import base64
import binascii
import re

from authgate.errors import MalformedToken

_ALPHABET = re.compile(rb"[A-Za-z0-9_-]*")
_TO_STD = bytes.maketrans(b"-_", b"+/")
# The last character of a 2- or 3-character tail may only carry zero low bits.
_LAST_OF_2 = frozenset(b"AQgw")
_LAST_OF_3 = frozenset(b"AEIMQUYcgkosw048")
_PAD = (b"", b"", b"==", b"=")


def b64encode(data: bytes) -> bytes:
    """Encode ``data`` as unpadded base64url bytes."""
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64encode_str(data: bytes) -> str:
    """Encode ``data`` as an unpadded base64url string."""
    return b64encode(data).decode("ascii")


def b64decode_checked(segment: bytes) -> bytes:
    """Decode a segment that the caller has checked holds no '+', '/' or '='.

    Raises MalformedToken for an impossible length, non-zero trailing bits or any byte
    outside the base64url alphabet.
    """
    rem = len(segment) % 4
    if rem == 1:
        raise MalformedToken("base64url segment has an impossible length")
    if rem == 2:
        if segment[-1] not in _LAST_OF_2:
            raise MalformedToken("base64url segment has non-zero trailing bits")
    elif rem == 3 and segment[-1] not in _LAST_OF_3:
        raise MalformedToken("base64url segment has non-zero trailing bits")
    try:
        return binascii.a2b_base64(segment.translate(_TO_STD) + _PAD[rem], strict_mode=True)
    except binascii.Error as exc:  # a byte outside the alphabet: whitespace, '.', non-ASCII
        raise MalformedToken("invalid base64url") from exc


def b64decode(segment: str | bytes) -> bytes:
    """Decode canonical base64url; raise MalformedToken on anything else."""
    if isinstance(segment, str):
        try:
            raw = segment.encode("ascii")
        except UnicodeEncodeError as exc:
            raise MalformedToken("base64url segment is not ASCII") from exc
    elif isinstance(segment, bytes):
        raw = segment
    else:
        raise MalformedToken("base64url segment must be str or bytes")
    if _ALPHABET.fullmatch(raw) is None:
        raise MalformedToken("base64url segment has characters outside the alphabet")
    return b64decode_checked(raw)
