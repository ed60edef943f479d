"""No insecure defaults and no switch that turns verification off.

CVE-2022-23540 (jsonwebtoken <= 8.5.1): ``verify`` without an explicit algorithm list and
with a falsy key fell back to accepting ``alg: none``. In authgate the allowlist and the
claims policy are mandatory keyword arguments, the keys argument must be a Key or a KeySet,
and nothing in the signature can disable a check.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest

from _support.tokens import NOW, b64, claims, jbytes
from authgate.errors import InvalidKey, UnknownKey
from authgate.jose import KeySet, decode, encode, verify

from ._helpers import POLICY, key_for, refused


@pytest.mark.parametrize("func", [decode, verify], ids=["decode", "verify"])
def test_algorithms_is_a_mandatory_keyword(func: Any) -> None:
    param = inspect.signature(func).parameters["algorithms"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY
    assert param.default is inspect.Parameter.empty


def test_policy_is_a_mandatory_keyword() -> None:
    param = inspect.signature(decode).parameters["policy"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY
    assert param.default is inspect.Parameter.empty


@pytest.mark.parametrize("func", [decode, verify], ids=["decode", "verify"])
def test_calling_without_an_allowlist_fails_loudly(func: Any) -> None:
    token = encode(claims(), key_for("HS256"))
    with pytest.raises(TypeError, match="algorithms"):
        func(token, key_for("HS256"))


@pytest.mark.parametrize("func", [decode, verify], ids=["decode", "verify"])
def test_no_parameter_can_switch_a_check_off(func: Any) -> None:
    # Design rule 6: no options dict, no verify_signature / verify_exp style toggles.
    toggles = re.compile(r"verif|skip|insecure|unsafe|option|disable|allow|check|ignore|strict")
    names = [name for name in inspect.signature(func).parameters if name != "algorithms"]
    assert not [name for name in names if toggles.search(name)], names


NOT_KEYS: dict[str, Any] = {
    "None": None,
    "empty-str": "",
    "empty-bytes": b"",
    "zero": 0,
    "False": False,
    "secret-str": "a-shared-secret-that-is-long-enough-for-hs256",
    "secret-bytes": b"a-shared-secret-that-is-long-enough-for-hs256",
    "empty-list": [],
    "empty-dict": {},
    "empty-tuple": (),
    # Real key material in the wrong container:
    "list-of-keys": "list-of-keys",
    "dict-by-kid": "dict-by-kid",
    "jwk-dict": "jwk-dict",
    "jwks-dict": "jwks-dict",
    "pem-bytes": "pem-bytes",
}


def _resolve(name: str) -> Any:
    key = key_for("HS256")
    return {
        "list-of-keys": [key],
        "dict-by-kid": {key.kid: key},
        "jwk-dict": key.to_jwk(private=True),
        "jwks-dict": {"keys": [key.to_jwk(private=True)]},
        "pem-bytes": key_for("ES256").to_pem(),
    }.get(name, NOT_KEYS[name])


@pytest.mark.parametrize("name", NOT_KEYS)
def test_cve_2022_23540_keys_must_be_a_key_or_keyset(name: str) -> None:
    # A falsy or wrongly typed "key" is a configuration mistake: refused as InvalidKey (as
    # KeySet refuses non-Key members), never accepted by duck typing, and never an
    # AttributeError or TypeError from deep inside.
    keys = _resolve(name)
    key = key_for("HS256")
    for head in ({"alg": "HS256", "typ": "JWT", "kid": key.kid}, {"alg": "HS256", "typ": "JWT"}):
        token = f"{b64(jbytes(head))}.{b64(jbytes(claims()))}"
        token += "." + b64(key.sign(token.encode()))
        with refused(InvalidKey):
            decode(token, keys, algorithms=["HS256"], policy=POLICY, now=NOW)
        with refused(InvalidKey):
            verify(token, keys, algorithms=["HS256"])


def test_empty_keyset_accepts_nothing() -> None:
    key = key_for("HS256")
    with_kid = encode(claims(), key)
    without_kid = f"{b64(jbytes({'alg': 'HS256'}))}.{b64(jbytes(claims()))}"
    without_kid += "." + b64(key.sign(without_kid.encode()))
    for token in (with_kid, without_kid):
        with refused(UnknownKey):
            decode(token, KeySet([]), algorithms=["HS256"], policy=POLICY, now=NOW)
        with refused(UnknownKey):
            verify(token, KeySet([]), algorithms=["HS256"])
