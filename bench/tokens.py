"""Sign and verify cost of authgate's JWT codec against the raw primitive, PyJWT and joserfc.

Run: ``.venv/bin/python bench/tokens.py [--quick]``

Prints one table, every figure measured in the same run, of microseconds per operation
(the median of several repeats, each a timeit-style loop with the garbage collector off)
for HS256, RS256, ES256 and EdDSA:

* ``sign``: ``authgate.jose.encode`` of a realistic RFC 9068 access token (typ at+jwt, kid);
* ``verify``: ``authgate.jose.decode`` with ``ClaimsPolicy.access_token`` (full claim checks).

Baselines, on the same claims and the same token:

* ``primitive``: the bare pyca/cryptography call on the same signing-input bytes (HMAC
  compute [+ verify]; RSA PKCS#1 v1.5; ECDSA on a DER signature prepared beforehand, so no
  raw->DER conversion; Ed25519), with the padding/hash objects built beforehand;
* ``PyJWT``: ``jwt.encode`` / ``jwt.decode`` with a pre-loaded key object, audience, issuer
  and ``require`` of every claim authgate requires;
* ``joserfc``: ``jwt.encode`` / ``jwt.decode`` + ``JWTClaimsRegistry.validate`` with
  pre-imported keys and a registry built once.

The measurements of a row are interleaved (one repeat of each in turn), so that a change in
machine load hits every column alike. A target that is missed is reported as MISS; the exit
status is 0 all the same: performance is reported here, not asserted.
"""

from __future__ import annotations

import argparse
import base64
import json
import operator
import os
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt as pyjwt
from _harness.report import Column, Table, Target, load_after, machine_lines, say
from _harness.stats import Fn, time_interleaved
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jwt as jrfc_jwt
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OctKey, OKPKey, RSAKey

from authgate.jose import ClaimsPolicy, Key, decode, encode, jws
from authgate.jose._json import loads_object
from authgate.jose.jwt import check_claims

ISSUER = "https://auth.example.com"
AUDIENCE = "https://api.example.com"
REQUIRED = ["exp", "iat", "iss", "aud", "sub", "jti"]
ALGS = ("HS256", "RS256", "ES256", "EdDSA")
# authgate / primitive ceiling for verify, per algorithm.
PRIMITIVE_TARGET = {
    "HS256": Target("<=", 5.0),
    "RS256": Target("<=", 1.6),
    "ES256": Target("<=", 1.2),
    "EdDSA": Target("<=", 1.2),
}
# PyJWT / authgate floor for HS256 verify; every other row only needs to be faster.
PYJWT_HS256_VERIFY_TARGET = Target(">=", 4.0)
FASTER = Target(">", 1.0)
TABLE = Table(
    Column("alg", 6, left=True),
    Column("op", 7, left=True),
    Column("authgate", 9),
    Column("primitive", 9),
    Column("ag/prim", 7),
    Column("target", 7),
    Column("PyJWT", 9),
    Column("PyJWT/ag", 8),
    Column("target", 6),
    Column("joserfc", 9),
    Column("jrfc/ag", 7),
    Column("target", 6),
    Column("status", left=True),
    gap=" ",
)


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


# --- fixtures -------------------------------------------------------------------------------


def access_token_claims(now: int) -> dict[str, Any]:
    """A realistic RFC 9068 access token's claims."""
    return {
        "iss": ISSUER,
        "sub": "usr_01HZX3M6Q8J2R4V7T9W1Y5B0CD",
        "aud": AUDIENCE,
        "exp": now + 600,
        "iat": now,
        "jti": uuid.uuid4().hex,
        "sid": "ses_01HZX3M7A2B4C6D8E0F2G4H6JK",
        "client_id": "authgate",
        "roles": ["editor", "billing-viewer"],
        "scope": "openid profile email orders:read orders:write",
    }


@dataclass
class Case:
    """Everything one algorithm's rows need, prepared outside the timed loops."""

    alg: str
    key: Key
    token: str
    signing_input: bytes
    raw_sig: bytes
    prim_sign: Fn
    prim_verify: Fn
    pyjwt_sign_key: Any
    pyjwt_verify_key: Any
    jrfc_sign_key: Any
    jrfc_verify_key: Any


def make_case(alg: str, claims: dict[str, Any]) -> Case:
    """Generate a key for ``alg`` and the matching primitive, PyJWT and joserfc objects."""
    kid = f"bench-{alg.lower()}"
    key = Key.generate(alg, kid=kid)
    token = encode(claims, key, typ="at+jwt")
    head, payload, sig_seg = token.split(".")
    signing_input = f"{head}.{payload}".encode("ascii")
    raw_sig = _b64url(sig_seg)
    key.verify(signing_input, raw_sig)

    if alg == "HS256":
        secret = _b64url(key.to_jwk(private=True)["k"])
        sha256 = hashes.SHA256()

        def prim_sign() -> bytes:
            mac = hmac.HMAC(secret, sha256)
            mac.update(signing_input)
            return mac.finalize()

        def prim_verify() -> None:
            mac = hmac.HMAC(secret, sha256)
            mac.update(signing_input)
            mac.verify(raw_sig)

        pyjwt_sign_key = pyjwt_verify_key = secret
        jrfc_sign_key = jrfc_verify_key = OctKey.import_key(secret)
    else:
        priv_pem = key.to_pem(private=True)
        pub_pem = key.to_pem()
        private: Any = serialization.load_pem_private_key(priv_pem, password=None)
        public: Any = serialization.load_pem_public_key(pub_pem)
        pyjwt_sign_key, pyjwt_verify_key = private, public
        if alg == "RS256":
            pkcs1, sha256 = padding.PKCS1v15(), hashes.SHA256()

            def prim_sign() -> bytes:
                return private.sign(signing_input, pkcs1, sha256)

            def prim_verify() -> None:
                public.verify(raw_sig, signing_input, pkcs1, sha256)

            jrfc_cls: Any = RSAKey
        elif alg == "ES256":
            ecdsa = ec.ECDSA(hashes.SHA256())
            der_sig = encode_dss_signature(
                int.from_bytes(raw_sig[:32], "big"), int.from_bytes(raw_sig[32:], "big")
            )

            def prim_sign() -> bytes:
                return private.sign(signing_input, ecdsa)

            def prim_verify() -> None:
                public.verify(der_sig, signing_input, ecdsa)

            jrfc_cls = ECKey
        else:

            def prim_sign() -> bytes:
                return private.sign(signing_input)

            def prim_verify() -> None:
                public.verify(raw_sig, signing_input)

            jrfc_cls = OKPKey
        jrfc_sign_key = jrfc_cls.import_key(priv_pem)
        jrfc_verify_key = jrfc_cls.import_key(pub_pem)

    return Case(
        alg=alg,
        key=key,
        token=token,
        signing_input=signing_input,
        raw_sig=raw_sig,
        prim_sign=prim_sign,
        prim_verify=prim_verify,
        pyjwt_sign_key=pyjwt_sign_key,
        pyjwt_verify_key=pyjwt_verify_key,
        jrfc_sign_key=jrfc_sign_key,
        jrfc_verify_key=jrfc_verify_key,
    )


def row_callables(case: Case, claims: dict[str, Any], op: str) -> dict[str, Fn]:
    """The four callables of one row; each is run once here so that a failure is loud."""
    alg, key, token = case.alg, case.key, case.token
    header = {"kid": key.kid, "typ": "at+jwt"}
    jrfc_header = {"alg": alg, **header}
    policy = ClaimsPolicy.access_token(issuer=ISSUER, audience=AUDIENCE)
    registry = jrfc_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": ISSUER},
        aud={"essential": True, "value": AUDIENCE},
        sub={"essential": True},
        jti={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
    )
    algorithms = [alg]
    pk_sign, pk_verify = case.pyjwt_sign_key, case.pyjwt_verify_key
    jk_sign, jk_verify = case.jrfc_sign_key, case.jrfc_verify_key
    options = {"require": REQUIRED}

    fns: dict[str, Fn]
    if op == "sign":
        fns = {
            "authgate": lambda: encode(claims, key, typ="at+jwt"),
            "primitive": case.prim_sign,
            "pyjwt": lambda: pyjwt.encode(claims, pk_sign, algorithm=alg, headers=header),
            "joserfc": lambda: jrfc_jwt.encode(jrfc_header, claims, jk_sign, algorithms=algorithms),
        }
        for name in ("authgate", "pyjwt", "joserfc"):
            produced = fns[name]()
            assert isinstance(produced, str), name
            got = decode(produced, key, algorithms=algorithms, policy=policy)
            assert got == claims, name
    else:

        def jrfc_verify() -> dict[str, Any]:
            tok = jrfc_jwt.decode(token, jk_verify, algorithms=algorithms)
            registry.validate(tok.claims)
            return tok.claims

        fns = {
            "authgate": lambda: decode(token, key, algorithms=algorithms, policy=policy),
            "primitive": case.prim_verify,
            "pyjwt": lambda: pyjwt.decode(
                token,
                pk_verify,
                algorithms=algorithms,
                audience=AUDIENCE,
                issuer=ISSUER,
                options=options,
            ),
            "joserfc": jrfc_verify,
        }
        for name in ("authgate", "pyjwt", "joserfc"):
            assert fns[name]() == claims, name
    fns["primitive"]()
    return fns


def breakdown_callables(case: Case) -> dict[str, Fn]:
    """Pieces of HS256 verify, each run once here so that a failure is loud."""
    token, key = case.token, case.key
    policy = ClaimsPolicy.access_token(issuer=ISSUER, audience=AUDIENCE)
    # jws.split is internal: it returns (header, payload, signature, signing_input), or an
    # object with those attributes in older trees. Pick the accessor once, outside the loops.
    parsed = jws.split(token)
    if isinstance(parsed, tuple):
        get_payload: Callable[[Any], bytes] = operator.itemgetter(1)
        header, payload, sig, si = parsed
    else:
        get_payload = operator.attrgetter("payload")
        header, payload = parsed.header, parsed.payload
        sig, si = parsed.signature, parsed.signing_input
    typ = header.typ
    claims = loads_object(payload)
    now = time.time()
    fns: dict[str, Fn] = {
        "decode (total)": lambda: decode(token, key, algorithms=["HS256"], policy=policy),
        "parse: jws.split + payload JSON": lambda: loads_object(get_payload(jws.split(token))),
        "  jws.split alone": lambda: jws.split(token),
        "  loads_object(payload) alone": lambda: loads_object(payload),
        "json.loads(payload) (stdlib)": lambda: json.loads(payload),
        "key.verify (HMAC via Key)": lambda: key.verify(si, sig),
        "HMAC primitive (pyca)": case.prim_verify,
        "check_claims": lambda: check_claims(claims, typ=typ, policy=policy, now=now),
    }
    for fn in fns.values():
        fn()
    return fns


# --- report ---------------------------------------------------------------------------------


def row(case: Case, claims: dict[str, Any], op: str, *, repeats: int, target_s: float) -> list[str]:
    """Measure one row; its cells, the last one ``ok`` or ``MISS (the baselines missed)``."""
    res = time_interleaved(row_callables(case, claims, op), repeats=repeats, target_s=target_s)
    prim_ratio = res.ratio("authgate", "primitive", float)
    py_ratio = res.ratio("pyjwt", "authgate", float)
    jr_ratio = res.ratio("joserfc", "authgate", float)
    prim = PRIMITIVE_TARGET[case.alg] if op == "verify" else None
    py = PYJWT_HS256_VERIFY_TARGET if (case.alg, op) == ("HS256", "verify") else FASTER
    why = [
        name
        for name, target, ratio in (
            ("primitive", prim, prim_ratio),
            ("PyJWT", py, py_ratio),
            ("joserfc", FASTER, jr_ratio),
        )
        if target is not None and not target.met(ratio)
    ]
    return [
        case.alg,
        op,
        f"{res.median('authgate', float):.2f}",
        f"{res.median('primitive', float):.2f}",
        f"{prim_ratio:.2f}x",
        "-" if prim is None else str(prim),
        f"{res.median('pyjwt', float):.2f}",
        f"{py_ratio:.2f}x",
        str(py),
        f"{res.median('joserfc', float):.2f}",
        f"{jr_ratio:.2f}x",
        str(FASTER),
        "ok" if not why else "MISS (" + ", ".join(why) + ")",
    ]


def breakdown(case: Case, *, repeats: int, target_s: float) -> None:
    """Print the pieces of HS256 verify, against the whole decode."""
    say(f"HS256 verify breakdown (µs/op, median of {repeats} repeats):")
    timings = time_interleaved(breakdown_callables(case), repeats=repeats, target_s=target_s)
    parts = {name: timings.median(name, float) for name in timings.samples}
    total = parts["decode (total)"]
    accounted = (
        parts["parse: jws.split + payload JSON"]
        + parts["key.verify (HMAC via Key)"]
        + parts["check_claims"]
    )
    parts["rest (allowlist, key choice, glue)"] = total - accounted
    for name, value in parts.items():
        say(f"  {name:<34} {value:9.2f}  {100.0 * value / total:5.1f}% of decode")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~10 s smoke run")
    args = parser.parse_args(argv)
    repeats, target_s = (7, 0.025) if args.quick else (15, 0.07)

    # EdDSA is "deprecated via RFC 9864" for joserfc, which warns on every use; silence it
    # (the filter lookup stays in joserfc's measured cost, as it would for its users).
    warnings.filterwarnings("ignore", category=SecurityWarning)

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    claims = access_token_claims(int(time.time()))
    cases = [make_case(alg, claims) for alg in ALGS]
    setup_s = time.perf_counter() - started

    say(
        f"authgate JWT sign/verify: µs per operation, median of {repeats} interleaved repeats;"
        " ratios are medians of per-round ratios"
        + (" (--quick: figures are noisy)" if args.quick else "")
    )
    for line in machine_lines("cryptography", "PyJWT", "joserfc"):
        say(line)
    say(f"token: {len(cases[0].token)} bytes (HS256), typ at+jwt, kid, {len(claims)} claims")
    say()
    say(TABLE.head())
    misses = 0
    for case in cases:
        for op in ("sign", "verify"):
            cells = row(case, claims, op, repeats=repeats, target_s=target_s)
            misses += cells[-1] != "ok"
            say(TABLE.row(cells))
    say()
    say(
        "ag/prim = authgate / bare pyca call on the same signing input (lower is better);\n"
        "PyJWT/ag and jrfc/ag = how many times slower the other library is (higher is better).\n"
        "sign rows: primitive = HMAC compute / RSA PKCS#1 v1.5 / ECDSA (DER out) / Ed25519 sign."
    )
    say()
    breakdown(next(c for c in cases if c.alg == "HS256"), repeats=repeats, target_s=target_s)
    say()
    say(
        f"{misses} row(s) missed a target · setup (key generation) {setup_s:.1f} s · "
        f"total {time.perf_counter() - started:.1f} s"
    )
    say(load_after())
    # This run itself adds about 1 to the load average; more than that means other work.
    if max(load_before, os.getloadavg()[0] - 1.0) > 0.5 * (os.cpu_count() or 1):
        say("note: the machine was busy with other work; rerun on a quiet one to compare.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
