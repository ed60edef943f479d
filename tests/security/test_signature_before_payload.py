"""The order of checks in ``decode``: the header (it names the key), then the signature over
the signing input, and only then the payload's JSON. A payload nobody trusted signed is
never handed to the JSON parser, however hostile or expensive it is to parse."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from _support.tokens import b64, forge, header_for, jbytes, sign_segments
from authgate.errors import InvalidSignature, MalformedToken
from authgate.jose import KeySet
from authgate.jose import jwt as jwt_module

from ._helpers import FAMILY_ALGS, attacker_key_for, decode_as, key_for, refused

# Payloads the strict parser refuses (each would be MalformedToken if it were parsed), some
# of them costly to parse: deep nesting, a 5000-digit number.
HOSTILE: dict[str, bytes] = {
    "not-json": b"{not json",
    "empty": b"",
    "array": b"[]",
    "duplicate-members": b'{"sub":"a","sub":"b"}',
    "nan": b'{"exp":NaN}',
    "invalid-utf8": b'{"sub":"\xff"}',
    "bom": "\ufeff{}".encode(),
    "deep-nesting": b'{"a":' + b"[" * 2400 + b"]" * 2400 + b"}",
    "huge-number": b'{"exp":' + b"9" * 5000 + b"}",
}


def _attacker_token(alg: str, payload: bytes) -> str:
    """A token in the server key's name (its alg and kid) that the attacker signed."""
    head = b64(jbytes(header_for(key_for(alg))))
    return sign_segments(head, b64(payload), attacker_key_for(alg))


@pytest.mark.parametrize("payload", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("alg", FAMILY_ALGS)
def test_signature_before_payload_bad_signature_wins_over_a_hostile_payload(
    alg: str, payload: bytes
) -> None:
    token = _attacker_token(alg, payload)
    with refused(InvalidSignature):
        decode_as(token, key_for(alg))
    with refused(InvalidSignature):
        decode_as(token, KeySet([key_for(alg), key_for("ES384")]))


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every payload ``decode`` hands to the JSON parser, recorded as it goes by."""
    seen: list[bytes] = []
    real: Callable[..., dict[str, Any]] = jwt_module.loads_object

    def recording(data: bytes, **kwargs: Any) -> dict[str, Any]:
        seen.append(data)
        return real(data, **kwargs)

    monkeypatch.setattr(jwt_module, "loads_object", recording)
    return seen


@pytest.mark.parametrize("alg", FAMILY_ALGS)
def test_signature_before_payload_parser_never_sees_an_unsigned_payload(
    alg: str, parses: list[bytes]
) -> None:
    good = forge(key_for(alg))
    decode_as(good, key_for(alg))
    assert len(parses) == 1  # the recorder is wired to decode's parser
    parses.clear()
    for payload in (jbytes({"sub": "x"}), *HOSTILE.values()):
        with refused(InvalidSignature):
            decode_as(_attacker_token(alg, payload), key_for(alg))
    assert parses == []


@pytest.mark.parametrize("payload", HOSTILE.values(), ids=HOSTILE.keys())
def test_signature_before_payload_a_signed_hostile_payload_is_still_refused(
    payload: bytes,
) -> None:
    """Once the signature holds, the payload meets the strict parser as before."""
    key = key_for("HS256")
    with refused(MalformedToken):
        decode_as(forge(key, payload=payload), key)
