"""The OpenID Connect service: authorization requests, decisions, codes with PKCE, the
exchange (single use, reuse revokes), ID tokens checked by PyJWT and Authlib, userinfo,
consent and the end of a hosted login; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt as pyjwt
import pytest
from authlib.oidc.core import CodeIDToken

from authgate import errors as e
from authgate.service.oidc import CODE_TTL, AuthorizationRequest, HostedLogin
from authgate.storage.base import ClientRecord, UserRecord

from .conftest import ISSUER, LOGOUT_REDIRECT, REDIRECT, World, pkce

pytestmark = pytest.mark.anyio


def params(client: ClientRecord, challenge: str, **more: str) -> dict[str, str]:
    base = {
        "client_id": client.client_id,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "openid email profile",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "st-1",
        "nonce": "n-1",
    }
    return {**base, **more}


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def code_for(
    world: World, client: ClientRecord, user: UserRecord, challenge: str, **more: str
) -> tuple[AuthorizationRequest, str]:
    oidc = world.services.oidc
    request = await oidc.authorization_request(params(client, challenge, **more))
    login = await world.services.web_logins.start(user, amr=["pwd"], ip=None, user_agent=None)
    url = await oidc.issue_code(
        request,
        user_id=user.id,
        login_sid=login.login.sid,
        auth_time=world.clock.now(),
        amr=["pwd"],
    )
    q = query(url)
    assert q["state"] == request.state
    assert q["iss"] == ISSUER
    return request, q["code"]


def jwks_of(world: World) -> dict[str, Any]:
    return world.services.keyring.view.jwks()


def verify_with_pyjwt(world: World, token: str, aud: str, alg: str) -> dict[str, Any]:
    header = pyjwt.get_unverified_header(token)
    assert header["typ"] == "JWT"
    assert header["alg"] == alg
    jwk = next(k for k in jwks_of(world)["keys"] if k["kid"] == header["kid"])
    key = pyjwt.PyJWK(jwk).key
    out: dict[str, Any] = pyjwt.decode(
        token,
        key,
        algorithms=[alg],
        audience=aud,
        issuer=ISSUER,
        options={"verify_exp": False, "verify_iat": False},
    )
    return out


async def test_code_flow_issues_tokens_and_an_id_token(world: World) -> None:
    client, _secret = await world.client()
    user = await world.user()
    verifier, challenge = pkce()
    _, code = await code_for(world, client, user, challenge)
    body = await world.services.oidc.exchange_code(
        client, code=code, redirect_uri=REDIRECT, code_verifier=verifier
    )
    assert body["token_type"] == "Bearer"
    assert body["refresh_token"]
    claims = verify_with_pyjwt(world, body["id_token"], client.client_id, "RS256")
    assert claims["sub"] == user.id
    assert claims["azp"] == client.client_id
    child = await world.services.storage.get_session(
        world.services.tokens.decode(body["access_token"], client=True)["sid"]
    )
    assert child is not None
    assert claims["sid"] == child.parent_sid is not None
    assert claims["nonce"] == "n-1"
    assert claims["amr"] == ["pwd"]
    assert claims["email"] == user.email
    assert claims["email_verified"] is True
    assert claims["name"] == "Ada Lovelace"
    assert claims["exp"] - claims["iat"] == 300
    # Authlib's ID-token claims validation: nonce, at_hash, aud, azp, auth_time.
    authlib_claims = CodeIDToken(
        claims,
        {"alg": "RS256"},
        {"iss": {"essential": True, "value": ISSUER}},
        {"nonce": "n-1", "client_id": client.client_id, "access_token": body["access_token"]},
    )
    authlib_claims.validate(now=int(world.clock.now()))
    # The access token stays an access token of the server's algorithm, with the grant.
    access = world.services.tokens.decode(body["access_token"], client=True)
    assert access["scope"] == "email openid profile"
    assert access["client_id"] == client.client_id
    info = await world.services.oidc.userinfo(body["access_token"])
    assert info == {
        "sub": user.id,
        "name": "Ada Lovelace",
        "email": user.email,
        "email_verified": True,
    }
    session = await world.services.storage.get_session(access["sid"])
    assert session is not None
    assert session.parent_sid == claims["sid"]
    login = await world.services.storage.get_session(claims["sid"])
    assert login is not None
    assert login.client_id == "authgate-web"


async def test_id_token_with_the_clients_algorithm(open_world: Any) -> None:
    world: World = await open_world(id_token_algs=("RS256", "ES384"))
    client, _ = await world.client(id_token_alg="ES384")
    user = await world.user()
    verifier, challenge = pkce()
    _, code = await code_for(world, client, user, challenge, scope="openid")
    body = await world.services.oidc.exchange_code(
        client, code=code, redirect_uri=REDIRECT, code_verifier=verifier
    )
    claims = verify_with_pyjwt(world, body["id_token"], client.client_id, "ES384")
    assert "email" not in claims
    CodeIDToken(
        claims,
        {"alg": "ES384"},
        None,
        {"nonce": "n-1", "client_id": client.client_id, "access_token": body["access_token"]},
    ).validate(now=int(world.clock.now()))


async def test_an_id_token_is_not_an_access_token(world: World) -> None:
    client, _ = await world.client()
    user = await world.user()
    verifier, challenge = pkce()
    _, code = await code_for(world, client, user, challenge)
    body = await world.services.oidc.exchange_code(
        client, code=code, redirect_uri=REDIRECT, code_verifier=verifier
    )
    with pytest.raises(e.InvalidToken):
        await world.services.sessions.authenticate(body["id_token"])


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"client_id": "cli_nope"}, e.UnknownAuthorizeClient),
        ({"redirect_uri": "https://evil.example.com/cb"}, e.InvalidRedirectUri),
        ({"redirect_uri": REDIRECT + "/"}, e.InvalidRedirectUri),
        ({"response_type": "token"}, e.UnsupportedResponseType),
        ({"scope": "email"}, e.AuthorizeInvalidScope),
        ({"scope": "openid admin"}, e.AuthorizeInvalidScope),
        ({"code_challenge_method": "plain"}, e.AuthorizeError),
        ({"code_challenge": "short"}, e.AuthorizeError),
        ({"prompt": "none login"}, e.AuthorizeError),
        ({"prompt": "bogus"}, e.AuthorizeError),
        ({"max_age": "-1"}, e.AuthorizeError),
        ({"response_mode": "fragment"}, e.AuthorizeError),
        ({"request": "eyJ"}, e.RequestNotSupported),
        ({"request_uri": "https://x"}, e.RequestUriNotSupported),
    ],
)
async def test_authorization_request_refusals(
    world: World, change: dict[str, str], error: type[e.AuthorizeError]
) -> None:
    client, _ = await world.client()
    _, challenge = pkce()
    with pytest.raises(error) as caught:
        await world.services.oidc.authorization_request(params(client, challenge, **change))
    assert type(caught.value) is error
    url = world.services.oidc.error_redirect(caught.value)
    if error in (e.UnknownAuthorizeClient, e.InvalidRedirectUri):
        assert url is None
    else:
        assert url is not None
        assert url.startswith(REDIRECT + "?")
        q = query(url)
        assert q["error"] == error.error
        assert q["state"] == "st-1"
        assert q["iss"] == ISSUER


async def test_missing_pkce_and_repeated_parameters(world: World) -> None:
    client, _ = await world.client()
    _, challenge = pkce()
    p = params(client, challenge)
    del p["code_challenge"]
    with pytest.raises(e.AuthorizeError):
        await world.services.oidc.authorization_request(p)
    pairs = [*params(client, challenge).items(), ("scope", "openid")]
    with pytest.raises(e.AuthorizeError) as caught:
        await world.services.oidc.authorization_request(pairs)
    assert caught.value.redirectable
    pairs = [*params(client, challenge).items(), ("redirect_uri", REDIRECT)]
    with pytest.raises(e.InvalidRedirectUri):
        await world.services.oidc.authorization_request(pairs)


async def test_decisions(world: World) -> None:
    oidc = world.services.oidc
    third, _ = await world.client()
    first, _ = await world.client(first_party=True)
    user = await world.user()
    login = HostedLogin(user.id, "wl_1", world.clock.now(), ("pwd",))
    _, challenge = pkce()
    request = await oidc.authorization_request(params(third, challenge))
    assert (await oidc.decide(request, None)).action == "login"
    decision = await oidc.decide(request, login)
    assert decision.action == "consent"
    assert decision.scope == ("email", "openid", "profile")
    none = await oidc.authorization_request(params(third, challenge, prompt="none"))
    with pytest.raises(e.ConsentRequired):
        await oidc.decide(none, login)
    with pytest.raises(e.LoginRequired):
        await oidc.decide(none, None)
    await oidc.grant_consent(user.id, third.client_id, request.scope)
    assert (await oidc.decide(request, login)).action == "issue"
    assert (await oidc.decide(none, login)).action == "issue"
    again = await oidc.authorization_request(params(third, challenge, prompt="consent"))
    assert (await oidc.decide(again, login)).action == "consent"
    relog = await oidc.authorization_request(params(third, challenge, prompt="login"))
    assert (await oidc.decide(relog, login)).action == "login"
    assert (await oidc.decide(relog, login, fresh_login=True)).action == "issue"
    aged = await oidc.authorization_request(params(third, challenge, max_age="60"))
    world.clock.advance(61)
    assert (await oidc.decide(aged, login)).action == "login"
    fp = await oidc.authorization_request(params(first, challenge))
    assert (await oidc.decide(fp, login)).action == "issue"
    assert [c.client_id for c in await oidc.consents(user.id)] == [third.client_id]


async def test_exchange_refusals(world: World) -> None:
    oidc = world.services.oidc
    client, _ = await world.client()
    other, _ = await world.client()
    user = await world.user()

    async def refused(**kw: Any) -> None:
        verifier, challenge = pkce()
        _, code = await code_for(world, client, user, challenge)
        args: dict[str, Any] = {
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        }
        who = kw.pop("client", client)
        if kw.pop("late", False):
            world.clock.advance(CODE_TTL)
        args.update(kw)
        if args["code_verifier"] is None:  # a malformed request spends nothing
            with pytest.raises(e.InvalidRequest):
                await oidc.exchange_code(who, **args)
            return
        with pytest.raises(e.InvalidGrant):
            await oidc.exchange_code(who, **args)
        # Refused once, the code is spent: the right request fails too.
        with pytest.raises(e.InvalidGrant):
            await oidc.exchange_code(
                client, code=code, redirect_uri=REDIRECT, code_verifier=verifier
            )

    await refused(redirect_uri="http://127.0.0.1:8123/cb")
    await refused(code_verifier=pkce()[0])
    await refused(code_verifier="short")
    await refused(code_verifier=None)
    await refused(client=other)
    await refused(late=True)


async def test_a_code_used_twice_revokes_the_first_exchange(world: World) -> None:
    oidc = world.services.oidc
    client, _ = await world.client()
    user = await world.user()
    verifier, challenge = pkce()
    _, code = await code_for(world, client, user, challenge)
    body = await oidc.exchange_code(
        client, code=code, redirect_uri=REDIRECT, code_verifier=verifier
    )
    await world.services.sessions.authenticate(body["access_token"], client=True)
    with pytest.raises(e.InvalidGrant):
        await oidc.exchange_code(client, code=code, redirect_uri=REDIRECT, code_verifier=verifier)
    with pytest.raises(e.TokenRevoked):
        await world.services.sessions.authenticate(body["access_token"], client=True)
    with pytest.raises(e.InvalidGrant):
        await world.services.sessions.refresh(
            body["refresh_token"], ip=None, client_id=client.client_id
        )
    events = await world.services.storage.query_audit(
        user_id=user.id, event="oidc_code_reused", after=None, limit=10
    )
    assert len(events) == 1


async def test_concurrent_exchanges_of_one_code(world: World) -> None:
    oidc = world.services.oidc
    client, _ = await world.client(public=True)
    user = await world.user()
    verifier, challenge = pkce()
    _, code = await code_for(world, client, user, challenge)

    async def one() -> bool:
        try:
            await oidc.exchange_code(
                client, code=code, redirect_uri=REDIRECT, code_verifier=verifier
            )
        except e.InvalidGrant:
            return False
        return True

    results = await asyncio.gather(*(one() for _ in range(20)))
    assert results.count(True) == 1


async def test_refresh_of_a_public_client(world: World) -> None:
    oidc = world.services.oidc
    client, _ = await world.client(public=True)
    other, _ = await world.client(public=True)
    user = await world.user()
    verifier, challenge = pkce()
    _, code = await code_for(world, client, user, challenge)
    body = await oidc.exchange_code(
        client, code=code, redirect_uri=REDIRECT, code_verifier=verifier
    )
    sessions = world.services.sessions
    with pytest.raises(e.InvalidGrant):
        await sessions.refresh(body["refresh_token"], ip=None, client_id=other.client_id)
    pair = await sessions.refresh(body["refresh_token"], ip=None, client_id=client.client_id)
    assert pair.scope == "email openid profile"
    assert world.services.tokens.decode(pair.access_token, client=True)["auth_time"] == int(
        world.clock.now()
    )


async def test_userinfo_refuses_a_first_party_token(world: World) -> None:
    user = await world.user()
    pair = await world.services.sessions.start(user, ip=None, user_agent=None)
    with pytest.raises(e.InsufficientScope):
        await world.services.oidc.userinfo(pair.access_token)


async def test_end_session_and_revoked_consent(world: World) -> None:
    oidc = world.services.oidc
    client, _ = await world.client()
    user = await world.user()
    verifier, challenge = pkce()
    _, code = await code_for(world, client, user, challenge)
    body = await oidc.exchange_code(
        client, code=code, redirect_uri=REDIRECT, code_verifier=verifier
    )
    child = world.services.tokens.decode(body["access_token"], client=True)["sid"]
    world.clock.advance(3600)  # an expired hint is still a hint
    end = await oidc.end_session_request(
        {
            "id_token_hint": body["id_token"],
            "post_logout_redirect_uri": LOGOUT_REDIRECT,
            "state": "s2",
        }
    )
    assert end.user_id == user.id
    child_session = await world.services.storage.get_session(child)
    assert child_session is not None
    assert child_session.parent_sid is not None
    assert end.login_sid == child_session.parent_sid
    assert end.client is not None
    assert end.redirect_url == LOGOUT_REDIRECT + "?state=s2"
    for bad in (
        {"id_token_hint": body["id_token"], "post_logout_redirect_uri": REDIRECT},
        {"post_logout_redirect_uri": LOGOUT_REDIRECT},
        {"client_id": client.client_id, "post_logout_redirect_uri": "https://evil.example/"},
        {"id_token_hint": body["id_token"] + "x"},
        {"id_token_hint": body["access_token"]},
    ):
        with pytest.raises(e.InvalidRequest):
            await oidc.end_session_request(bad)
    assert (await oidc.end_session_request({})).redirect_url is None
    ended = await oidc.end_login(end.login_sid)
    assert set(ended) == {end.login_sid, child}  # the hosted login and its client's session
    with pytest.raises(e.InvalidGrant):
        await world.services.sessions.refresh(
            body["refresh_token"], ip=None, client_id=client.client_id
        )
    # Consent revoked: the client's sessions of the user end too.
    verifier, challenge = pkce()
    _, code = await code_for(world, client, user, challenge)
    body = await oidc.exchange_code(
        client, code=code, redirect_uri=REDIRECT, code_verifier=verifier
    )
    await oidc.grant_consent(user.id, client.client_id, ["openid"])
    assert await oidc.revoke_consent(user.id, client.client_id) is True
    with pytest.raises(e.InvalidGrant):
        await world.services.sessions.refresh(
            body["refresh_token"], ip=None, client_id=client.client_id
        )
    assert await oidc.consents(user.id) == []


async def test_purge_drops_expired_codes(world: World) -> None:
    client, _ = await world.client()
    user = await world.user()
    _, challenge = pkce()
    await code_for(world, client, user, challenge)
    world.clock.advance(CODE_TTL + 1)
    assert await world.services.oidc.purge() == 1
