"""Where the guard sends requests, against real servers: every URL it fetches or sends its
client secret to must be https (plain http only on loopback) and on the issuer's origin or an
explicitly allowlisted one; redirects are never followed. A second real server plays the
foreign endpoint and records every request, to prove that nothing reached it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from authgate.clock import FixedClock
from authgate.errors import ConfigurationError
from authgate.guard import Guard
from authgate.guard._http import FetchError
from authgate.jose import Key

from ._fake import run_on
from ._issuer import FEED_MEMBER, METADATA_PATH, NOW, Resolver, ScriptedIssuer, serve
from ._support import AUDIENCE

CLIENT = ("cli_guard", "guard-secret-value")
KEYS_ORIGIN = "https://keys.example.com"
PLAIN_ORIGIN = "http://keys.example.com"


@pytest.fixture(scope="module")
def key() -> Key:
    return Key.generate("ES256", kid="k1")


@pytest.fixture
def issuer(key: Key) -> Iterator[ScriptedIssuer]:
    with serve(ScriptedIssuer([key])) as live:
        yield live


@pytest.fixture
def foreign(key: Key) -> Iterator[ScriptedIssuer]:
    """Another origin (another port on loopback), serving the same keys and a feed."""
    with serve(ScriptedIssuer([key])) as live:
        yield live


def guard_on(issuer: ScriptedIssuer, **options: Any) -> Guard:
    options.setdefault("startup_timeout", 5.0)
    return Guard(
        issuer=issuer.url,
        audience=AUDIENCE,
        client_id=CLIENT[0],
        client_secret=CLIENT[1],
        clock=FixedClock(NOW),
        feed_wait=0,
        feed_interval=0.05,
        **options,
    )


def start_error(guard: Guard) -> ConfigurationError | None:
    """Start (and close) the guard; the ConfigurationError that failed the start, if any."""
    try:
        guard.start_sync(10)
    except ConfigurationError as exc:
        return exc
    finally:
        guard.close_sync()
    return None


def assert_refused(err: ConfigurationError | None, condition: str) -> ConfigurationError:
    assert err is not None, "the guard started"
    assert err.code == "invalid_configuration"
    assert err.context["condition"] == condition, err
    assert CLIENT[1] not in str(err)
    return err


@pytest.mark.parametrize("members", [("jwks_uri",), (FEED_MEMBER,), ("jwks_uri", FEED_MEMBER)])
def test_untrusted_endpoint_on_another_origin_is_refused_before_any_request(
    issuer: ScriptedIssuer, foreign: ScriptedIssuer, members: tuple[str, ...]
) -> None:
    paths = {"jwks_uri": "/jwks.json", FEED_MEMBER: "/feed"}
    for member in members:
        issuer.metadata[member] = foreign.url + paths[member]
    err = start_error(guard_on(issuer))
    assert foreign.seen == []  # no key fetched from it, no secret sent to it
    assert "allowed_origins" in str(assert_refused(err, "endpoint_not_allowed"))
    assert issuer.paths() == [METADATA_PATH]


@pytest.mark.parametrize(
    ("origin", "condition_message"),
    [(PLAIN_ORIGIN, "plain http"), (KEYS_ORIGIN, "not the issuer's origin")],
)
def test_untrusted_endpoint_off_loopback_is_refused_and_the_secret_never_leaves(
    issuer: ScriptedIssuer, foreign: ScriptedIssuer, origin: str, condition_message: str
) -> None:
    # keys.example.com resolves to the foreign server: a real listener that records requests.
    issuer.metadata["jwks_uri"] = f"{origin}/jwks.json"
    issuer.metadata[FEED_MEMBER] = f"{origin}/feed"
    err = start_error(guard_on(issuer, transport=Resolver({origin: foreign.url})))
    assert foreign.seen == []
    assert condition_message in str(assert_refused(err, "endpoint_not_allowed"))


def test_untrusted_endpoint_allowlisted_explicitly_is_used(
    issuer: ScriptedIssuer, foreign: ScriptedIssuer
) -> None:
    issuer.metadata["jwks_uri"] = f"{KEYS_ORIGIN}/jwks.json"
    issuer.metadata[FEED_MEMBER] = f"{KEYS_ORIGIN}/feed"
    guard = guard_on(
        issuer,
        transport=Resolver({KEYS_ORIGIN: foreign.url}),
        allowed_origins=(KEYS_ORIGIN,),
    )
    with guard:
        assert guard.verify_sync(issuer.token()).sub == "usr_1"
    assert foreign.paths()[:2] == ["/jwks.json", "/feed"]
    assert {s.host for s in foreign.seen} == {"keys.example.com"}
    feed = [s for s in foreign.seen if s.path == "/feed"]
    assert feed
    assert all(s.authorization is not None for s in feed)
    assert all(s.authorization is None for s in foreign.seen if s.path == "/jwks.json")


def test_untrusted_endpoint_plain_http_needs_both_the_allowlist_and_insecure_http(
    issuer: ScriptedIssuer, foreign: ScriptedIssuer
) -> None:
    with pytest.raises(ConfigurationError, match="plain http"):
        guard_on(issuer, allowed_origins=(PLAIN_ORIGIN,))
    issuer.metadata["jwks_uri"] = f"{PLAIN_ORIGIN}/jwks.json"
    guard = guard_on(
        issuer,
        transport=Resolver({PLAIN_ORIGIN: foreign.url}),
        allowed_origins=(PLAIN_ORIGIN,),
        allow_insecure_http=True,
    )
    with guard:
        assert guard.verify_sync(issuer.token()).sub == "usr_1"
    assert foreign.paths() == ["/jwks.json"]


@pytest.mark.parametrize("path", [METADATA_PATH, "/jwks.json", "/feed"])
def test_untrusted_endpoint_redirect_is_never_followed(
    issuer: ScriptedIssuer, foreign: ScriptedIssuer, path: str
) -> None:
    issuer.redirects[path] = foreign.url + path
    guard = guard_on(issuer, startup_timeout=1.0)
    if path == "/jwks.json":
        # The JWKS is fetched without credentials and retried: not ready, keys never taken.
        guard.start_sync(10)
        try:
            assert not guard.ready
            assert guard.jwks is not None
            assert guard.jwks.keys is None
        finally:
            guard.close_sync()
        assert foreign.seen == []
    else:
        err = start_error(guard)
        assert foreign.seen == []
        assert "never follows redirects" in str(assert_refused(err, "redirect_refused"))
    assert path in issuer.paths()


def test_untrusted_endpoint_no_code_path_can_send_elsewhere(
    issuer: ScriptedIssuer, foreign: ScriptedIssuer
) -> None:
    # The guard's HTTP client itself refuses any request off the allowed origins, with
    # its credentials or without, before a connection is made.
    with guard_on(issuer) as guard:
        auth = httpx.BasicAuth(*CLIENT)
        client = guard._runtime.client
        for url in (f"{foreign.url}/feed", f"http://u:p@{issuer.url[7:]}/feed"):
            with pytest.raises(FetchError) as info:
                run_on(guard, lambda url=url: client().get(url, auth=auth))
            assert info.value.condition == "endpoint_not_allowed"
            assert info.value.permanent
        assert foreign.seen == []
        assert run_on(guard, lambda: client().get(f"{issuer.url}/jwks.json")).is_success


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"metadata_url": "https://elsewhere.example.com/meta"}, "not the issuer's origin"),
        ({"metadata_url": "https://u:p@auth.example.com/meta"}, "userinfo"),
        ({"allowed_origins": "https://keys.example.com"}, "collection"),
        ({"allowed_origins": ["https://keys.example.com/jwks"]}, "not an origin"),
        ({"allowed_origins": ["https://keys.example.com/?x"]}, "not an origin"),
        ({"allowed_origins": ["https://keys.example.com#x"]}, "not an origin"),
        ({"allowed_origins": ["https://u@keys.example.com"]}, "not an origin"),
        ({"allowed_origins": ["ftp://keys.example.com"]}, "not an origin"),
        ({"allowed_origins": ["keys.example.com"]}, "not an origin"),
        ({"allowed_origins": [7]}, "not an origin"),
        ({"allowed_origins": ["http://keys.example.com"]}, "plain http"),
    ],
)
def test_untrusted_endpoint_configuration_is_refused(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match) as info:
        Guard(issuer="https://auth.example.com", audience=AUDIENCE, revocation="off", **options)
    assert info.value.code == "invalid_configuration"


def test_untrusted_endpoint_allowlist_and_metadata_url_accepted_forms() -> None:
    guard = Guard(
        issuer="https://auth.example.com/tenant",
        audience=AUDIENCE,
        revocation="off",
        metadata_url="https://meta.example.com:8443/.well-known/oauth-authorization-server",
        allowed_origins=("https://KEYS.example.com/", "https://meta.example.com:8443"),
    )
    policy = guard.options.endpoints
    assert policy is not None
    assert policy.refusal("https://keys.example.com:443/jwks.json") is None
    assert policy.refusal("https://auth.example.com/other") is None
    assert policy.refusal("https://meta.example.com/jwks.json") is not None  # port 443
    assert policy.refusal("http://keys.example.com/jwks.json") is not None
    Guard(
        issuer="https://auth.example.com",
        audience=AUDIENCE,
        revocation="off",
        metadata_url="https://auth.example.com:443/.well-known/oauth-authorization-server",
    )
    with pytest.raises(ConfigurationError, match="need an issuer"):
        Guard(
            keys=Key.generate("ES256"),
            audience=AUDIENCE,
            revocation="off",
            allowed_origins=(KEYS_ORIGIN,),
        )
