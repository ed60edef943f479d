"""Published test vectors: RFC 7515 Appendix A, RFC 7520 sections 3-4, RFC 7638 section 3.1.

The data lives in ``tests/vectors/data/*.json``, copied from the RFCs (each file and each
example names its section in a ``source`` field). A value copied wrong cannot pass: every
signature is checked against its key, the private keys against their public parts, and the
thumbprint input against its published hash.
"""

from __future__ import annotations

import base64
import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from authgate.errors import InvalidKey, InvalidSignature, MalformedToken, TokenExpired
from authgate.jose import ClaimsPolicy, Key, decode, sign, verify

DATA = Path(__file__).parent / "data"
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return data


RFC7515 = _load("rfc7515_appendix_a.json")
RFC7520_KEYS = _load("rfc7520_keys.json")
RFC7520_JWS = _load("rfc7520_jws.json")
RFC7638 = _load("rfc7638_thumbprint.json")

A_EXAMPLES = RFC7515["examples"]
A_ASYMMETRIC = [ex for ex in A_EXAMPLES if ex["jwk"]["kty"] != "oct"]
A_DETERMINISTIC = [ex for ex in A_EXAMPLES if ex["deterministic"]]
A_RANDOMIZED = [ex for ex in A_EXAMPLES if not ex["deterministic"]]

S4_COMPACT = RFC7520_JWS["compact"]
S4_DETERMINISTIC = [ex for ex in S4_COMPACT if ex["deterministic"]]
S4_RANDOMIZED = [ex for ex in S4_COMPACT if not ex["deterministic"]]
S4_DETACHED = RFC7520_JWS["detached"]
S4_JSON_ONLY = {ex["id"]: ex for ex in RFC7520_JWS["json_only"]}
S4_PAYLOAD = RFC7520_JWS["payload"]["utf8"].encode("utf-8")
S4_PAYLOAD_B64U = RFC7520_JWS["payload"]["b64u"]


def _ids(examples: list[dict[str, Any]]) -> list[str]:
    return [f"{ex['id']}-{ex['alg']}" for ex in examples]


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_jwk(jwk: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in jwk.items() if name not in PRIVATE_MEMBERS}


def signing_input(compact: str) -> bytes:
    head, payload, _ = compact.split(".")
    return f"{head}.{payload}".encode("ascii")


def tamper_signature(compact: str) -> str:
    """Change one byte (in the first half: R for ECDSA) of the signature, re-encoded canonically."""
    head, payload, sig_b64 = compact.split(".")
    sig = bytearray(unb64u(sig_b64))
    sig[len(sig) // 4] ^= 0x01
    return f"{head}.{payload}.{b64u(bytes(sig))}"


@cache
def rfc7515_key(example_id: str, *, public: bool = False) -> Key:
    ex = next(e for e in A_EXAMPLES if e["id"] == example_id)
    jwk = public_jwk(ex["jwk"]) if public else ex["jwk"]
    return Key.from_jwk(jwk, alg=ex["alg"])


@cache
def rfc7520_key(section: str, alg: str) -> Key:
    return Key.from_jwk(RFC7520_KEYS["keys"][section]["jwk"], alg=alg)


def assert_refused(exc_info: pytest.ExceptionInfo[Exception], cls: type, code: str) -> None:
    assert type(exc_info.value) is cls
    assert exc_info.value.code == code


# --- the data files themselves ------------------------------------------------------------


def test_every_data_file_names_its_rfc_section() -> None:
    for doc in (RFC7515, RFC7520_KEYS, RFC7520_JWS, RFC7638):
        assert doc["source"].startswith("RFC ")
    entries = [
        *A_EXAMPLES,
        *RFC7520_KEYS["keys"].values(),
        RFC7520_JWS["payload"],
        *S4_COMPACT,
        S4_DETACHED,
        *S4_JSON_ONLY.values(),
    ]
    for entry in entries:
        assert entry["source"].startswith(("RFC 7515 Appendix A.", "RFC 7520 Section "))


@pytest.mark.parametrize("ex", A_EXAMPLES, ids=_ids(A_EXAMPLES))
def test_rfc7515_compact_is_made_of_the_rfc_parts(ex: dict[str, Any]) -> None:
    header_seg, payload_seg, sig_seg = ex["compact"].split(".")
    assert unb64u(header_seg) == ex["protected_header_utf8"].encode("utf-8")
    assert json.loads(ex["protected_header_utf8"]) == ex["header"]
    assert unb64u(payload_seg) == ex["payload_utf8"].encode("utf-8")
    assert sig_seg == ex["signature_b64u"]


@pytest.mark.parametrize("ex", S4_COMPACT, ids=_ids(S4_COMPACT))
def test_rfc7520_compact_is_made_of_the_rfc_parts(ex: dict[str, Any]) -> None:
    assert unb64u(S4_PAYLOAD_B64U) == S4_PAYLOAD
    assert ex["compact"] == f"{ex['protected_b64u']}.{S4_PAYLOAD_B64U}.{ex['signature_b64u']}"
    assert json.loads(unb64u(ex["protected_b64u"])) == ex["header"]


def test_rfc7520_public_keys_are_the_private_keys_without_private_members() -> None:
    keys = RFC7520_KEYS["keys"]
    assert keys["3.1"]["jwk"] == public_jwk(keys["3.2"]["jwk"])
    assert keys["3.3"]["jwk"] == public_jwk(keys["3.4"]["jwk"])


# --- RFC 7515 Appendix A --------------------------------------------------------------------


@pytest.mark.parametrize("ex", A_EXAMPLES, ids=_ids(A_EXAMPLES))
def test_rfc7515_verify_returns_the_rfc_header_and_payload(ex: dict[str, Any]) -> None:
    header, payload = verify(ex["compact"], rfc7515_key(ex["id"]), algorithms=[ex["alg"]])
    assert header == ex["header"]
    assert payload == ex["payload_utf8"].encode("utf-8")


@pytest.mark.parametrize("ex", A_ASYMMETRIC, ids=_ids(A_ASYMMETRIC))
def test_rfc7515_verify_with_the_public_jwk(ex: dict[str, Any]) -> None:
    key = rfc7515_key(ex["id"], public=True)
    assert not key.can_sign
    header, payload = verify(ex["compact"], key, algorithms=[ex["alg"]])
    assert header == ex["header"]
    assert payload == ex["payload_utf8"].encode("utf-8")


@pytest.mark.parametrize("ex", A_DETERMINISTIC, ids=_ids(A_DETERMINISTIC))
def test_rfc7515_deterministic_signature_is_byte_exact(ex: dict[str, Any]) -> None:
    key = rfc7515_key(ex["id"])
    assert key.sign(signing_input(ex["compact"])) == unb64u(ex["signature_b64u"])


@pytest.mark.parametrize("ex", A_RANDOMIZED, ids=_ids(A_RANDOMIZED))
def test_rfc7515_our_ecdsa_signature_verifies_with_the_rfc_public_key(ex: dict[str, Any]) -> None:
    private, public = rfc7515_key(ex["id"]), rfc7515_key(ex["id"], public=True)
    data = signing_input(ex["compact"])
    sig = private.sign(data)
    assert len(sig) == len(unb64u(ex["signature_b64u"]))  # raw R||S, fixed length
    public.verify(data, sig)
    payload = ex["payload_utf8"].encode("utf-8")
    token = sign(payload, private)
    header, got = verify(token, public, algorithms=[ex["alg"]])
    assert got == payload
    assert header == {"alg": ex["alg"], "kid": public.kid}


@pytest.mark.parametrize("ex", A_EXAMPLES, ids=_ids(A_EXAMPLES))
def test_rfc7515_tampered_signature_is_refused(ex: dict[str, Any]) -> None:
    key = rfc7515_key(ex["id"], public=ex["jwk"]["kty"] != "oct")
    with pytest.raises(InvalidSignature) as exc_info:
        verify(tamper_signature(ex["compact"]), key, algorithms=[ex["alg"]])
    assert_refused(exc_info, InvalidSignature, "invalid_signature")


def test_rfc7515_a1_decodes_as_a_jwt_until_it_expires() -> None:
    ex = A_EXAMPLES[0]
    assert ex["id"] == "A.1"
    policy = ClaimsPolicy(issuer="joe", required=frozenset({"iss", "exp"}))
    key = rfc7515_key("A.1")
    claims = decode(ex["compact"], key, algorithms=["HS256"], policy=policy, now=1300819379)
    assert claims == {"iss": "joe", "exp": 1300819380, "http://example.com/is_root": True}
    with pytest.raises(TokenExpired) as exc_info:
        decode(ex["compact"], key, algorithms=["HS256"], policy=policy, now=1300819380)
    assert_refused(exc_info, TokenExpired, "token_expired")


# --- RFC 7520 section 3: keys -------------------------------------------------------------


def test_rfc7520_rsa_key_without_alg_needs_it_passed() -> None:
    with pytest.raises(InvalidKey) as exc_info:
        Key.from_jwk(RFC7520_KEYS["keys"]["3.3"]["jwk"])
    assert_refused(exc_info, InvalidKey, "invalid_key")


def test_rfc7520_ec_key_implies_es512_from_its_curve() -> None:
    key = Key.from_jwk(RFC7520_KEYS["keys"]["3.1"]["jwk"])
    assert key.alg == "ES512"
    assert key.kid == "bilbo.baggins@hobbiton.example"


# --- RFC 7520 section 4: compact JWS examples ----------------------------------------------


@pytest.mark.parametrize("ex", S4_COMPACT, ids=_ids(S4_COMPACT))
@pytest.mark.parametrize("which", ["verification_key", "signing_key"])
def test_rfc7520_compact_example_verifies(ex: dict[str, Any], which: str) -> None:
    key = rfc7520_key(ex[which], ex["alg"])
    assert key.kid == ex["header"]["kid"]
    header, payload = verify(ex["compact"], key, algorithms=[ex["alg"]])
    assert header == ex["header"]
    assert payload == S4_PAYLOAD


@pytest.mark.parametrize("ex", S4_DETERMINISTIC, ids=_ids(S4_DETERMINISTIC))
def test_rfc7520_deterministic_signature_is_byte_exact(ex: dict[str, Any]) -> None:
    key = rfc7520_key(ex["signing_key"], ex["alg"])
    assert key.sign(signing_input(ex["compact"])) == unb64u(ex["signature_b64u"])


@pytest.mark.parametrize("ex", S4_RANDOMIZED, ids=_ids(S4_RANDOMIZED))
def test_rfc7520_our_signature_verifies_with_the_rfc_public_key(ex: dict[str, Any]) -> None:
    private = rfc7520_key(ex["signing_key"], ex["alg"])
    public = rfc7520_key(ex["verification_key"], ex["alg"])
    assert not public.can_sign
    token = sign(S4_PAYLOAD, private)
    header, payload = verify(token, public, algorithms=[ex["alg"]])
    assert header == ex["header"]  # our header is {alg, kid}, the same members as the RFC's
    assert payload == S4_PAYLOAD


@pytest.mark.parametrize("ex", S4_COMPACT, ids=_ids(S4_COMPACT))
def test_rfc7520_tampered_signature_is_refused(ex: dict[str, Any]) -> None:
    key = rfc7520_key(ex["verification_key"], ex["alg"])
    with pytest.raises(InvalidSignature) as exc_info:
        verify(tamper_signature(ex["compact"]), key, algorithms=[ex["alg"]])
    assert_refused(exc_info, InvalidSignature, "invalid_signature")


def test_rfc7520_4_5_detached_content_verifies_once_reattached() -> None:
    ex = S4_DETACHED
    key = rfc7520_key(ex["verification_key"], ex["alg"])
    head, middle, sig = ex["compact"].split(".")
    assert middle == ""
    assert sig == ex["signature_b64u"]
    attached = f"{head}.{S4_PAYLOAD_B64U}.{sig}"
    header, payload = verify(attached, key, algorithms=[ex["alg"]])
    assert header == ex["header"]
    assert payload == S4_PAYLOAD
    # RFC 7520 4.5 signs exactly what 4.4 signs: reattached, it is the 4.4 token.
    assert attached == next(e for e in S4_COMPACT if e["id"] == "4.4")["compact"]


def test_rfc7520_4_5_detached_form_as_is_does_not_verify_an_empty_payload() -> None:
    ex = S4_DETACHED
    key = rfc7520_key(ex["verification_key"], ex["alg"])
    with pytest.raises(InvalidSignature) as exc_info:
        verify(ex["compact"], key, algorithms=[ex["alg"]])
    assert_refused(exc_info, InvalidSignature, "invalid_signature")


def _json_serializations() -> list[Any]:
    params = []
    for ex_id, ex in S4_JSON_ONLY.items():
        for form in ("general", "flattened"):
            if form not in ex:
                continue
            for style, text in (
                ("compact-json", json.dumps(ex[form], separators=(",", ":"))),
                ("pretty-json", json.dumps(ex[form], indent=2)),
            ):
                params.append(pytest.param(ex, text, id=f"{ex_id}-{form}-{style}"))
    return params


@pytest.mark.parametrize(("ex", "serialized"), _json_serializations())
def test_rfc7520_json_serialization_is_malformed_for_verify(
    ex: dict[str, Any], serialized: str
) -> None:
    assert len(serialized) < 8192  # the refusal is about the form, not the size cap
    key = rfc7520_key("3.5", "HS256")
    with pytest.raises(MalformedToken) as exc_info:
        verify(serialized, key, algorithms=["HS256"])
    assert_refused(exc_info, MalformedToken, "malformed_token")
    with pytest.raises(MalformedToken) as exc_info:
        verify(serialized.encode("utf-8"), key, algorithms=["HS256"])
    assert_refused(exc_info, MalformedToken, "malformed_token")


def test_rfc7520_4_6_protected_part_as_compact_verifies() -> None:
    """4.6's signature covers only the protected header and payload: as a compact JWS
    (without the unprotected kid) it is a valid HS256 token for the 3.5 key."""
    sig = S4_JSON_ONLY["4.6"]["general"]["signatures"][0]
    token = f"{sig['protected']}.{S4_PAYLOAD_B64U}.{sig['signature']}"
    header, payload = verify(token, rfc7520_key("3.5", "HS256"), algorithms=["HS256"])
    assert header == {"alg": "HS256"}
    assert payload == S4_PAYLOAD


def test_rfc7520_4_7_unprotected_header_cannot_be_expressed_compactly() -> None:
    """4.7 has no protected header; its compact shape has an empty first segment."""
    sig = S4_JSON_ONLY["4.7"]["general"]["signatures"][0]
    assert "protected" not in sig
    token = f".{S4_PAYLOAD_B64U}.{sig['signature']}"
    with pytest.raises(MalformedToken) as exc_info:
        verify(token, rfc7520_key("3.5", "HS256"), algorithms=["HS256"])
    assert_refused(exc_info, MalformedToken, "malformed_token")


def test_rfc7520_4_8_rs256_signature_as_compact_is_byte_exact() -> None:
    sig = S4_JSON_ONLY["4.8"]["general"]["signatures"][0]
    token = f"{sig['protected']}.{S4_PAYLOAD_B64U}.{sig['signature']}"
    header, payload = verify(token, rfc7520_key("3.3", "RS256"), algorithms=["RS256"])
    assert header == {"alg": "RS256"}
    assert payload == S4_PAYLOAD
    assert rfc7520_key("3.4", "RS256").sign(signing_input(token)) == unb64u(sig["signature"])


# --- RFC 7638 section 3.1 ----------------------------------------------------------------


def test_rfc7638_thumbprint_input_hashes_to_the_published_value() -> None:
    digest = hashlib.sha256(RFC7638["thumbprint_input"].encode("utf-8")).digest()
    assert b64u(digest) == RFC7638["thumbprint"]
    required = {k: RFC7638["jwk"][k] for k in ("e", "kty", "n")}
    assert (
        json.dumps(required, separators=(",", ":"), sort_keys=True) == RFC7638["thumbprint_input"]
    )


def test_rfc7638_thumbprint_of_the_example_key() -> None:
    key = Key.from_jwk(RFC7638["jwk"], alg=RFC7638["alg"])
    assert key.thumbprint() == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    assert key.thumbprint() == RFC7638["thumbprint"]
    assert key.kid == "2011-04-29"  # an explicit kid is kept, not replaced by the thumbprint


def test_rfc7638_thumbprint_is_the_default_kid() -> None:
    jwk = {k: v for k, v in RFC7638["jwk"].items() if k != "kid"}
    key = Key.from_jwk(jwk, alg=RFC7638["alg"])
    assert key.kid == RFC7638["thumbprint"]
    assert key.to_jwk()["kid"] == RFC7638["thumbprint"]
