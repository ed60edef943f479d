"""Compact JWS: sign/verify round trips, header emission, allowlist and size cap."""

from __future__ import annotations

import json
from typing import Any

import pytest

from _support.tokens import forge
from authgate.errors import (
    AlgorithmNotAllowed,
    InvalidHeader,
    InvalidKey,
    InvalidSignature,
    MalformedToken,
    TokenTooLarge,
    UnknownKey,
    UnsupportedAlgorithm,
)
from authgate.jose import ALGORITHMS, MAX_TOKEN_SIZE, Header, Key, KeySet, sign, verify
from authgate.jose._b64 import b64decode, b64encode_str

ALL_ALGS = sorted(ALGORITHMS)


def _refused(excinfo: pytest.ExceptionInfo[Any], cls: type, code: str) -> None:
    assert type(excinfo.value) is cls, repr(excinfo.value)
    assert excinfo.value.code == code


def _verify_refused(cls: type, code: str, token: Any, keys: Key | KeySet, **options: Any) -> Any:
    """``verify`` refuses ``token`` with exactly ``cls`` and its stable ``code``; the error."""
    with pytest.raises(cls) as excinfo:
        verify(token, keys, **options)
    _refused(excinfo, cls, code)
    return excinfo.value


def _header(token: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(b64decode(token.split(".")[0]))
    return obj


@pytest.fixture(scope="module")
def keys() -> dict[str, Key]:
    return {alg: Key.generate(alg) for alg in ALL_ALGS}


@pytest.mark.parametrize("alg", ALL_ALGS)
@pytest.mark.parametrize("payload", [b"", b"hello", b'{"a":1}', bytes(range(256)) * 4])
def test_round_trip(keys: dict[str, Key], alg: str, payload: bytes) -> None:
    key = keys[alg]
    token = sign(payload, key)
    assert isinstance(token, str)
    assert token.count(".") == 2
    assert "=" not in token
    header, out = verify(token, key, algorithms=[alg])
    assert header == {"alg": alg, "kid": key.kid}
    assert out == payload
    # Bytes tokens verify the same.
    assert verify(token.encode("ascii"), key, algorithms=[alg]) == (header, out)


@pytest.mark.parametrize("alg", [a for a in ALL_ALGS if not a.startswith("HS")])
def test_verify_with_public_key_and_jwks(keys: dict[str, Key], alg: str) -> None:
    key = keys[alg]
    token = sign(b"data", key)
    assert verify(token, key.public(), algorithms=[alg])[1] == b"data"
    published = KeySet.from_jwks(KeySet([key]).to_jwks())
    assert verify(token, published, algorithms=[alg])[1] == b"data"


def test_sign_with_keyset_uses_current(keys: dict[str, Key]) -> None:
    ks = KeySet([keys["EdDSA"], keys["ES256"]], current=keys["ES256"].kid)
    token = sign(b"x", ks)
    assert _header(token) == {"alg": "ES256", "kid": keys["ES256"].kid}
    assert verify(token, ks, algorithms=["ES256"]) == (_header(token), b"x")


def test_header_members_and_order(keys: dict[str, Key]) -> None:
    key = keys["ES256"]
    token = sign(b"x", key, typ="at+jwt", cty="JWT")
    head = b64decode(token.split(".")[0])
    assert (
        head
        == json.dumps(
            {"alg": "ES256", "kid": key.kid, "typ": "at+jwt", "cty": "JWT"}, separators=(",", ":")
        ).encode()
    )
    header, _ = verify(token, key, algorithms=["ES256"])
    assert header == {"alg": "ES256", "kid": key.kid, "typ": "at+jwt", "cty": "JWT"}


@pytest.mark.parametrize("typ", ["JWT", "at+jwt", "application/at+jwt", "dpop+jwt"])
def test_typ_emitted(keys: dict[str, Key], typ: str) -> None:
    token = sign(b"x", keys["HS256"], typ=typ)
    assert _header(token)["typ"] == typ
    assert "cty" not in _header(token)
    assert verify(token, keys["HS256"], algorithms=["HS256"])[0]["typ"] == typ


def test_no_typ_by_default(keys: dict[str, Key]) -> None:
    token = sign(b"x", keys["HS256"])
    assert set(_header(token)) == {"alg", "kid"}


@pytest.mark.parametrize("cty", ["JWT", "jwt"])
def test_cty_jwt_emitted(keys: dict[str, Key], cty: str) -> None:
    token = sign(b"x", keys["HS256"], cty=cty)
    assert _header(token)["cty"] == cty
    assert verify(token, keys["HS256"], algorithms=["HS256"])[0]["cty"] == cty


@pytest.mark.parametrize("cty", ["json", "application/json", "text/plain", "JWE"])
def test_cty_other_than_jwt_refused(keys: dict[str, Key], cty: str) -> None:
    with pytest.raises(InvalidHeader) as excinfo:
        sign(b"x", keys["HS256"], cty=cty)
    _refused(excinfo, InvalidHeader, "invalid_header")
    token = forge(keys["HS256"], header={"alg": "HS256", "cty": cty}, payload=b"x")
    _verify_refused(InvalidHeader, "invalid_header", token, keys["HS256"], algorithms=["HS256"])


def test_sign_with_public_key_refused(keys: dict[str, Key]) -> None:
    with pytest.raises(InvalidKey) as excinfo:
        sign(b"x", keys["ES256"].public())
    _refused(excinfo, InvalidKey, "invalid_key")


# --- allowlist ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "algorithms", [[], (), set(), "HS256", ["HS256", "none"], ["none"], ["hs256"]]
)
def test_bad_allowlist_refused(keys: dict[str, Key], algorithms: Any) -> None:
    token = sign(b"x", keys["HS256"])
    _verify_refused(
        UnsupportedAlgorithm, "unsupported_algorithm", token, keys["HS256"], algorithms=algorithms
    )


def test_allowlist_accepts_any_collection(keys: dict[str, Key]) -> None:
    token = sign(b"x", keys["HS256"])
    for algorithms in (["HS256"], ("HS256",), {"HS256"}, frozenset({"HS256", "ES256"})):
        assert verify(token, keys["HS256"], algorithms=algorithms)[1] == b"x"


def test_alg_outside_allowlist_refused(keys: dict[str, Key]) -> None:
    token = sign(b"x", keys["ES256"])
    _verify_refused(
        AlgorithmNotAllowed,
        "algorithm_not_allowed",
        token,
        keys["ES256"],
        algorithms=["ES384", "EdDSA"],
    )


def test_header_alg_against_key_alg(keys: dict[str, Key]) -> None:
    # A token whose header names ES384 but which is sent to an ES256 key, same kid.
    key = keys["ES256"]
    token = forge(keys["ES384"], header={"alg": "ES384", "kid": key.kid}, payload=b"x")
    _verify_refused(
        AlgorithmNotAllowed, "algorithm_not_allowed", token, key, algorithms=["ES256", "ES384"]
    )


# --- keys and signatures ------------------------------------------------------------------------


def test_kid_mismatch_with_single_key(keys: dict[str, Key]) -> None:
    token = sign(b"x", keys["ES256"])
    other = Key.generate("ES256")
    _verify_refused(UnknownKey, "unknown_key", token, other, algorithms=["ES256"])


@pytest.mark.parametrize("alg", ALL_ALGS)
def test_tampered_token_refused(keys: dict[str, Key], alg: str) -> None:
    key = keys[alg]
    token = sign(b'{"sub":"alice"}', key)
    head, _payload, sig = token.split(".")
    other_payload = b64encode_str(b'{"sub":"mallory"}')
    _verify_refused(
        InvalidSignature,
        "invalid_signature",
        f"{head}.{other_payload}.{sig}",
        key,
        algorithms=[alg],
    )
    raw_sig = bytearray(b64decode(sig))
    raw_sig[len(raw_sig) // 2] ^= 0x01
    _verify_refused(
        InvalidSignature,
        "invalid_signature",
        f"{head}.{_payload}.{b64encode_str(bytes(raw_sig))}",
        key,
        algorithms=[alg],
    )


def test_signature_from_other_key_same_alg(keys: dict[str, Key]) -> None:
    key = keys["HS256"]
    impostor = Key.from_secret(b"i" * 32, kid=key.kid)
    token = sign(b"x", impostor)
    _verify_refused(InvalidSignature, "invalid_signature", token, key, algorithms=["HS256"])


# --- size cap and shape -------------------------------------------------------------------------


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_size_cap(keys: dict[str, Key], as_bytes: bool) -> None:
    key = keys["HS256"]
    assert MAX_TOKEN_SIZE == 8192

    def form(token: str) -> str | bytes:
        return token.encode("ascii") if as_bytes else token

    small = sign(b"x", key)
    big = sign(b"x" * 7000, key)
    assert len(big) > MAX_TOKEN_SIZE
    error = _verify_refused(TokenTooLarge, "token_too_large", form(big), key, algorithms=["HS256"])
    assert error.context["limit"] == MAX_TOKEN_SIZE
    assert verify(form(big), key, algorithms=["HS256"], max_size=len(big))[1] == b"x" * 7000
    _verify_refused(
        TokenTooLarge,
        "token_too_large",
        form(small),
        key,
        algorithms=["HS256"],
        max_size=len(small) - 1,
    )
    assert verify(form(small), key, algorithms=["HS256"], max_size=len(small))[1] == b"x"


@pytest.mark.parametrize("garbage", ["!" * (MAX_TOKEN_SIZE + 1), b"!" * (MAX_TOKEN_SIZE + 1)])
def test_oversized_garbage_is_too_large_not_malformed(keys: dict[str, Key], garbage: Any) -> None:
    _verify_refused(TokenTooLarge, "token_too_large", garbage, keys["HS256"], algorithms=["HS256"])


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t + ".",
        lambda t: t.rsplit(".", 1)[0],
        lambda t: "." + t,
        lambda t: t.replace(".", "..", 1),
        lambda t: t + "=",
        lambda t: " " + t,
        lambda t: t + "\n",
        lambda t: t.rsplit(".", 1)[0] + ".",  # empty signature
        lambda t: "." + t.split(".", 1)[1],  # empty header
        lambda t: t.replace("-", "+").replace("_", "/") if ("-" in t or "_" in t) else t + "+",
        lambda t: t + "é",
    ],
)
def test_malformed_shapes(keys: dict[str, Key], mutate: Any) -> None:
    bad = mutate(sign(b"payload", keys["HS256"]))
    for token in (bad, bad.encode("utf-8")):
        _verify_refused(
            MalformedToken, "malformed_token", token, keys["HS256"], algorithms=["HS256"]
        )


@pytest.mark.parametrize("token", [None, 1, ["a.b.c"], bytearray(b"a.b.c")])
def test_token_type_refused(keys: dict[str, Key], token: Any) -> None:
    _verify_refused(MalformedToken, "malformed_token", token, keys["HS256"], algorithms=["HS256"])


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "HS256", "jku": "https://evil.example/jwks"},
        {"alg": "HS256", "crit": []},
        {"alg": "HS256", "x5u": "https://evil.example"},
        {"alg": "HS256", "extra": 1},
        {"kid": "x"},
        {"alg": None},
        {"alg": 1},
        {"alg": ""},
        {"alg": "HS256", "kid": 5},
        {"alg": "HS256", "typ": ["JWT"]},
        {"alg": "HS256", "kid": "k" * 257},
    ],
)
def test_header_rules(keys: dict[str, Key], header: dict[str, Any]) -> None:
    token = forge(keys["HS256"], header=header, payload=b"x")
    _verify_refused(InvalidHeader, "invalid_header", token, keys["HS256"], algorithms=["HS256"])


def test_header_dataclass() -> None:
    header = Header(alg="ES256", kid="k")
    assert header.as_dict() == {"alg": "ES256", "kid": "k"}
    assert Header(alg="HS256", typ="JWT", cty="JWT").as_dict() == {
        "alg": "HS256",
        "typ": "JWT",
        "cty": "JWT",
    }
