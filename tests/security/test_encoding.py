"""Every encoding rule (RFC 8725 sections 2.6 and 3.7; RFC 7515 section 2; RFC 8259).

One byte string has exactly one accepted encoding: canonical unpadded base64url with zero
trailing bits, over strict UTF-8 JSON objects without duplicate members, non-finite numbers,
lone surrogates or excessive nesting. Anything else is MalformedToken, in every segment.

Tokens are assembled by hand and signed over their exact (odd) signing input, so the
encoding defect is the only defect.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest

from _support.tokens import b64, claims, header_for, jbytes, sign_segments, unb64
from authgate.errors import MalformedToken
from authgate.jose import Key, encode

from ._helpers import ENTRY_POINTS, decode_as, key_for, refused

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
SEGMENTS = ("header", "payload", "signature")


def hs256() -> Key:
    return key_for("HS256")


def raw_of_length_mod3(obj: dict[str, object], remainder: int) -> bytes:
    """Compact JSON of ``obj`` padded with insignificant spaces to ``len % 3 == remainder``."""
    raw = jbytes(obj)
    while len(raw) % 3 != remainder:
        raw = raw[:-1] + b" }"
    return raw


def stray_bit_variants(segment: str) -> list[str]:
    """Every other last character that decodes to the same bytes under a lax decoder."""
    unused_bits = {2: 4, 3: 2}[len(segment) % 4]
    last = ALPHABET.index(segment[-1])
    assert last % (1 << unused_bits) == 0, "the input segment must be canonical"
    return [segment[:-1] + ALPHABET[last | extra] for extra in range(1, 1 << unused_bits)]


def lax_decode(segment: str) -> bytes:
    return base64.b64decode(segment.replace("-", "+").replace("_", "/") + "==")


def check_malformed(token: str | bytes, key: Key, *, header_only: bool = False) -> None:
    """MalformedToken from decode; from verify too when the defect is not in the payload."""
    with refused(MalformedToken):
        decode_as(token, key)
    if header_only:
        with refused(MalformedToken):
            ENTRY_POINTS["verify"](token, key)


def check_jws_malformed(token: str | bytes, key: Key) -> None:
    for entry in ENTRY_POINTS.values():
        with refused(MalformedToken):
            entry(token, key)


# --- base64url: trailing bits ----------------------------------------------------------------


@pytest.mark.parametrize("remainder", [1, 2], ids=["tail-2-chars", "tail-3-chars"])
def test_header_with_non_zero_trailing_bits_is_malformed(remainder: int) -> None:
    key = hs256()
    head = b64(raw_of_length_mod3(header_for(key), remainder))
    payload = b64(jbytes(claims()))
    decode_as(sign_segments(head, payload, key), key)  # the canonical form is fine
    for variant in stray_bit_variants(head):
        assert lax_decode(variant) == lax_decode(head)
        check_jws_malformed(sign_segments(variant, payload, key), key)


@pytest.mark.parametrize("remainder", [1, 2], ids=["tail-2-chars", "tail-3-chars"])
def test_payload_with_non_zero_trailing_bits_is_malformed(remainder: int) -> None:
    key = hs256()
    head = b64(jbytes(header_for(key)))
    payload = b64(raw_of_length_mod3(claims(), remainder))
    decode_as(sign_segments(head, payload, key), key)
    for variant in stray_bit_variants(payload):
        assert lax_decode(variant) == lax_decode(payload)
        check_jws_malformed(sign_segments(head, variant, key), key)


# HS256 signatures (32 bytes) end in a 3-character tail; 64- and 256-byte ones in a
# 2-character tail. HS384, ES384 and ES512 (48, 96, 132 bytes) have no spare bits at all.
@pytest.mark.parametrize("alg", ["HS256", "HS512", "ES256", "EdDSA", "RS256", "PS512"])
def test_signature_with_non_zero_trailing_bits_is_malformed(alg: str) -> None:
    key = key_for(alg)
    token = encode(claims(), key)
    head, payload, sig = token.split(".")
    for variant in stray_bit_variants(sig):
        assert lax_decode(variant) == unb64(sig)
        check_jws_malformed(f"{head}.{payload}.{variant}", key)


def _to_impossible_lengths(segment: str) -> list[str]:
    """The segment grown with 'A's, and cut, to a length of 4k+1 (never valid base64)."""
    grown = segment + "A" * ((1 - len(segment)) % 4 or 4)
    cut = segment[: len(segment) - (len(segment) - 1) % 4]
    return [grown, grown + "AAAA", cut, segment[:1], segment[:5]]


@pytest.mark.parametrize("segment", SEGMENTS)
def test_segment_of_impossible_length_is_malformed(segment: str) -> None:
    key = hs256()
    head, payload, sig = encode(claims(), key).split(".")
    index = SEGMENTS.index(segment)
    for odd in _to_impossible_lengths((head, payload, sig)[index]):
        assert len(odd) % 4 == 1
        if segment == "header":
            token = sign_segments(odd, payload, key)
        elif segment == "payload":
            token = sign_segments(head, odd, key)
        else:
            token = f"{head}.{payload}.{odd}"
        check_jws_malformed(token, key)


# --- base64url: padding and the standard alphabet --------------------------------------------


@pytest.mark.parametrize("segment", SEGMENTS)
@pytest.mark.parametrize("padding", ["=", "==", "===", "====", "%3D"])
def test_padded_segment_is_malformed(segment: str, padding: str) -> None:
    key = hs256()
    for remainder in (0, 1, 2):
        head = b64(raw_of_length_mod3(header_for(key), remainder))
        payload = b64(raw_of_length_mod3(claims(), remainder))
        if segment == "header":
            token = sign_segments(head + padding, payload, key)
        elif segment == "payload":
            token = sign_segments(head, payload + padding, key)
        else:
            token = sign_segments(head, payload, key) + padding
        check_jws_malformed(token, key)


@pytest.mark.parametrize("segment", SEGMENTS)
def test_padding_inside_a_segment_is_malformed(segment: str) -> None:
    key = hs256()
    head, payload, sig = encode(claims(), key).split(".")
    index = SEGMENTS.index(segment)
    pieces = [head, payload, sig]
    pieces[index] = pieces[index][:8] + "==" + pieces[index][8:]
    token = ".".join(pieces) if segment == "signature" else sign_segments(pieces[0], pieces[1], key)
    check_jws_malformed(token, key)


def _key_with_plus_and_slash() -> Key:
    # '?' and '>' bytes put 6-bit groups 62 and 63 ('-' and '_') into the header's base64url.
    for prefix in ("", "k", "kk"):
        key = Key.generate("HS256", kid=f"{prefix}???>>>???>>>")
        head = b64(jbytes(header_for(key)))
        if "-" in head and "_" in head:
            return key
    raise AssertionError("no kid gives both '-' and '_'")


def _payload_with_plus_and_slash() -> bytes:
    for prefix in ("", "p", "pp"):
        raw = jbytes(claims(x=f"{prefix}???>>>???>>>"))
        if "-" in b64(raw) and "_" in b64(raw):
            return raw
    raise AssertionError("no claim gives both '-' and '_'")


def _token_with_plus_and_slash_in_signature(key: Key) -> str:
    for n in range(1000):
        token = encode(claims(jti=f"jti-{n}"), key)
        sig = token.split(".")[2]
        if "-" in sig and "_" in sig:
            return token
    raise AssertionError("no signature with both '-' and '_'")


STD_ALPHABET_SWAPS: dict[str, Callable[[str], str]] = {
    "all": lambda s: s.replace("-", "+").replace("_", "/"),
    "first-plus": lambda s: s.replace("-", "+", 1),
    "first-slash": lambda s: s.replace("_", "/", 1),
}


@pytest.mark.parametrize("segment", SEGMENTS)
@pytest.mark.parametrize("swap", STD_ALPHABET_SWAPS)
def test_standard_base64_alphabet_is_malformed(segment: str, swap: str) -> None:
    change = STD_ALPHABET_SWAPS[swap]
    if segment == "header":
        key = _key_with_plus_and_slash()
        head = b64(jbytes(header_for(key)))
        payload = b64(jbytes(claims()))
        decode_as(sign_segments(head, payload, key), key)  # the canonical form is fine
        token = sign_segments(change(head), payload, key)
    elif segment == "payload":
        key = hs256()
        head = b64(jbytes(header_for(key)))
        payload = b64(_payload_with_plus_and_slash())
        decode_as(sign_segments(head, payload, key), key)
        token = sign_segments(head, change(payload), key)
    else:
        key = hs256()
        head, payload, sig = _token_with_plus_and_slash_in_signature(key).split(".")
        token = f"{head}.{payload}.{change(sig)}"
    check_jws_malformed(token, key)


# --- characters outside the alphabet, whitespace, non-ASCII --------------------------------

STRAY = (
    " ",
    "\t",
    "\n",
    "\r",
    "\r\n",
    "\x00",
    "\x0b",
    "\x0c",
    "~",
    "!",
    "%",
    "+",
    "/",
    "=",
    "*",
    "$",
    "\\",
    '"',
    "'",
    "\u00e9",
    "\u00a0",
    "\u200b",
    "\ufeff",
    "\u3000",
    "\uff21",
    "\u0661",
    "\u2024",
    "\uff0e",
    "\u00b7",
)


@pytest.mark.parametrize("segment", SEGMENTS)
@pytest.mark.parametrize("char", STRAY, ids=lambda c: f"U+{ord(c[0]):04X}")
def test_character_outside_the_alphabet_inside_a_segment_is_malformed(
    segment: str, char: str
) -> None:
    key = hs256()
    head, payload, sig = encode(claims(), key).split(".")
    pieces = [head, payload, sig]
    index = SEGMENTS.index(segment)
    for position in (0, 5, len(pieces[index])):
        changed = list(pieces)
        changed[index] = changed[index][:position] + char + changed[index][position:]
        token = ".".join(changed)
        check_jws_malformed(token, key)
        check_jws_malformed(token.encode("utf-8", "surrogatepass"), key)


WRAPPERS = (
    " {}",
    "{} ",
    "\n{}",
    "{}\n",
    "{}\r\n",
    "\t{}",
    " {} ",
    "\ufeff{}",
    "{}\x00",
    "Bearer {}",
    "bearer {}",
    '"{}"',
    "<{}>",
)


@pytest.mark.parametrize("wrapper", WRAPPERS, ids=repr)
def test_whitespace_or_wrapping_around_the_token_is_malformed(wrapper: str) -> None:
    key = hs256()
    token = wrapper.format(encode(claims(), key))
    check_jws_malformed(token, key)
    check_jws_malformed(token.encode("utf-8"), key)


@pytest.mark.parametrize(
    "separator", [" .", ". ", "\n.", ".\n", "..", ".\u200b", "\uff0e", "\u3002", "\u2024", ","]
)
def test_anything_but_a_plain_dot_between_segments_is_malformed(separator: str) -> None:
    key = hs256()
    head, payload, sig = encode(claims(), key).split(".")
    for token in (f"{head}{separator}{payload}.{sig}", f"{head}.{payload}{separator}{sig}"):
        check_jws_malformed(token, key)
        check_jws_malformed(token.encode("utf-8"), key)


@pytest.mark.parametrize("raw", [b"\xc3\xa9", b"\xff", b"\x80", b"\xef\xbb\xbf", b"\xc0\xae"])
def test_non_ascii_bytes_in_a_bytes_token_are_malformed(raw: bytes) -> None:
    key = hs256()
    token = encode(claims(), key).encode()
    for position in (0, 10, token.index(b".") + 1, len(token)):
        check_jws_malformed(token[:position] + raw + token[position:], key)


# --- JSON: character encodings -------------------------------------------------------------


def header_text(key: Key) -> str:
    return jbytes(header_for(key)).decode()


def payload_text() -> str:
    return jbytes(claims()).decode()


CHARSETS = ("utf-16-le", "utf-16-be", "utf-16", "utf-32-le", "utf-32-be", "utf-32", "utf-8-sig")


@pytest.mark.parametrize("charset", CHARSETS)
def test_header_not_in_plain_utf8_is_malformed(charset: str) -> None:
    key = hs256()
    raw = header_text(key).encode(charset)
    check_jws_malformed(sign_segments(b64(raw), b64(jbytes(claims())), key), key)


@pytest.mark.parametrize("charset", CHARSETS)
def test_payload_not_in_plain_utf8_is_malformed(charset: str) -> None:
    key = hs256()
    raw = payload_text().encode(charset)
    head = b64(jbytes(header_for(key)))
    check_malformed(sign_segments(head, b64(raw), key), key)


INVALID_UTF8 = (
    b"\xff",
    b"\xfe",
    b"\x80",
    b"\xbf",
    b"\xc0\xaf",  # overlong '/'
    b"\xe0\x80\xaf",  # overlong '/'
    b"\xc1\xbf",
    b"\xed\xa0\x80",  # CESU-8 / encoded surrogate U+D800
    b"\xed\xbf\xbf",
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xf8\x88\x80\x80\x80",  # 5-byte form
    b"\xe2\x82",  # truncated
    b"\xc3",
)


@pytest.mark.parametrize("bad", INVALID_UTF8, ids=lambda b: b.hex())
def test_invalid_utf8_in_header_is_malformed(bad: bytes) -> None:
    key = Key.generate("HS256", kid="kid-x")
    raw = jbytes(header_for(key)).replace(b"kid-x", b"kid-" + bad)
    check_jws_malformed(sign_segments(b64(raw), b64(jbytes(claims())), key), key)


@pytest.mark.parametrize("bad", INVALID_UTF8, ids=lambda b: b.hex())
def test_invalid_utf8_in_payload_is_malformed(bad: bytes) -> None:
    key = hs256()
    head = b64(jbytes(header_for(key)))
    for raw in (
        jbytes(claims()).replace(b"user-1", b"user-" + bad),
        jbytes(claims(x="a")).replace(b'"x"', b'"x' + bad + b'"'),
        jbytes(claims())[:-1] + b" " + bad + b"}",
    ):
        check_malformed(sign_segments(head, b64(raw), key), key)


# --- JSON: documents that are not one strict object ------------------------------------------

# Each entry turns the valid JSON text of an object into an invalid one.
DOCUMENT_DEFECTS: dict[str, Callable[[str], str]] = {
    "array": lambda t: f"[{t}]",
    "string": lambda t: json.dumps(t),
    "number": lambda _t: "1",
    "float": lambda _t: "1.5",
    "null": lambda _t: "null",
    "true": lambda _t: "true",
    "empty": lambda _t: "",
    "whitespace": lambda _t: "   ",
    "two-objects": lambda t: t + t,
    "trailing-comma-doc": lambda t: t + ",",
    "trailing-garbage": lambda t: t + " x",
    "trailing-nul": lambda t: t + "\u0000",
    "trailing-comma-member": lambda t: t[:-1] + ",}",
    "leading-comma": lambda t: "{," + t[1:],
    "single-quotes": lambda t: t.replace('"', "'"),
    "unquoted-key": lambda t: "{a:1," + t[1:],
    "line-comment": lambda t: "// c\n" + t,
    "block-comment": lambda t: t[:-1] + "/* c */}",
    "unclosed": lambda t: t[:-1],
    "raw-control-char-in-string": lambda t: t[:-1] + ',"c":"a\u0001b"}',
    "raw-newline-in-string": lambda t: t[:-1] + ',"c":"a\nb"}',
    "bad-escape": lambda t: t[:-1] + ',"c":"\\x41"}',
    "short-unicode-escape": lambda t: t[:-1] + ',"c":"\\u41"}',
    "hex-number": lambda t: t[:-1] + ',"c":0x10}',
    "leading-zero": lambda t: t[:-1] + ',"c":01}',
    "plus-number": lambda t: t[:-1] + ',"c":+1}',
    "dot-number": lambda t: t[:-1] + ',"c":.5}',
    "NaN": lambda t: t[:-1] + ',"c":NaN}',
    "Infinity": lambda t: t[:-1] + ',"c":Infinity}',
    "-Infinity": lambda t: t[:-1] + ',"c":-Infinity}',
    "nan-lower": lambda t: t[:-1] + ',"c":nan}',
    "1e999": lambda t: t[:-1] + ',"c":1e999}',
    "-1e999": lambda t: t[:-1] + ',"c":-1e999}',
    "1E400": lambda t: t[:-1] + ',"c":1E400}',
    "1e5000-in-array": lambda t: t[:-1] + ',"c":[1,2,1e5000]}',
    "big-mantissa-overflow": lambda t: t[:-1] + ',"c":' + "9" * 400 + ".0}",
    "int-5000-digits": lambda t: t[:-1] + ',"c":' + "7" * 5000 + "}",
    "negative-int-5000-digits": lambda t: t[:-1] + ',"c":-' + "7" * 5000 + "}",
    "int-5000-digits-nested": lambda t: t[:-1] + ',"c":{"d":[' + "7" * 5000 + "]}}",
    "lone-high-surrogate": lambda t: t[:-1] + ',"c":"\\ud800"}',
    "lone-low-surrogate": lambda t: t[:-1] + ',"c":"\\udfff"}',
    "reversed-surrogates": lambda t: t[:-1] + ',"c":"\\udc00\\ud800"}',
    "high-surrogate-then-char": lambda t: t[:-1] + ',"c":"\\ud800x"}',
    "surrogate-at-end": lambda t: t[:-1] + ',"c":"abc\\udbff"}',
    "surrogate-in-key": lambda t: t[:-1] + ',"\\ud800":1}',
    "surrogate-in-nested-list": lambda t: t[:-1] + ',"c":[["\\ud800"]]}',
    "surrogate-in-nested-key": lambda t: t[:-1] + ',"c":{"\\udc00":1}}',
    "deep-array-33": lambda t: t[:-1] + ',"c":' + "[" * 33 + "]" * 33 + "}",
    "deep-array-1000": lambda t: t[:-1] + ',"c":' + "[" * 1000 + "]" * 1000 + "}",
    "deep-object-100": lambda t: t[:-1] + ',"c":' + '{"a":' * 100 + "1" + "}" * 100 + "}",
    "deep-unclosed-3000": lambda t: t[:-1] + ',"c":' + "[" * 3000,
    "deep-mixed-200": lambda t: t[:-1] + ',"c":' + '[{"a":' * 100 + "1" + "}]" * 100 + "}",
}

# Duplicates: a member repeated, whatever the spelling of its name.
DUPLICATES: dict[str, Callable[[str], str]] = {
    "same-value": lambda t: t[:-1] + "," + t[1:],
    "first-member-again": lambda t: t[:-1] + "," + t[1:].split(",")[0] + "}",
    "escaped-first-letter": lambda t: (
        t[:-1] + ',"\\u00' + f"{ord(t[2]):02x}" + t[3:].split(",")[0] + "}"
    ),
    "escaped-whole-name": lambda t: (
        t[:-1]
        + ',"'
        + "".join(f"\\u{ord(c):04x}" for c in t[2:].split('"')[0])
        + '"'
        + ":"
        + t[2:].split(",")[0].split(":", 1)[1]
        + "}"
    ),
    "escaped-slash-name": lambda t: t[:-1] + ',"a/b":1,"a\\/b":1}',
    "nested": lambda t: t[:-1] + ',"n":{"a":1,"a":2}}',
    "nested-in-array": lambda t: t[:-1] + ',"n":[{"a":1,"\\u0061":2}]}',
    "uppercase-escape": lambda t: t[:-1] + ',"ab":1,"\\u0041b":1,"\\u0061b":1}',
}


def _header_template() -> str:
    return header_text(hs256())


@pytest.mark.parametrize("defect", DOCUMENT_DEFECTS)
def test_header_json_defect_is_malformed(defect: str) -> None:
    key = hs256()
    raw = DOCUMENT_DEFECTS[defect](_header_template()).encode("utf-8", "surrogatepass")
    check_jws_malformed(sign_segments(b64(raw), b64(jbytes(claims())), key), key)


@pytest.mark.parametrize("defect", DOCUMENT_DEFECTS)
def test_payload_json_defect_is_malformed(defect: str) -> None:
    key = hs256()
    raw = DOCUMENT_DEFECTS[defect](payload_text()).encode("utf-8", "surrogatepass")
    head = b64(jbytes(header_for(key)))
    # Some defects are larger than the default cap once encoded: give them room, so the
    # JSON rule (not the size cap) is what refuses them.
    token = sign_segments(head, b64(raw), key)
    with refused(MalformedToken):
        decode_as(token, key, max_size=1 << 20)


@pytest.mark.parametrize("dup", DUPLICATES)
def test_duplicate_header_member_is_malformed(dup: str) -> None:
    key = hs256()
    raw = DUPLICATES[dup](_header_template()).encode()
    check_jws_malformed(sign_segments(b64(raw), b64(jbytes(claims())), key), key)


@pytest.mark.parametrize("dup", DUPLICATES)
def test_duplicate_payload_member_is_malformed(dup: str) -> None:
    key = hs256()
    raw = DUPLICATES[dup](payload_text()).encode()
    head = b64(jbytes(header_for(key)))
    check_malformed(sign_segments(head, b64(raw), key), key)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ('"alg":"HS256"', '"alg":"none"'),
        ('"alg":"none"', '"alg":"HS256"'),
        ('"alg":"HS256"', '"\\u0061lg":"HS256"'),
        ('"alg":"HS256"', '"al\\u0067":"RS256"'),
        ('"kid":"x"', '"kid":"y"'),
        ('"typ":"JWT"', '"typ":"at+jwt"'),
        ('"typ":"JWT"', '"\\u0074yp":"JWT"'),
    ],
)
def test_duplicate_security_relevant_header_member_is_malformed(first: str, second: str) -> None:
    # The classic: a parser keeping the first and another keeping the last disagree on alg.
    key = hs256()
    members = [first, second] + [m for m in (f'"kid":"{key.kid}"',) if "kid" not in first]
    if "alg" not in first:
        members.insert(0, '"alg":"HS256"')
    raw = ("{" + ",".join(members) + "}").encode()
    check_jws_malformed(sign_segments(b64(raw), b64(jbytes(claims())), key), key)


@pytest.mark.parametrize(
    "pair",
    [
        ('"sub":"user-1"', '"sub":"admin"'),
        ('"sub":"user-1"', '"\\u0073ub":"admin"'),
        ('"aud":"api"', '"aud":"other"'),
        ('"exp":1', '"exp":99999999999'),
        ('"iss":"x"', '"i\\u0073s":"y"'),
        ('"roles":["user"]', '"roles":["admin"]'),
    ],
)
def test_duplicate_security_relevant_claim_is_malformed(pair: tuple[str, str]) -> None:
    key = hs256()
    head = b64(jbytes(header_for(key)))
    text = payload_text()
    raw = (text[:-1] + "," + pair[0] + "," + pair[1] + "}").encode()
    check_malformed(sign_segments(head, b64(raw), key), key)


# --- positive controls: what the JSON rules must NOT refuse ----------------------------------


def test_strict_json_still_accepts_legitimate_documents() -> None:
    key = hs256()
    head = b64(jbytes(header_for(key)))
    cases = {
        '"pair":"\\ud83d\\ude00"': "\U0001f600",
        '"brackets":"' + "[{" * 200 + '"': "[{" * 200,
        '"escaped_quote":"a\\"[[[["': 'a"[[[[',
        '"depth":' + "[" * 20 + "]" * 20: [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]],
        '"tiny":1e-999': 0.0,
        '"unicode":"\u00e9\u4e2d"': "\u00e9\u4e2d",
    }
    for member, value in cases.items():
        raw = (payload_text()[:-1] + "," + member + "}").encode()
        out = decode_as(sign_segments(head, b64(raw), key), key)
        assert out[member.split('"')[1]] == value
    # Insignificant whitespace is JSON, not an encoding defect.
    spaced = json.dumps(claims(), indent=2).encode()
    assert decode_as(sign_segments(head, b64(spaced), key), key) == claims()


LAX_PARSEABLE = (
    "NaN",
    "Infinity",
    "-Infinity",
    "1e999",
    "-1e999",
    "1E400",
    "1e5000-in-array",
    "big-mantissa-overflow",
    "lone-high-surrogate",
    "lone-low-surrogate",
    "reversed-surrogates",
    "high-surrogate-then-char",
    "surrogate-at-end",
    "surrogate-in-key",
    "surrogate-in-nested-list",
    "surrogate-in-nested-key",
    "deep-array-33",
    "deep-object-100",
    "deep-mixed-200",
)


@pytest.mark.parametrize("defect", LAX_PARSEABLE)
def test_semantic_defects_are_accepted_by_a_lax_parser(defect: str) -> None:
    # Self-check of this module: these documents are syntactically fine for Python's json,
    # so authgate refuses them for the rule under test, not for a typo in the test.
    for text in (_header_template(), payload_text()):
        doc = DOCUMENT_DEFECTS[defect](text)
        assert isinstance(json.loads(doc), dict)


@pytest.mark.parametrize("dup", DUPLICATES)
def test_duplicates_are_silently_merged_by_a_lax_parser(dup: str) -> None:
    for text in (_header_template(), payload_text()):
        doc = DUPLICATES[dup](text)
        pairs = json.loads(doc, object_pairs_hook=lambda p: p)

        def has_duplicate(value: object) -> bool:
            if isinstance(value, list) and all(isinstance(x, tuple) for x in value) and value:
                names = [name for name, _ in value]
                return len(names) != len(set(names)) or any(has_duplicate(v) for _, v in value)
            if isinstance(value, list):
                return any(has_duplicate(v) for v in value)
            return False

        assert has_duplicate(pairs)
