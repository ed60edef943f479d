"""Coverage-guided fuzzing of ``authgate.jose.decode`` and ``verify`` with atheris (libFuzzer).

Each input is turned into a token in one of four ways: the raw bytes; text decoded from them;
byte edits of a valid token; or a fuzzed header and payload SIGNED with a trusted key (so
the fuzzer reaches the JSON, header, key and claim rules past the signature). Then:

- only ``authgate.errors.InvalidToken`` (an ``AuthgateError``) may escape, with its class's
  stable ``code``; any other exception is a crash that libFuzzer reports and saves;
- an accepted input must be, byte for byte, a token signed by a key in the set: one of the
  valid seed tokens, or this input's own trusted signature.

    python fuzz/fuzz_decode.py -max_total_time=60 [CORPUS_DIR]
    python fuzz/fuzz_decode.py --write-seeds DIR     # valid tokens as a starting corpus

libFuzzer prints the number of inputs executed (``-print_final_stats=1``:
``stat::number_of_executed_units``); fuzz/run.sh runs it for a bounded time and reports it.
"""

from __future__ import annotations

import base64
import json
import os
import sys

import atheris

with atheris.instrument_imports(include=["authgate"]):
    from authgate.errors import AuthgateError, InvalidToken
    from authgate.jose import ClaimsPolicy, Key, KeySet, decode, encode, sign, verify

NOW = 1_700_000_000
ISS = "https://auth.example.com"
AUD = "api"
POLICY = ClaimsPolicy(issuer=ISS, audience=AUD)
ACCESS = ClaimsPolicy.access_token(issuer=ISS, audience=AUD)
ALGS = ("HS256", "RS256", "PS256", "ES256", "EdDSA")
CLAIMS = {"iss": ISS, "aud": AUD, "sub": "usr_1", "jti": "j1", "iat": NOW - 5, "exp": NOW + 600}

PRIVATE = {alg: Key.generate(alg) for alg in ALGS}
# The verifier holds the HMAC secret and the public halves of the others.
TRUSTED = KeySet([k if k.is_symmetric else k.public() for k in PRIVATE.values()])
SEEDS = [encode(CLAIMS, PRIVATE[alg]) for alg in ALGS] + [
    encode(CLAIMS, PRIVATE["ES256"], typ="at+jwt")
]


class Unexpected(AssertionError):
    """A property broke: libFuzzer saves the input that did it."""


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _token_from(data: bytes) -> tuple[str | bytes, set[bytes]]:
    """The token for this input, and the encodings allowed to be accepted."""
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 3)
    seeds = {s.encode("ascii") for s in SEEDS}
    if mode == 0:
        return fdp.ConsumeBytes(fdp.remaining_bytes()), seeds
    if mode == 1:
        return fdp.ConsumeUnicode(fdp.remaining_bytes()), seeds
    if mode == 2:
        token = bytearray(SEEDS[fdp.ConsumeIntInRange(0, len(SEEDS) - 1)].encode("ascii"))
        for _ in range(fdp.ConsumeIntInRange(1, 8)):
            if not token or fdp.remaining_bytes() < 3:
                break
            op = fdp.ConsumeIntInRange(0, 2)
            pos = fdp.ConsumeIntInRange(0, len(token) - 1)
            if op == 0:
                token[pos] = fdp.ConsumeInt(1) & 0xFF
            elif op == 1:
                token.insert(pos, fdp.ConsumeInt(1) & 0xFF)
            else:
                del token[pos]
        return bytes(token), seeds
    # A fuzzed header and payload, signed by a trusted key: acceptance is legitimate here.
    key = PRIVATE[ALGS[fdp.ConsumeIntInRange(0, len(ALGS) - 1)]]
    header = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200))
    payload = fdp.ConsumeBytes(fdp.remaining_bytes())
    signing_input = _b64(header) + b"." + _b64(payload)
    token = signing_input + b"." + _b64(key.sign(signing_input))
    return token, seeds | {token}


def _check(call: object, token: str | bytes, allowed: set[bytes]) -> None:
    try:
        call()  # type: ignore[operator]
    except InvalidToken as exc:
        if exc.code != type(exc).code or not exc.code:
            raise Unexpected(f"{type(exc).__name__} carries code {exc.code!r}") from exc
        return
    except AuthgateError as exc:
        raise Unexpected(f"a token input raised {exc!r}, not an InvalidToken") from exc
    raw = token.encode("utf-8", "surrogatepass") if isinstance(token, str) else token
    if raw not in allowed:
        raise Unexpected(f"accepted a token no trusted key signed: {token!r}")


def test_one_input(data: bytes) -> None:
    token, allowed = _token_from(data)
    for policy in (POLICY, ACCESS):
        _check(
            lambda p=policy: decode(token, TRUSTED, algorithms=ALGS, policy=p, now=NOW),
            token,
            allowed,
        )
    _check(lambda: verify(token, TRUSTED, algorithms=ALGS), token, allowed)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--write-seeds":
        os.makedirs(sys.argv[2], exist_ok=True)
        for i, seed in enumerate(SEEDS):
            # Mode byte 2 (edit a seed) and mode 0 (raw) both start from valid tokens.
            with open(os.path.join(sys.argv[2], f"seed-{i}"), "wb") as fh:
                fh.write(b"\x00" + seed.encode("ascii"))
        signed = sign(json.dumps(CLAIMS).encode(), PRIVATE["HS256"])
        with open(os.path.join(sys.argv[2], "seed-signed"), "wb") as fh:
            fh.write(b"\x00" + signed.encode("ascii"))
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
