"""Canonical base64url (RFC 7515 section 2): no padding, no '+' or '/', no stray bits."""

from __future__ import annotations

import base64
import binascii
import re

from authgate.errors import MalformedToken

_ALPHABET = re.compile(rb"[A-Za-z0-9_-]*")
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


# Maps the base64url alphabet onto the standard one, and '+', '/' and '=' (not base64url)
# onto '!', which a2b_base64's strict mode refuses, like every other byte outside it.
TO_STANDARD = bytes.maketrans(b"-_+/=", b"+/!!!")


def decode_translated(segment: bytes) -> bytes:
    """Decode a segment already passed through TO_STANDARD.

    Raises MalformedToken for an impossible length, non-zero trailing bits or any byte
    outside the base64url alphabet.
    """
    rem = len(segment) % 4
    if rem:
        if rem == 1:
            raise MalformedToken("base64url segment has an impossible length")
        if segment[-1] not in (_LAST_OF_2 if rem == 2 else _LAST_OF_3):
            raise MalformedToken("base64url segment has non-zero trailing bits")
        segment += _PAD[rem]
    try:
        return binascii.a2b_base64(segment, strict_mode=True)
    except binascii.Error as exc:
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
    return decode_translated(raw.translate(TO_STANDARD))


def b64decode_checked(segment: bytes) -> bytes:
    """Decode canonical base64url bytes; raise MalformedToken on anything else."""
    return decode_translated(segment.translate(TO_STANDARD))
