"""The guard with local keys (no network): configuration, the access-token policy, and the
verified-token cache."""

from __future__ import annotations

import dataclasses
import gc
import inspect
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from authgate.clock import FixedClock
from authgate.errors import (
    AlgorithmNotAllowed,
    AuthgateError,
    ConfigurationError,
    InvalidAudience,
    InvalidClaims,
    InvalidIssuer,
    InvalidSignature,
    InvalidType,
    LifetimeTooLong,
    MissingClaim,
    TokenExpired,
    TokenNotYetValid,
    UnknownKey,
)
from authgate.guard import Guard, GuardOptions, Principal
from authgate.jose import Key, KeySet, encode

NOW = 1_700_000_000.0
ISS = "https://auth.example.com"
AUD = "api"


@pytest.fixture(scope="module")
def hs() -> Key:
    return Key.from_secret(b"k" * 32 + b"local-hs256-secret", kid="hs")


@pytest.fixture(scope="module")
def es() -> Key:
    return Key.generate("ES256", kid="es")


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISS,
        "sub": "usr_1",
        "aud": AUD,
        "exp": NOW + 600,
        "iat": NOW,
        "jti": "jti-1",
        "sid": "sid_1",
        "client_id": "authgate",
        "roles": ["editor"],
        "scope": "posts:read",
    }
    for name, value in changes.items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    return base


def at(key: Key, **changes: Any) -> str:
    return encode(claims(**changes), key, typ="at+jwt")


def local_guard(key: Key | KeySet, clock: FixedClock | None = None, **options: Any) -> Guard:
    return Guard(
        keys=key,
        issuer=ISS,
        audience=AUD,
        revocation="off",
        clock=clock or FixedClock(NOW),
        **options,
    )


def refused(cls: type[AuthgateError], code: str, call: Callable[[], Any]) -> AuthgateError:
    with pytest.raises(AuthgateError) as info:
        call()
    assert type(info.value) is cls, repr(info.value)
    assert info.value.code == code
    return info.value


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"audience": "api"}, "needs an issuer"),
        ({"audience": "", "issuer": ISS, "revocation": "off"}, "needs an audience"),
        ({"audience": "api", "issuer": ISS}, "revocation='off'"),
        ({"audience": "api", "issuer": ISS, "client_id": "c"}, "revocation='off'"),
        ({"audience": "api", "issuer": ISS, "client_secret": "s"}, "revocation='off'"),
        ({"audience": "api", "issuer": ISS, "revocation": "maybe"}, "'feed' or 'off'"),
        (
            {"audience": "api", "issuer": ISS, "revocation": "off", "algorithms": ["HS256"]},
            "never taken from a remote JWKS",
        ),
        (
            {"audience": "api", "issuer": ISS, "revocation": "off", "algorithms": ["none"]},
            "unsupported algorithms",
        ),
        (
            {"audience": "api", "issuer": ISS, "revocation": "off", "algorithms": "ES256"},
            "collection of names",
        ),
        (
            {"audience": "api", "issuer": "http://auth.example.com", "revocation": "off"},
            "plain http",
        ),
        ({"audience": "api", "issuer": "ftp://x", "revocation": "off"}, "http"),
        (
            {"audience": "api", "issuer": ISS, "revocation": "off", "fail_closed_after": 0},
            "fail_closed_after",
        ),
        ({"audience": "api", "issuer": ISS, "revocation": "off", "cache_size": -1}, "cache_size"),
    ],
)
def test_contradictory_configurations_are_refused(options: dict[str, Any], why: str) -> None:
    with pytest.raises(ConfigurationError, match=why) as info:
        Guard(**options)
    assert info.value.code == "invalid_configuration"
    with pytest.raises(ConfigurationError, match=why):
        GuardOptions(**options)


def test_options_every_guard_keyword_is_an_option(hs: Key) -> None:
    # Guard keeps its keyword signature and builds its GuardOptions from it, option for
    # option: a keyword added to one and not the other fails here.
    params = inspect.signature(Guard).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    fields = {f.name: f for f in dataclasses.fields(GuardOptions) if f.init}
    assert set(params) - {"metrics"} == set(fields)
    for name, field in fields.items():
        if field.default is not dataclasses.MISSING:
            assert params[name].default == field.default, name
    clock = FixedClock(NOW)
    given: dict[str, Any] = {
        "keys": hs,
        "audience": AUD,
        "issuer": ISS,
        "revocation": "off",
        "algorithms": ["HS256"],
        "leeway": 5.0,
        "max_lifetime": 600.0,
        "clock": clock,
        "cache_size": 7,
        "cookie": "at",
        "realm": "api",
        "fail_closed_after": None,
    }
    guard = Guard(**given)
    assert guard.options == GuardOptions(**given)
    for name, value in given.items():
        assert getattr(guard.options, name) == value, name
    assert guard.options.local_keys is not None
    assert [k.kid for k in guard.options.local_keys] == ["hs"]
    assert guard.algorithms == guard.options.allowed_algorithms == {"HS256"}
    assert Guard(keys=hs, audience=AUD, revocation="off").options.clock is not None


def test_options_are_frozen(hs: Key) -> None:
    options = Guard(keys=hs, audience=AUD, revocation="off").options
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.audience = "other"  # type: ignore[misc]


def test_secret_leak_options_repr_hides_the_client_secret() -> None:
    options = GuardOptions(
        issuer=ISS, audience=AUD, client_id="cli", client_secret="s3cret-value-42"
    )
    assert "s3cret-value-42" not in repr(options)
    assert "cli" in repr(options)


def test_revocation_is_never_skipped_silently(hs: Key) -> None:
    # Local keys and an issuer, without client credentials: refused unless explicit.
    with pytest.raises(ConfigurationError, match="revocation='off'"):
        Guard(keys=hs, issuer=ISS, audience=AUD)
    assert Guard(keys=hs, issuer=ISS, audience=AUD, revocation="off").ready


def test_plain_http_is_allowed_on_loopback_or_when_asked() -> None:
    for issuer in ("http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"):
        Guard(issuer=issuer, audience=AUD, revocation="off")
    Guard(issuer="http://auth.internal", audience=AUD, revocation="off", allow_insecure_http=True)


def test_local_keys_without_an_allowed_algorithm_are_refused(hs: Key) -> None:
    with pytest.raises(ConfigurationError, match="no local key"):
        Guard(keys=hs, audience=AUD, revocation="off", algorithms=["ES256"])


# --- verification ----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("which", ["hs", "es"])
async def test_local_keys_verify(which: str, hs: Key, es: Key) -> None:
    key = hs if which == "hs" else es
    guard = local_guard(key if which == "hs" else key.public())
    async with guard:
        p = await guard.verify(at(key))
    assert isinstance(p, Principal)
    assert (p.sub, p.sid, p.jti, p.roles) == ("usr_1", "sid_1", "jti-1", ("editor",))
    assert p.permissions == frozenset({"posts:read"})
    assert guard.verify_sync(at(key)) == p or guard.verify_sync(at(key)).sub == "usr_1"


def test_verify_sync_and_verify_agree(hs: Key) -> None:
    guard = local_guard(hs)
    token = at(hs)
    p = guard.verify_sync(token)
    assert p.token == token
    assert guard.revocation_staleness is None  # revocation is off


@pytest.mark.parametrize(
    ("changes", "cls", "code"),
    [
        ({"exp": NOW}, TokenExpired, "token_expired"),
        ({"nbf": NOW + 5}, TokenNotYetValid, "token_not_yet_valid"),
        ({"iss": "https://evil.example.com"}, InvalidIssuer, "invalid_issuer"),
        ({"aud": "other-api"}, InvalidAudience, "invalid_audience"),
        ({"exp": NOW + 86401}, LifetimeTooLong, "lifetime_too_long"),
        ({"jti": None}, MissingClaim, "missing_claim"),
        ({"sid": 7}, InvalidClaims, "invalid_claims"),
        ({"roles": "admin"}, InvalidClaims, "invalid_claims"),
        ({"ver": "3"}, InvalidClaims, "invalid_claims"),
        ({"ver": -1}, InvalidClaims, "invalid_claims"),
        ({"ver": 3.0}, InvalidClaims, "invalid_claims"),
        ({"ver": True}, InvalidClaims, "invalid_claims"),
    ],
)
def test_the_access_token_policy_applies(
    hs: Key, changes: dict[str, Any], cls: type[AuthgateError], code: str
) -> None:
    guard = local_guard(hs)
    refused(cls, code, lambda: guard.verify_sync(at(hs, **changes)))


@pytest.mark.parametrize("typ", ["JWT", None, "jwt", "at+jwt+x", "application/jwt"])
def test_only_at_jwt_tokens_pass(hs: Key, typ: str | None) -> None:
    guard = local_guard(hs)
    token = encode(claims(), hs, typ=typ)
    refused(InvalidType, "invalid_type", lambda: guard.verify_sync(token))


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
def test_at_jwt_in_any_case_passes(hs: Key, typ: str) -> None:
    assert local_guard(hs).verify_sync(encode(claims(), hs, typ=typ)).sub == "usr_1"


def test_a_key_outside_the_set_and_a_wrong_algorithm(hs: Key, es: Key) -> None:
    guard = local_guard(KeySet([hs]))
    # The allowlist comes from the local keys: ES256 is not in it.
    refused(AlgorithmNotAllowed, "algorithm_not_allowed", lambda: guard.verify_sync(at(es)))
    stranger = Key.from_secret(b"s" * 40, kid="stranger")
    refused(UnknownKey, "unknown_key", lambda: guard.verify_sync(at(stranger)))
    other = Key.from_secret(b"o" * 48, kid="hs")
    refused(InvalidSignature, "invalid_signature", lambda: guard.verify_sync(at(other)))
    only_es = local_guard(KeySet([hs, es.public()]), algorithms=["ES256"])
    refused(AlgorithmNotAllowed, "algorithm_not_allowed", lambda: only_es.verify_sync(at(hs)))


def test_without_an_issuer_iss_is_not_required(hs: Key) -> None:
    guard = Guard(keys=hs, audience=AUD, revocation="off", clock=FixedClock(NOW))
    assert guard.verify_sync(at(hs, iss=None)).sub == "usr_1"
    assert guard.verify_sync(at(hs)).sub == "usr_1"  # any issuer when none is configured
    refused(MissingClaim, "missing_claim", lambda: local_guard(hs).verify_sync(at(hs, iss=None)))


# --- the verified-token cache ---------------------------------------------------------------


def test_a_cached_token_is_the_same_principal_and_skips_the_crypto(hs: Key) -> None:
    guard = local_guard(hs)
    token = at(hs)
    first = guard.verify_sync(token)
    assert guard.cache_stats() == (1, 0, 1)
    assert guard.verify_sync(token) is first
    assert guard.verify_sync(token) is first
    assert guard.cache_stats() == (1, 2, 1)


def test_exp_and_nbf_are_checked_on_every_hit(hs: Key) -> None:
    clock = FixedClock(NOW)
    guard = local_guard(hs, clock=clock)
    token = at(hs, exp=NOW + 60)
    guard.verify_sync(token)
    clock.advance(59.999)
    guard.verify_sync(token)
    clock.advance(0.001)
    refused(TokenExpired, "token_expired", lambda: guard.verify_sync(token))
    assert guard.cache_stats()[0] == 0  # an expired token leaves the cache

    # nbf: a token cached while valid, checked again when the clock goes back.
    clock.set(NOW + 10)
    early = at(hs, nbf=NOW + 10, jti="early")
    guard.verify_sync(early)
    clock.set(NOW + 9)
    refused(TokenNotYetValid, "token_not_yet_valid", lambda: guard.verify_sync(early))


def test_leeway_applies_on_hits_too(hs: Key) -> None:
    clock = FixedClock(NOW)
    guard = local_guard(hs, clock=clock, leeway=30)
    token = at(hs, exp=NOW + 60)
    guard.verify_sync(token)
    clock.advance(89)
    assert guard.verify_sync(token).sub == "usr_1"
    clock.advance(1)
    refused(TokenExpired, "token_expired", lambda: guard.verify_sync(token))


def test_the_cache_is_bounded_and_least_recently_used(hs: Key) -> None:
    guard = local_guard(hs, cache_size=3)
    tokens = [at(hs, jti=f"j{i}") for i in range(5)]
    for t in tokens[:3]:
        guard.verify_sync(t)
    guard.verify_sync(tokens[0])  # now the most recent
    guard.verify_sync(tokens[3])  # evicts tokens[1]
    assert list(guard._cache) == [tokens[2], tokens[0], tokens[3]]
    guard.verify_sync(tokens[4])  # evicts tokens[2]
    assert list(guard._cache) == [tokens[0], tokens[3], tokens[4]]
    assert guard.cache_info().entries == 3
    assert guard.cache_info().max_entries == 3


def test_a_zero_cache_verifies_every_time(hs: Key) -> None:
    guard = local_guard(hs, cache_size=0)
    token = at(hs)
    assert guard.verify_sync(token) is not guard.verify_sync(token)
    assert guard.cache_stats() == (0, 0, 2)


def test_the_cache_key_is_the_exact_token(hs: Key) -> None:
    guard = local_guard(hs)
    token = at(hs)
    guard.verify_sync(token)
    head, payload, sig = token.split(".")
    tampered = f"{head}.{payload}.{sig[:-2]}{'A' if sig[-2] != 'A' else 'B'}{sig[-1]}"
    with pytest.raises(AuthgateError) as info:
        guard.verify_sync(tampered)
    assert info.value.code in ("invalid_signature", "malformed_token")


def test_refused_tokens_are_never_cached(hs: Key) -> None:
    guard = local_guard(hs)
    for i in range(20):
        with pytest.raises(TokenExpired):
            guard.verify_sync(at(hs, jti=f"x{i}", exp=NOW - 1))
    assert guard.cache_stats()[0] == 0


def test_cache_memory_is_measured_and_bounded(es: Key) -> None:
    guard = local_guard(es.public(), cache_size=500)
    tokens = [at(es, jti=f"jti-{i:06d}", sid=f"sid_{i:06d}") for i in range(600)]
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        fresh = [t.encode().decode() for t in tokens]  # as from a request: new strings
        for t in fresh:
            guard.verify_sync(t)
        del fresh
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    info = guard.cache_info()
    assert info.entries == 500
    per_entry = info.approx_bytes / info.entries
    # A user token's cache entry: the token string, its claims and the Principal.
    assert 1000 < per_entry < 6000, per_entry
    # The estimate is close to what the cache really holds.
    assert 0.75 < info.approx_bytes / held < 1.33, (info.approx_bytes, held)
