"""The token core's attack catalogue, replayed through the FastAPI adapter over HTTP: every
case is a 401 with ``Bearer error="invalid_token"``, and none is a 500.

The cases come from the security suite's generators (tests/security): alg none, key
confusion with every public-key encoding, algorithm lookalikes and cross-algorithm tokens,
embedded keys and key URLs, crit/cty/unknown header members, kid injection, every claim
rule, every base64url and JSON encoding rule, token shapes and sizes, psychic signatures,
tampered signatures, and seeded random splices. A token that cannot travel in an HTTP
header value at all (control characters, non-Latin-1) is left out, and counted.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from authgate.clock import FixedClock
from authgate.errors import InvalidToken
from authgate.guard import Guard
from authgate.jose import Key, KeySet
from security._helpers import (
    ASYM_ALGS,
    AUD,
    CURVE_ORDER,
    DROP,
    EC_ALGS,
    EC_SIZE,
    FAMILY_ALGS,
    HMAC_ALGS,
    ISS,
    NOW,
    attacker_key_for,
    b64,
    claims,
    family_of,
    header_for,
    jbytes,
    key_for,
    public_encodings,
    sign_segments,
    unb64,
)
from security.test_algorithm_binding import ALG_LOOKALIKES
from security.test_claims import (
    AT_TYPS_REFUSED,
    AUD_MALFORMED,
    AUD_MISMATCH,
    ISSUER_LOOKALIKES,
    NOT_NON_EMPTY_STRINGS,
    NOT_NUMERIC_DATES,
)
from security.test_cve_2015_9235_alg_none import NONE_VARIANTS
from security.test_encoding import (
    CHARSETS,
    DOCUMENT_DEFECTS,
    DUPLICATES,
    INVALID_UTF8,
    STD_ALPHABET_SWAPS,
    STRAY,
    WRAPPERS,
)
from security.test_fuzz_corpus import splice
from security.test_header_injection import (
    CRIT_VALUES,
    CTY_REFUSED,
    EMBEDDED_KEY_MEMBERS,
    KID_INJECTIONS,
    NOT_SHORT_STRINGS,
    UNKNOWN_MEMBERS,
    _attacker_material,
)
from security.test_key_confusion import FAMILY_ENCODINGS
from security.test_token_shape import OVERSIZED

from ._apps import fastapi_app
from ._support import AppServer, AuthServer, bearer, make_guard

AT = "at+jwt"
INVALID = 'Bearer error="invalid_token"'
_HASH = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
Case = tuple[str, str]


def at_header(key: Key, **changes: Any) -> dict[str, Any]:
    return header_for(key, **{"typ": AT, **changes})


def signed(key: Key, head: dict[str, Any] | bytes, body: dict[str, Any] | bytes) -> str:
    h = head if isinstance(head, bytes) else jbytes(head)
    p = body if isinstance(body, bytes) else jbytes(body)
    return sign_segments(b64(h), b64(p), key)


def valid(key: Key, **changes: Any) -> str:
    return signed(key, at_header(key), claims(**changes))


def hmac_forge(secret: bytes, alg: str, head: dict[str, Any]) -> str:
    signing_input = f"{b64(jbytes(head))}.{b64(jbytes(claims()))}".encode()
    return f"{signing_input.decode()}.{b64(hmac.new(secret, signing_input, _HASH[alg]).digest())}"


def with_signature(token: str, signature: bytes) -> str:
    head, payload, _ = token.split(".")
    return f"{head}.{payload}.{b64(signature)}"


# --- the catalogue ---------------------------------------------------------------------------


def alg_none() -> Iterator[Case]:
    for alg_name in NONE_VARIANTS:
        for alg in FAMILY_ALGS:
            key = key_for(alg)
            for head in ({"alg": alg_name, "kid": key.kid, "typ": AT}, {"alg": alg_name}):
                unsigned = f"{b64(jbytes(head))}.{b64(jbytes(claims()))}"
                yield f"none/{alg_name!r}/{alg}/empty", unsigned + "."
                yield f"none/{alg_name!r}/{alg}/sig", f"{unsigned}.{b64(key.sign(b'x'))}"


def key_confusion() -> Iterator[Case]:
    for target in ASYM_ALGS:
        public = key_for(target).public()
        encodings = public_encodings(target)
        for encoding in FAMILY_ENCODINGS[family_of(target)]:
            for hs in HMAC_ALGS:
                for head in ({"alg": hs, "kid": public.kid, "typ": AT}, {"alg": hs, "typ": AT}):
                    name = f"confusion/{target}/{encoding}/{hs}/{'kid' if 'kid' in head else '-'}"
                    yield name, hmac_forge(encodings[encoding], hs, head)


def algorithms() -> Iterator[Case]:
    for alg_name in ALG_LOOKALIKES:
        for alg in ("HS256", "ES256", "RS256"):
            key = key_for(alg)
            yield (
                f"lookalike/{alg_name!r}/{alg}",
                signed(key, at_header(key, alg=alg_name), claims()),
            )
    all_algs = [*HMAC_ALGS, *ASYM_ALGS]
    for key_alg in all_algs:
        for token_alg in all_algs:
            if key_alg != token_alg:
                head = at_header(key_for(token_alg), kid=key_for(key_alg).kid)
                yield f"cross/{key_alg}-as-{token_alg}", signed(key_for(token_alg), head, claims())
    for alg in FAMILY_ALGS:  # the attacker's own key, the victim's kid
        attacker = attacker_key_for(alg)
        head = at_header(attacker, kid=key_for(alg).kid)
        yield f"attacker-key/{alg}", signed(attacker, head, claims())


def header_injection() -> Iterator[Case]:
    material = _attacker_material()
    for alg in FAMILY_ALGS:
        key = key_for(alg)
        for member in EMBEDDED_KEY_MEMBERS:
            yield (
                f"embedded/{member}/{alg}",
                signed(key, at_header(key, **{member: material[member]}), claims()),
            )
        for value in CRIT_VALUES:
            yield f"crit/{value!r}/{alg}", signed(key, at_header(key, crit=value), claims())
    attacker = attacker_key_for("RS256")
    for member in EMBEDDED_KEY_MEMBERS:
        head = {"alg": "RS256", "typ": AT, member: material[member]}
        yield f"embedded-self-signed/{member}", signed(attacker, head, claims())
    key = key_for("ES256")
    for name in UNKNOWN_MEMBERS:
        yield f"unknown-member/{name!r}", signed(key, at_header(key, **{name: "x"}), claims())
    for cty in CTY_REFUSED:
        yield f"cty/{cty!r}", signed(key, at_header(key, cty=cty), claims())
    for member in ("alg", "kid", "typ", "cty"):
        for value in NOT_SHORT_STRINGS:
            yield (
                f"header-type/{member}/{value!r}"[:80],
                signed(key, at_header(key, **{member: value}), claims()),
            )
    for kid in KID_INJECTIONS:
        yield f"kid-injection/{kid!r}", signed(key, at_header(key, kid=kid), claims())


def claim_rules() -> Iterator[Case]:
    key = key_for("ES256")
    for name in ("exp", "iat", "iss", "aud", "sub", "jti"):
        yield f"missing/{name}", valid(key, **{name: DROP})
    for name in ("exp", "nbf", "iat"):
        for value in NOT_NUMERIC_DATES:
            yield f"numeric-date/{name}/{value!r}"[:80], valid(key, **{name: value})
    for name in ("iss", "sub", "jti"):
        for value in NOT_NON_EMPTY_STRINGS:
            yield f"string/{name}/{value!r}", valid(key, **{name: value})
    for iss in ISSUER_LOOKALIKES:
        yield f"issuer/{iss!r}", valid(key, iss=iss)
    for aud in (*AUD_MISMATCH, *AUD_MALFORMED):
        yield f"audience/{aud!r}", valid(key, aud=aud)
    for typ in AT_TYPS_REFUSED:
        yield f"typ/{typ!r}", signed(key, at_header(key, typ=typ), claims())
    yield "expired", valid(key, exp=NOW)
    yield "expired-long-ago", valid(key, exp=NOW - 86400, iat=NOW - 86400 - 60)
    yield "not-yet-valid", valid(key, nbf=NOW + 1)
    yield "issued-in-future", valid(key, iat=NOW + 1)
    yield "lifetime-too-long", valid(key, exp=NOW + 86400 * 2)
    for name, value in (
        ("sid", 1),
        ("sid", ""),
        ("sid", None),
        ("roles", "admin"),
        ("roles", [1]),
        ("scope", ["posts:read"]),
        ("client_id", {}),
    ):
        yield f"authgate-claim/{name}/{value!r}", valid(key, **{name: value})


def encoding_rules() -> Iterator[Case]:
    key = key_for("HS256")
    head, payload, sig = valid(key).split(".")
    segments = [head, payload, sig]
    for char in STRAY:
        for index in range(3):
            for position in (0, 5, len(segments[index])):
                changed = list(segments)
                changed[index] = changed[index][:position] + char + changed[index][position:]
                yield f"stray/U+{ord(char[0]):04X}/{index}/{position}", ".".join(changed)
    token = valid(key)
    for wrapper in WRAPPERS:
        if wrapper.strip() != "{}":  # whitespace around the value is HTTP's, not ours
            yield f"wrapper/{wrapper!r}", wrapper.format(token)
    for separator in (" .", ". ", "..", ",", "\uff0e"):
        yield f"separator/{separator!r}", f"{head}{separator}{payload}.{sig}"
    for swap, change in STD_ALPHABET_SWAPS.items():
        for index in range(3):
            changed = list(segments)
            changed[index] = change(changed[index])
            if changed != segments:
                yield f"std-alphabet/{swap}/{index}", ".".join(changed)
    yield "padding", f"{head}=.{payload}.{sig}"
    header_text = jbytes(at_header(key)).decode()
    payload_text = jbytes(claims()).decode()
    for charset in CHARSETS:
        yield (
            f"charset/header/{charset}",
            signed(key, header_text.encode(charset), jbytes(claims())),
        )
        yield (
            f"charset/payload/{charset}",
            signed(key, at_header(key), payload_text.encode(charset)),
        )
    for bad in INVALID_UTF8:
        raw = jbytes(claims()).replace(b"user-1", b"user-" + bad)
        yield f"utf8/payload/{bad.hex()}", signed(key, at_header(key), raw)
    for name, defect in DOCUMENT_DEFECTS.items():
        yield (
            f"json/header/{name}",
            signed(key, defect(header_text).encode("utf-8", "surrogatepass"), jbytes(claims())),
        )
        yield (
            f"json/payload/{name}",
            signed(key, at_header(key), defect(payload_text).encode("utf-8", "surrogatepass")),
        )
    for name, duplicate in DUPLICATES.items():
        yield (
            f"duplicate/header/{name}",
            signed(key, duplicate(header_text).encode(), jbytes(claims())),
        )
        yield (
            f"duplicate/payload/{name}",
            signed(key, at_header(key), duplicate(payload_text).encode()),
        )


def shapes() -> Iterator[Case]:
    key = key_for("ES256")
    head, payload, sig = valid(key).split(".")
    for count in (1, 2, 4, 5, 6):
        yield f"segments/{count}", ".".join([head, payload, sig, sig, sig, sig][:count])
    yield (
        "jwe-like",
        f"{b64(jbytes({'alg': 'RSA-OAEP', 'enc': 'A256GCM'}))}.{payload}.{sig}.{sig}.{sig}",
    )
    yield "empty-header", f".{payload}.{sig}"
    yield "empty-payload", f"{head}..{sig}"
    yield "empty-signature", f"{head}.{payload}."
    yield "dots", ".."
    yield (
        "json-serialization",
        json.dumps({"protected": head, "payload": payload, "signature": sig}),
    )
    yield "flattened-in-b64", b64(json.dumps({"protected": head, "payload": payload}).encode())
    for i, big in enumerate(OVERSIZED):
        if isinstance(big, str) and len(big) <= 16_384:
            yield f"oversized/{i}", big
    yield "oversized-valid", valid(key, pad="p" * 9000)


def signatures() -> Iterator[Case]:
    for alg in EC_ALGS:
        token = valid(key_for(alg))
        sig = unb64(token.split(".")[2])
        size = EC_SIZE[alg]
        r, s = int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big")
        n, top = CURVE_ORDER[alg], 2 ** (8 * size) - 1
        for name, (bad_r, bad_s) in {
            "r=s=0": (0, 0),
            "r=0": (0, s),
            "s=0": (r, 0),
            "r=n": (n, s),
            "s=n": (r, n),
            "r=s=n": (n, n),
            "r=1,s=1": (1, 1),
            "max": (top, top),
            "swapped": (s, r),
        }.items():
            raw = bad_r.to_bytes(size, "big") + bad_s.to_bytes(size, "big")
            yield f"psychic/{alg}/{name}", with_signature(token, raw)
        yield f"der-signature/{alg}", with_signature(token, b"\x30\x06\x02\x01\x01\x02\x01\x01")
    for alg in [*HMAC_ALGS, *ASYM_ALGS]:
        token = valid(key_for(alg))
        sig = unb64(token.split(".")[2])
        yield f"truncated/{alg}", with_signature(token, sig[:-1])
        yield f"extended/{alg}", with_signature(token, sig + b"\x00")
        flipped = bytes([sig[0] ^ 1]) + sig[1:]
        yield f"flipped/{alg}", with_signature(token, flipped)
        other = valid(key_for(alg), sub="someone-else")
        yield (
            f"payload-swap/{alg}",
            f"{token.split('.')[0]}.{other.split('.')[1]}.{token.split('.')[2]}",
        )


def random_splices() -> Iterator[Case]:
    rng = random.Random(20240611)
    bases = [valid(key_for(alg)) for alg in FAMILY_ALGS]
    for i in range(400):
        yield f"splice/{i}", splice(rng, rng.choice(bases))


GENERATORS = (
    alg_none,
    key_confusion,
    algorithms,
    header_injection,
    claim_rules,
    encoding_rules,
    shapes,
    signatures,
    random_splices,
)


def sendable(token: str) -> bool:
    """Whether ``Authorization: Bearer <token>`` can travel in HTTP at all."""
    # Leading or trailing whitespace is not part of a header value (RFC 9110 5.5).
    return token == token.strip() != "" and all(0x20 <= ord(c) <= 0x7E for c in token)


# --- the replay ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_guard() -> Iterator[Guard]:
    keys = KeySet([key_for(alg).public() for alg in ASYM_ALGS] + [key_for("HS256")])
    guard = Guard(keys=keys, issuer=ISS, audience=AUD, revocation="off", clock=FixedClock(NOW))
    yield guard
    guard.close_sync()


@pytest.fixture(scope="module")
def api(local_guard: Guard) -> Iterator[httpx.Client]:
    with AppServer(fastapi_app(local_guard)) as http:
        yield http


def test_the_positive_controls_pass(api: httpx.Client) -> None:
    for alg in ["HS256", *ASYM_ALGS]:
        r = api.get("/me", headers=bearer(valid(key_for(alg))))
        assert r.status_code == 200, (alg, r.text)
        assert r.json()["sub"] == "user-1"


@pytest.mark.parametrize("generator", GENERATORS, ids=lambda g: g.__name__)
def test_every_attack_is_a_401(api: httpx.Client, local_guard: Guard, generator: Any) -> None:
    cases = list(generator())
    sent = [(name, tok) for name, tok in cases if sendable(tok)]
    assert len(sent) >= 0.6 * len(cases), f"only {len(sent)} of {len(cases)} cases can be sent"
    wrong: list[str] = []
    for name, tok in sent:
        if generator is random_splices:
            # A splice may (rarely) leave a valid token: HTTP must agree with the core.
            try:
                local_guard.verify_sync(tok.strip())
                continue
            except InvalidToken:
                pass
        r = api.get("/me", headers={"Authorization": f"Bearer {tok}"})
        if r.status_code != 401 or r.headers.get("www-authenticate") != INVALID:
            wrong.append(f"{name}: {r.status_code} {r.headers.get('www-authenticate')!r}")
    assert not wrong, f"{len(wrong)} of {len(sent)} cases were not 401: {wrong[:20]}"


def test_the_catalogue_is_large() -> None:
    total = sum(len(list(g())) for g in GENERATORS)
    assert total > 2500, total


# --- against the real server's keys --------------------------------------------------------


def test_attacks_on_the_real_servers_keys(auth: AuthServer, creds: tuple[str, str]) -> None:
    """The same classes, aimed at a real server's published key, through FastAPI with a
    remote guard."""
    guard = make_guard(auth, creds)
    token = auth.register("victim@example.com", "correct horse battery staple 42")["access_token"]
    jwk = auth.http.get("/.well-known/jwks.json").json()["keys"][0]
    public = Key.from_jwk(jwk)
    head, payload, sig = token.split(".")
    body = json.loads(unb64(payload))
    attacker = attacker_key_for("ES256")
    material = _attacker_material()

    def forge(key: Key, header: dict[str, Any], claims_: dict[str, Any] | None = None) -> str:
        return signed(key, header, claims_ or body)

    def hmac_with(secret: bytes, alg: str, kid: str | None) -> str:
        hdr: dict[str, Any] = {"alg": alg, "typ": AT}
        if kid:
            hdr["kid"] = kid
        signing_input = f"{b64(jbytes(hdr))}.{payload}".encode()
        return (
            f"{signing_input.decode()}.{b64(hmac.new(secret, signing_input, _HASH[alg]).digest())}"
        )

    cases: list[Case] = []
    for encoding in (
        json.dumps(jwk).encode(),
        json.dumps(jwk, separators=(",", ":")).encode(),
        json.dumps({"keys": [jwk]}).encode(),
        public.to_pem(),
        public.to_pem().rstrip(b"\n"),
    ):
        for alg in HMAC_ALGS:
            cases += [(f"confusion/{alg}", hmac_with(encoding, alg, public.kid))]
            cases += [(f"confusion/{alg}/no-kid", hmac_with(encoding, alg, None))]
    for alg_name in NONE_VARIANTS:
        cases.append(
            (
                f"none/{alg_name!r}",
                f"{b64(jbytes({'alg': alg_name, 'kid': public.kid}))}.{payload}.",
            )
        )
    cases.append(
        ("attacker-key-victim-kid", forge(attacker, {"alg": "ES256", "kid": public.kid, "typ": AT}))
    )
    for member in EMBEDDED_KEY_MEMBERS:
        hdr = {"alg": "RS256", "typ": AT, member: material[member]}
        cases.append((f"embedded/{member}", forge(attacker_key_for("RS256"), hdr)))
    cases.append(
        ("payload-swap", f"{head}.{b64(jbytes({**body, 'scope': 'authgate:admin'}))}.{sig}")
    )
    cases.append(
        ("signature-flip", f"{head}.{payload}.{sig[:-2]}{'AA' if sig[-2:] != 'AA' else 'BA'}")
    )
    cases.append(
        (
            "typ-jwt",
            f"{b64(jbytes({'alg': 'ES256', 'kid': public.kid, 'typ': 'JWT'}))}.{payload}.{sig}",
        )
    )
    with AppServer(fastapi_app(guard)) as api:
        assert api.get("/me", headers=bearer(token)).status_code == 200  # the control
        for name, tok in cases:
            r = api.get("/me", headers={"Authorization": f"Bearer {tok}"})
            assert (r.status_code, r.headers.get("www-authenticate")) == (401, INVALID), name
    guard.close_sync()
