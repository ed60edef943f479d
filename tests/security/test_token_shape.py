"""Only the three-segment compact JWS exists, and its size is capped before parsing.

RFC 8725 section 2.3 (JWE/JWS confusion), RFC 7515 section 7.2 (JSON serialization, which
authgate does not accept), and the size cap of the design (8 KiB by default, ``max_size``).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import pytest

from _support.tokens import NOW, b64, claims, forge, header_for, jbytes, sign_segments
from authgate.errors import InvalidSignature, MalformedToken, TokenTooLarge
from authgate.jose import MAX_TOKEN_SIZE, decode, encode, jws, jwt, verify

from ._helpers import ENTRY_POINTS, FAMILY_ALGS, POLICY, decode_as, key_for, refused, verify_as


def parts(alg: str = "HS256") -> tuple[str, str, str]:
    head, payload, sig = encode(claims(), key_for(alg)).split(".")
    return head, payload, sig


def test_default_cap_is_8_kib() -> None:
    assert MAX_TOKEN_SIZE == 8192


def jwe_shaped() -> list[str]:
    head, payload, sig = parts()
    iv, tag = b64(b"\x01" * 12), b64(b"\x02" * 16)
    dir_header = b64(jbytes({"alg": "dir", "enc": "A256GCM", "kid": key_for("HS256").kid}))
    oaep_header = b64(jbytes({"alg": "RSA-OAEP", "enc": "A128CBC-HS256"}))
    return [
        f"{dir_header}..{iv}.{b64(b'ciphertext')}.{tag}",
        f"{oaep_header}.{b64(b'k' * 256)}.{iv}.{b64(b'ciphertext')}.{tag}",
        f"{head}.{payload}.{sig}.{iv}.{tag}",
        f"{head}..{payload}.{sig}.{tag}",
        f"{head}.{payload}.{sig}..",
    ]


def json_serialized() -> list[str]:
    head, payload, sig = parts()
    general = {"payload": payload, "signatures": [{"protected": head, "signature": sig}]}
    flattened = {"payload": payload, "protected": head, "signature": sig}
    with_header = {**flattened, "header": {"kid": key_for("HS256").kid}}
    return [json.dumps(doc) for doc in (general, flattened, with_header)] + [
        json.dumps(general, separators=(",", ":")),
        json.dumps([general]),
        json.dumps(f"{head}.{payload}.{sig}"),
    ]


def wrong_segment_counts() -> list[str]:
    head, payload, sig = parts()
    return [
        "",
        ".",
        "..",
        "...",
        "....",
        head,
        f"{head}.{payload}",
        f"{head}.{payload}.",
        f".{payload}.{sig}",
        f"{head}..",
        f"..{sig}",
        f"{head}.{payload}.{sig}.",
        f".{head}.{payload}.{sig}",
        f"{head}.{payload}..{sig}",
        f"{head}..{payload}.{sig}",
        f"{head}.{payload}.{sig}.{sig}",
        f"{head}.{head}.{payload}.{sig}",
        f"{head}.{payload}.{sig}.{payload}.{sig}.{sig}",
        f"{head}{payload}{sig}",
        f"{head}.{payload}{sig}",
    ]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("index", range(5))
def test_jwe_shaped_token_is_malformed(entry: str, index: int) -> None:
    with refused(MalformedToken):
        ENTRY_POINTS[entry](jwe_shaped()[index], key_for("HS256"))


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("index", range(6))
def test_json_serialized_jws_is_malformed(entry: str, index: int) -> None:
    token = json_serialized()[index]
    for form in (token, token.encode()):
        with refused(MalformedToken):
            ENTRY_POINTS[entry](form, key_for("HS256"))


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("index", range(20))
def test_wrong_segment_count_or_empty_segment_is_malformed(entry: str, index: int) -> None:
    token = wrong_segment_counts()[index]
    for form in (token, token.encode()):
        with refused(MalformedToken):
            ENTRY_POINTS[entry](form, key_for("HS256"))


def test_empty_payload_is_not_a_jwt() -> None:
    # A signed empty payload is a valid JWS (verify returns it), never a JWT.
    key = key_for("HS256")
    head = b64(jbytes(header_for(key)))
    token = sign_segments(head, "", key)
    assert verify_as(token, key) == (header_for(key), b"")
    with refused(MalformedToken):
        decode_as(token, key)


@pytest.mark.parametrize("alg", FAMILY_ALGS)
def test_detached_payload_does_not_verify(alg: str) -> None:
    # Dropping the payload of a real token (RFC 7515 Appendix F shape) breaks its signature,
    # and the signature is checked before the (empty) payload is parsed.
    head, _, sig = parts(alg)
    key = key_for(alg)
    with refused(InvalidSignature):
        verify_as(f"{head}..{sig}", key)
    with refused(InvalidSignature):
        decode_as(f"{head}..{sig}", key)


NOT_TOKENS: tuple[Any, ...] = (None, 0, 1.5, ["a.b.c"], {"token": "a.b.c"}, object())


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("value", NOT_TOKENS, ids=lambda v: type(v).__name__)
def test_token_that_is_not_str_or_bytes_is_malformed(entry: str, value: Any) -> None:
    with refused(MalformedToken):
        ENTRY_POINTS[entry](value, key_for("HS256"))


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_bytearray_and_memoryview_are_refused(entry: str) -> None:
    token = encode(claims(), key_for("HS256")).encode()
    for value in (bytearray(token), memoryview(token)):
        with refused(MalformedToken):
            ENTRY_POINTS[entry](value, key_for("HS256"))


# --- the size cap ---------------------------------------------------------------------------


def token_of_length(length: int, alg: str = "HS256") -> str:
    """A genuine token of exactly ``length`` characters (a padding claim; JSON whitespace in
    the header, since base64url lengths skip every 4k+1)."""
    key = key_for(alg)
    base = len(encode(claims(pad=""), key))
    guess = (length - base) * 3 // 4
    for spaces in range(4):
        head = jbytes(header_for(key))[:-1] + b" " * spaces + b"}"
        for pad in range(max(0, guess - 16), guess + 16):
            token = forge(key, header=head, payload=claims(pad="x" * pad))
            if len(token) == length:
                return token
    raise AssertionError(f"cannot build a token of {length} characters")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_token_at_the_cap_is_accepted_and_one_over_is_too_large(entry: str) -> None:
    key = key_for("HS256")
    at_cap = token_of_length(MAX_TOKEN_SIZE)
    ENTRY_POINTS[entry](at_cap, key)
    ENTRY_POINTS[entry](at_cap.encode(), key)
    over = token_of_length(MAX_TOKEN_SIZE + 1)
    for form in (over, over.encode()):
        with refused(TokenTooLarge):
            ENTRY_POINTS[entry](form, key)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("length", [400, 1000, 4000])
def test_max_size_is_the_cap(entry: str, length: int) -> None:
    key = key_for("HS256")
    token = token_of_length(length)
    ENTRY_POINTS[entry](token, key, max_size=length)
    for cap in (length - 1, length // 2, 1, 0):
        for form in (token, token.encode()):
            with refused(TokenTooLarge):
                ENTRY_POINTS[entry](form, key, max_size=cap)


def test_max_size_can_raise_the_cap() -> None:
    key = key_for("ES256")
    token = encode(claims(blob="b" * 12000), key)
    with refused(TokenTooLarge):
        decode_as(token, key)
    assert decode_as(token, key, max_size=1 << 16)["blob"] == "b" * 12000


OVERSIZED: tuple[str | bytes, ...] = (
    "a" * (MAX_TOKEN_SIZE + 1),
    "." * (MAX_TOKEN_SIZE + 1),
    "\u00e9" * (MAX_TOKEN_SIZE + 1),
    "\ud800" * (MAX_TOKEN_SIZE + 1),
    "{" * (MAX_TOKEN_SIZE + 1),
    b"\xff" * (MAX_TOKEN_SIZE + 1),
    b"a.b.c" + b" " * MAX_TOKEN_SIZE,
    "e" + "y" * 100_000,
    "a." * 100_000,
)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("index", range(len(OVERSIZED)))
def test_oversized_garbage_is_too_large_not_malformed(entry: str, index: int) -> None:
    with refused(TokenTooLarge):
        ENTRY_POINTS[entry](OVERSIZED[index], key_for("HS256"))


def test_oversized_token_is_refused_before_any_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("parsed a token that is over the size cap")

    key = key_for("HS256")
    big = encode(claims(pad="p" * 7000), key)
    small = encode(claims(), key)
    assert len(big) > MAX_TOKEN_SIZE
    # Trap every decoder the codec could reach: the base64 and JSON primitives, and each
    # function jws/jwt take from the private _b64/_json modules or name as a parser.
    monkeypatch.setattr(binascii, "a2b_base64", must_not_run)
    monkeypatch.setattr(base64, "urlsafe_b64decode", must_not_run)
    monkeypatch.setattr(json, "loads", must_not_run)
    monkeypatch.setattr(json.JSONDecoder, "decode", must_not_run)
    try:
        import orjson
    except ImportError:  # pragma: no cover - only if the codec does not use orjson
        pass
    else:
        monkeypatch.setattr(orjson, "loads", must_not_run)
    for module in (jws, jwt):
        for name, value in list(vars(module).items()):
            origin = getattr(value, "__module__", "") or ""
            if callable(value) and (
                origin.startswith(("authgate.jose._b64", "authgate.jose._json"))
                or "parse" in name
                or "loads" in name
            ):
                monkeypatch.setattr(module, name, must_not_run)
    for form in (big, big.encode()):
        with refused(TokenTooLarge):
            decode(form, key, algorithms=["HS256"], policy=POLICY, now=NOW)
        with refused(TokenTooLarge):
            verify(form, key, algorithms=["HS256"])
    # The traps are live: a token under the cap does reach them.
    with pytest.raises(AssertionError, match="parsed a token"):
        verify(small, key, algorithms=["HS256"])
    with refused(TokenTooLarge):
        decode(small, key, algorithms=["HS256"], policy=POLICY, now=NOW, max_size=len(small) - 1)
