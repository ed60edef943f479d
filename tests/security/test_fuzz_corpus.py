"""Nothing but an authgate error ever escapes decode/verify, whatever the input.

A seeded random corpus (reproducible): raw bytes, random text, random base64url segments,
random JSON headers and payloads signed with the real key (so they reach the header, key,
payload and claim rules), and random splices of valid tokens. Every call must either return
or raise an InvalidToken subclass with its stable code; no TypeError, KeyError, ValueError,
RecursionError, UnicodeError or OverflowError may leak.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Iterator
from typing import Any

import pytest

from _support.tokens import AUD, ISS, NOW, b64, claims, header_for
from authgate.errors import InvalidToken
from authgate.jose import ALGORITHMS, ClaimsPolicy, Key, KeySet, decode, encode, verify

from ._helpers import ALL_ALGS, CODES, POLICY, attempt, key_for

SEED = 20240611
B64_ALPHABET = string.ascii_letters + string.digits + "-_"
NASTY_CHARS = '.=+/ \t\n\r\x00\x7f\u00e9\u200b\ufeff\ud800\udfff\uff0e\U0001f600"\\{}[]'


def random_scalar(rng: random.Random) -> Any:
    return rng.choice(
        [
            lambda: None,
            lambda: rng.random() < 0.5,
            lambda: rng.randint(-(2**64), 2**64),
            lambda: rng.randint(0, 2**60) * rng.choice([1, 10**20, 10**300]),
            lambda: rng.choice([NOW, NOW + 1, NOW - 1, NOW + 600, 0, -1, 2**53, 2**53 + 1]),
            lambda: rng.uniform(-1e308, 1e308),
            lambda: rng.choice([float("nan"), float("inf"), float("-inf"), -0.0, 1e-320]),
            lambda: "".join(rng.choice(NASTY_CHARS + "abc") for _ in range(rng.randint(0, 8))),
            lambda: rng.choice([ISS, AUD, "", "JWT", "at+jwt", "none", "HS256", "ES256"]),
        ]
    )()


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 40 or roll < 0.6:
        return random_scalar(rng)
    if roll < 0.8:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return {random_key(rng): random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def random_key(rng: random.Random) -> str:
    names = ["alg", "kid", "typ", "cty", "crit", "jku", "jwk", "x5c", "b64", "zip", "enc"]
    names += ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "scope", "roles", "", "\ud800"]
    return rng.choice(names) if rng.random() < 0.8 else str(random_scalar(rng))


def random_json_bytes(rng: random.Random, base: dict[str, Any]) -> bytes:
    doc: Any = dict(base)
    for _ in range(rng.randint(0, 4)):
        if not isinstance(doc, dict):
            break
        action = rng.random()
        if action < 0.5:
            doc[random_key(rng)] = random_value(rng)
        elif action < 0.7 and doc:
            doc.pop(rng.choice(list(doc)))
        elif action < 0.8:
            doc = random_value(rng)
    text = json.dumps(doc, ensure_ascii=rng.random() < 0.5, allow_nan=True)
    if rng.random() < 0.2:
        # Textual damage: duplicates, truncation, stray bytes, other charsets.
        cut = rng.randint(0, len(text))
        text = rng.choice(
            [
                text[:cut],
                text[:cut] + rng.choice(NASTY_CHARS) + text[cut:],
                text[:-1] + "," + text[1:] if text.startswith("{") and len(text) > 2 else text,
                "[" * rng.randint(30, 2000) + text,
            ]
        )
    charset = rng.choice(["utf-8"] * 8 + ["utf-16", "utf-8-sig"])
    return text.encode(charset, "surrogatepass")


def signed_random(rng: random.Random, key: Key) -> str:
    head = random_json_bytes(rng, header_for(key))
    body = random_json_bytes(rng, claims())
    signing_input = f"{b64(head)}.{b64(body)}"
    return f"{signing_input}.{b64(key.sign(signing_input.encode()))}"


def splice(rng: random.Random, token: str) -> str:
    chars = list(token)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        pos = rng.randint(0, len(chars))
        if op < 0.3 and pos < len(chars):
            chars[pos] = rng.choice(B64_ALPHABET + NASTY_CHARS)
        elif op < 0.6:
            chars.insert(pos, rng.choice(B64_ALPHABET + NASTY_CHARS))
        elif pos < len(chars):
            del chars[pos]
    return "".join(chars)


def corpus(rng: random.Random, size: int) -> Iterator[str | bytes]:
    keys = [key_for(alg) for alg in ALL_ALGS]
    valid = [encode(claims(), k) for k in keys]
    for _ in range(size):
        kind = rng.randrange(7)
        if kind == 0:
            yield rng.randbytes(rng.randint(0, 400))
        elif kind == 1:
            yield "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 200)))
        elif kind == 2:
            yield ".".join(
                "".join(rng.choice(B64_ALPHABET) for _ in range(rng.randint(0, 80)))
                for _ in range(rng.choice([1, 2, 3, 3, 3, 4, 5]))
            )
        elif kind == 3:
            yield ".".join(b64(rng.randbytes(rng.randint(0, 60))) for _ in range(3))
        elif kind == 4:
            yield signed_random(rng, rng.choice(keys))
        elif kind == 5:
            yield splice(rng, rng.choice(valid))
        else:
            token = splice(rng, rng.choice(valid))
            yield token.encode("utf-8", "surrogatepass")


def check_only_our_errors(token: str | bytes, keys: Key | KeySet, policy: ClaimsPolicy) -> None:
    """Run both entry points: each returns or raises an InvalidToken with its own code."""
    algorithms = sorted(ALGORITHMS)
    for call in (
        lambda: decode(token, keys, algorithms=algorithms, policy=policy, now=NOW),
        lambda: verify(token, keys, algorithms=algorithms),
    ):
        _, error = attempt(call)
        if error is not None:
            assert error.code == CODES[type(error)], repr(error)


@pytest.mark.parametrize("chunk", range(4))
def test_random_corpus_raises_only_invalid_token(chunk: int) -> None:
    rng = random.Random(SEED + chunk)
    keyset = KeySet([key_for(alg) for alg in ALL_ALGS])
    policy = ClaimsPolicy(issuer=ISS, audience=AUD, leeway=30)
    for token in corpus(rng, 2500):
        for keys in (keyset, key_for(rng.choice(ALL_ALGS))):
            check_only_our_errors(token, keys, policy)


def test_random_bytes_and_text_are_never_accepted() -> None:
    rng = random.Random(SEED)
    keyset = KeySet([key_for(alg) for alg in ALL_ALGS])
    for _ in range(3000):
        raw = rng.randbytes(rng.randint(0, 300))
        for token in (raw, raw.decode("latin-1")):
            with pytest.raises(InvalidToken):
                decode(token, keyset, algorithms=sorted(ALGORITHMS), policy=POLICY, now=NOW)


def test_random_signed_documents_only_pass_when_they_are_valid_jwts() -> None:
    # Whatever random header and payload a genuine key signs, decode returns only a dict
    # whose required claims are there, and raises only InvalidToken subclasses otherwise.
    rng = random.Random(SEED + 99)
    key = key_for("HS256")
    accepted = 0
    for _ in range(3000):
        token = signed_random(rng, key)
        out, error = attempt(
            lambda: decode(token, key, algorithms=["HS256"], policy=POLICY, now=NOW)  # noqa: B023
        )
        if error is not None:
            assert error.code == CODES[type(error)], repr(error)
            continue
        accepted += 1
        assert isinstance(out, dict)
        assert out["iss"] == ISS
        assert out["aud"] == AUD or AUD in out["aud"]
        assert out["exp"] > NOW
    assert accepted > 0  # the generator does produce valid tokens, so the loop means something
