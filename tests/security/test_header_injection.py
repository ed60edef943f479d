"""The JOSE header is attacker-controlled input (RFC 8725 sections 2.9, 3.10).

- embedded keys and key URLs: ``jwk`` (CVE-2018-0114, node-jose), ``jku``, ``x5u``, ``x5c``,
  ``x5t``: never trusted, refused outright;
- ``kid`` injection (SQL, path traversal, null bytes, non-strings, very long values);
- ``crit`` in any form, ``b64: false`` (RFC 7797), ``zip`` (CVE-2024-33664, python-jose's
  JWE decompression bomb), unknown members, and a ``cty`` other than JWT.

Each token here carries a VALID signature by the verifier's own key, unless the test says
otherwise, so the header rule is the only thing that can refuse it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac as std_hmac
import zlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from _support.tokens import DROP, b64, claims, forge, header_for, jbytes, sign_segments
from authgate.errors import InvalidHeader, MalformedToken, UnknownKey
from authgate.jose import ALGORITHMS, Key, KeySet, decode, verify

from ._helpers import (
    ENTRY_POINTS,
    FAMILY_ALGS,
    POLICY,
    attacker_key_for,
    decode_as,
    key_for,
    private_of,
    refused,
    self_signed_cert,
)


def _attacker_material() -> dict[str, Any]:
    attacker = attacker_key_for("RS256")
    der = self_signed_cert(private_of(attacker)).public_bytes(serialization.Encoding.DER)
    return {
        "jwk": attacker.public().to_jwk(),
        "jku": "https://attacker.example/.well-known/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "x5c": [base64.b64encode(der).decode("ascii")],  # standard base64, RFC 7515 4.1.6
        "x5t": b64(hashlib.sha1(der).digest()),  # x5t is a SHA-1 thumbprint by definition
        "x5t#S256": b64(hashlib.sha256(der).digest()),
    }


EMBEDDED_KEY_MEMBERS = ("jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("alg", FAMILY_ALGS)
@pytest.mark.parametrize("member", EMBEDDED_KEY_MEMBERS)
def test_embedded_key_or_key_url_is_refused(entry: str, alg: str, member: str) -> None:
    value = _attacker_material()[member]
    key = key_for(alg)
    # Signed by the real key: the member alone is refused.
    token = forge(key, header=header_for(key, **{member: value}))
    with refused(InvalidHeader):
        ENTRY_POINTS[entry](token, key)
    # Signed by the attacker with the key the header points at, no kid.
    attacker = attacker_key_for("RS256")
    head = {"alg": "RS256", "typ": "JWT", member: value}
    with refused(InvalidHeader):
        ENTRY_POINTS[entry](forge(attacker, header=head), key_for("RS256").public())


def test_cve_2018_0114_embedded_jwk_signed_by_its_own_key_is_refused() -> None:
    # node-jose verified with the key the token itself carried.
    attacker = attacker_key_for("RS256")
    victim = key_for("RS256").public()
    for kid in (DROP, victim.kid, attacker.kid):
        head = header_for(attacker, jwk=attacker.public().to_jwk(), kid=kid)
        token = forge(attacker, header=head)
        for keys in (victim, KeySet([victim]), KeySet([victim, attacker.public()])):
            with refused(InvalidHeader):
                decode(token, keys, algorithms=["RS256"], policy=POLICY, now=0)


CRIT_VALUES = (
    [],
    ["exp"],
    ["b64"],
    "b64",
    {},
    None,
    ["crit"],
    [""],
    True,
    1,
    ["kid", "typ"],
    ["alg"],
)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("alg", FAMILY_ALGS)
@pytest.mark.parametrize("value", CRIT_VALUES, ids=repr)
def test_crit_in_any_form_is_refused(entry: str, alg: str, value: Any) -> None:
    key = key_for(alg)
    with refused(InvalidHeader):
        ENTRY_POINTS[entry](forge(key, header=header_for(key, crit=value)), key)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("value", [False, True, "false", None, 0])
def test_b64_member_is_refused(entry: str, value: Any) -> None:
    # RFC 7797 unencoded payloads: with b64 false the payload segment is raw bytes.
    key = key_for("HS256")
    for crit in (DROP, ["b64"]):
        head = header_for(key, b64=value, crit=crit)
        with refused(InvalidHeader):
            ENTRY_POINTS[entry](forge(key, header=head), key)
    # The raw-payload form itself: "header.{json}.sig" is not base64url at all.
    head_seg = b64(jbytes(header_for(key, b64=False, crit=["b64"])))
    raw_payload = jbytes(claims()).decode()
    token = f"{head_seg}.{raw_payload}.{b64(key.sign(f'{head_seg}.{raw_payload}'.encode()))}"
    with refused(MalformedToken):
        ENTRY_POINTS[entry](token, key)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("value", ["DEF", "def", "", None, "GZIP", 1])
def test_cve_2024_33664_zip_member_is_refused(entry: str, value: Any) -> None:
    key = key_for("ES256")
    with refused(InvalidHeader):
        ENTRY_POINTS[entry](forge(key, header=header_for(key, zip=value)), key)


def test_cve_2024_33664_compressed_payload_is_never_inflated() -> None:
    # A raw-DEFLATE bomb (4 MiB of zeros in ~4 KiB): the zip header is refused, and the
    # payload, which is not JSON, is never decompressed.
    key = key_for("HS256")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(b"\x00" * (4 << 20)) + compressor.flush()
    assert len(bomb) < 5000
    for head in (header_for(key, zip="DEF"), header_for(key, zip="DEF", enc="A256GCM")):
        token = forge(key, header=head, payload=bomb)
        assert len(token) <= 8192
        with refused(InvalidHeader):
            decode_as(token, key)
        with refused(InvalidHeader):
            verify(token, key, algorithms=["HS256"], max_size=1 << 20)
    # Without the zip member the bytes are simply not a JSON object.
    with refused(MalformedToken):
        decode_as(forge(key, payload=bomb), key)


UNKNOWN_MEMBERS = (
    "foo",
    "iss",
    "sub",
    "aud",
    "exp",
    "jti",
    "url",
    "nonce",
    "enc",
    "epk",
    "apu",
    "apv",
    "iv",
    "tag",
    "p2s",
    "p2c",
    "ppt",
    "svt",
    "ALG",
    "Alg",
    "KID",
    "Typ",
    "kid ",
    " alg",
    "typ\u0000",
    "x5t#s256",
    "",
    "__proto__",
    "constructor",
    "\u0430lg",  # Cyrillic a
)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("member", UNKNOWN_MEMBERS, ids=repr)
def test_unknown_header_member_is_refused(entry: str, member: str) -> None:
    key = key_for("EdDSA")
    for value in ("x", None, 0, [], {}):
        with refused(InvalidHeader):
            ENTRY_POINTS[entry](forge(key, header=header_for(key, **{member: value})), key)


CTY_REFUSED = (
    "json",
    "JSON",
    "application/json",
    "",
    None,
    1,
    [],
    {},
    "JWT ",
    " JWT",
    "JWE",
    "JOSE",
    "text/plain",
    "jwt+json",
    "JWT\u0000",
    "J W T",
)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("cty", CTY_REFUSED, ids=repr)
def test_cty_other_than_jwt_is_refused(entry: str, cty: Any) -> None:
    key = key_for("HS256")
    with refused(InvalidHeader):
        ENTRY_POINTS[entry](forge(key, header=header_for(key, cty=cty)), key)


def test_nested_jwt_is_never_unwrapped() -> None:
    # RFC 8725 section 3.3: a nested token would need every layer validated. authgate does
    # not unwrap: an outer token whose payload is an inner compact JWT is not a claims set.
    key = key_for("HS256")
    inner = forge(key_for("ES256"))
    for cty in ("JWT", DROP):
        outer = forge(key, header=header_for(key, cty=cty), payload=inner.encode())
        with refused(MalformedToken):
            decode_as(outer, key)


def test_cty_jwt_is_accepted() -> None:
    # The positive control for the cty rule.
    key = key_for("HS256")
    assert decode_as(forge(key, header=header_for(key, cty="JWT")), key)["sub"] == "user-1"


NOT_SHORT_STRINGS = (
    None,
    1,
    0,
    1.5,
    True,
    False,
    [],
    {},
    ["HS256"],
    {"alg": "HS256"},
    "",
    "A" * 257,
)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("member", ["alg", "kid", "typ", "cty"])
@pytest.mark.parametrize("value", NOT_SHORT_STRINGS, ids=lambda v: repr(v)[:20])
def test_header_members_must_be_short_non_empty_strings(
    entry: str, member: str, value: Any
) -> None:
    key = key_for("HS256")
    with refused(InvalidHeader):
        ENTRY_POINTS[entry](forge(key, header=header_for(key, **{member: value})), key)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_header_without_alg_is_refused(entry: str) -> None:
    key = key_for("HS256")
    for head in (header_for(key, alg=DROP), {}, {"kid": key.kid}, {"ALG": "HS256", "kid": key.kid}):
        with refused(InvalidHeader):
            ENTRY_POINTS[entry](forge(key, header=head), key)


# --- kid injection -------------------------------------------------------------------------

KID_INJECTIONS = (
    "' OR '1'='1",
    "1; DROP TABLE keys--",
    "' UNION SELECT 'secret' --",
    "../../dev/null",
    "../../../../../../../../etc/passwd",
    "/dev/null",
    "..\\..\\windows\\win.ini",
    "file:///dev/null",
    "https://attacker.example/key.pem",
    "abc\u0000",
    "\u0000",
    "$(id)",
    "`id`",
    "| id",
    "__proto__",
    "constructor",
    "toString",
    "hasOwnProperty",
    "*",
    "%",
    "\u202e",
    "kid\r\nX-Injected: 1",
    "A" * 256,
)


def _kid_variants_of(key: Key) -> tuple[str, ...]:
    return (
        key.kid + "\u0000",
        "\u0000" + key.kid,
        key.kid + " ",
        " " + key.kid,
        key.kid[:-1],
        key.kid.upper() if key.kid.upper() != key.kid else key.kid.lower(),
        key.kid + "/../" + key.kid,
        attacker_key_for(key.alg).kid,
    )


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("alg", FAMILY_ALGS)
def test_kid_injection_finds_no_key(entry: str, alg: str) -> None:
    key = key_for(alg)
    keysets: list[Key | KeySet] = [key, KeySet([key]), KeySet([key_for(a) for a in FAMILY_ALGS])]
    for kid in (*KID_INJECTIONS, *_kid_variants_of(key)):
        token = forge(key, header=header_for(key, kid=kid))
        for keys in keysets:
            with refused(UnknownKey):
                ENTRY_POINTS[entry](token, keys)


@pytest.mark.parametrize("kid", ["../../dev/null", "/dev/null", "' OR '1'='1", "0"])
def test_kid_pointing_at_an_empty_secret_finds_no_key(kid: str) -> None:
    # The classic: kid "/dev/null" makes a lax server read an empty file as the HMAC key.
    head_seg = b64(jbytes({"alg": "HS256", "kid": kid, "typ": "JWT"}))
    payload_seg = b64(jbytes(claims()))
    mac = std_hmac.new(b"", f"{head_seg}.{payload_seg}".encode(), hashlib.sha256).digest()
    token = f"{head_seg}.{payload_seg}.{b64(mac)}"
    keyset = KeySet([key_for("HS256"), key_for("ES256")])
    with refused(UnknownKey):
        decode(token, keyset, algorithms=sorted(ALGORITHMS), policy=POLICY, now=0)


@pytest.mark.parametrize("length", [257, 300, 1000, 5000])
def test_very_long_kid_is_refused_as_a_header_error(length: int) -> None:
    key = key_for("HS256")
    token = forge(key, header=header_for(key, kid="k" * length))
    assert len(token) <= 8192
    for entry in ENTRY_POINTS.values():
        with refused(InvalidHeader):
            entry(token, KeySet([key]))


@pytest.mark.parametrize(
    "kid", [1, 0, -1, 1.5, True, False, None, [], {}, ["kid"], [None]], ids=repr
)
def test_non_string_kid_is_refused(kid: Any) -> None:
    key = key_for("ES256")
    keyset = KeySet([key])
    token = forge(key, header=header_for(key, kid=kid))
    for entry in ENTRY_POINTS.values():
        with refused(InvalidHeader):
            entry(token, keyset)


def test_non_string_kid_equal_to_the_real_kid_in_a_container_is_refused() -> None:
    key = key_for("ES256")
    for kid in ([key.kid], {"kid": key.kid}, {key.kid: True}):
        with refused(InvalidHeader):
            decode_as(forge(key, header=header_for(key, kid=kid)), KeySet([key]))


def test_escaped_form_of_the_real_kid_is_the_same_kid() -> None:
    # Positive control: \\u escapes are JSON syntax, not a different kid.
    key = key_for("ES256")
    escaped = "".join(f"\\u{ord(c):04x}" for c in key.kid)
    raw_header = ('{"alg":"ES256","kid":"' + escaped + '","typ":"JWT"}').encode()
    token = sign_segments(b64(raw_header), b64(jbytes(claims())), key)
    assert decode_as(token, KeySet([key]))["jti"] == "jti-1"
