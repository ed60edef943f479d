"""The keyring keeps one lifecycle per algorithm: the access tokens' (ES256 by default) and
the ID tokens' (RS256 by default); the JWKS publishes both; an ID-token key never verifies
an access token."""

from __future__ import annotations

import pytest

from authgate.errors import AlgorithmNotAllowed, ConfigurationError, InvalidKey
from authgate.jose import Key, encode
from authgate.settings import Secret, Settings

from .conftest import Opener, World

pytestmark = pytest.mark.anyio


def by_alg(records: list, alg: str) -> dict[str, str]:  # type: ignore[type-arg]
    return {r.state: r.kid for r in records if r.alg == alg and r.state != "retired"}


async def test_each_algorithm_has_its_own_current_and_next(world: World) -> None:
    keyring = world.services.keyring
    assert keyring.algorithms == ("ES256", "RS256")
    records = await keyring.records()
    es, rs = by_alg(records, "ES256"), by_alg(records, "RS256")
    assert set(es) == set(rs) == {"current", "next"}
    view = keyring.view
    assert view.keyset_for("RS256").current.kid == rs["current"]
    assert view.keyset_for("ES256").current.kid == es["current"]
    assert keyring.keyset.current.kid == es["current"]
    # The access tokens' allowlist is the server's algorithm only.
    assert view.algorithms == frozenset({"ES256"})
    assert {k["kid"] for k in view.jwks()["keys"]} == set(es.values()) | set(rs.values())
    with pytest.raises(InvalidKey):
        view.keyset_for("PS256")


async def test_rotate_and_maintain_rotate_every_algorithm(world: World) -> None:
    keyring, clock = world.services.keyring, world.clock
    before = await keyring.records()
    await keyring.rotate()
    after = await keyring.records()
    for alg in ("ES256", "RS256"):
        old, new = by_alg(before, alg), by_alg(after, alg)
        assert new["current"] == old["next"]
        assert new["retiring"] == old["current"]
    clock.advance(world.services.settings.key_rotation)
    assert await keyring.maintain() is True
    final = await keyring.records()
    for alg in ("ES256", "RS256"):
        assert by_alg(final, alg)["current"] == by_alg(after, alg)["next"]


async def test_an_rs256_token_never_passes_as_an_access_token(world: World) -> None:
    services = world.services
    user = await world.user()
    pair = await services.sessions.start(user, ip=None, user_agent=None)
    claims = services.tokens.decode(pair.access_token)
    forged = encode(claims, services.keyring.view.keyset_for("RS256"), typ="at+jwt")
    with pytest.raises(AlgorithmNotAllowed):
        services.tokens.decode(forged)


async def test_import_refuses_an_algorithm_not_kept(world: World) -> None:
    with pytest.raises(InvalidKey):
        await world.services.keyring.import_key(Key.generate("EdDSA"), activate=True)
    record = await world.services.keyring.import_key(Key.generate("RS256"), activate=True)
    assert world.services.keyring.view.keyset_for("RS256").current.kid == record.kid
    # The access tokens' key did not move.
    assert world.services.keyring.keyset.current.alg == "ES256"


async def test_hs256_static_secret_keeps_rs256_id_token_keys_in_the_store(
    open_world: Opener,
) -> None:
    world = await open_world(
        signing_alg="HS256", hs256_secret=Secret("x" * 8 + "Q7t$kP2!vZ9#mL4&wR6*yB1^nC3@hJ5")
    )
    keyring = world.services.keyring
    assert keyring.algorithms == ("RS256",)
    assert keyring.keyset.current.alg == "HS256"
    assert keyring.view.algorithms == frozenset({"HS256"})
    jwks = keyring.view.jwks()["keys"]
    assert {k["alg"] for k in jwks} == {"RS256"}  # the HMAC key is never published
    await keyring.rotate()  # rotates the RS256 keys
    assert keyring.view.keyset_for("RS256").current.alg == "RS256"


async def test_more_id_token_algorithms(open_world: Opener) -> None:
    world = await open_world(id_token_algs=("RS256", "ES384"))
    assert world.services.keyring.algorithms == ("ES256", "RS256", "ES384")
    assert {k["alg"] for k in world.services.keyring.view.jwks()["keys"]} == {
        "ES256",
        "RS256",
        "ES384",
    }


def test_id_token_algorithms_must_be_asymmetric() -> None:
    for bad in ("HS256", "none", "RS1"):
        with pytest.raises(ConfigurationError):
            Settings.from_env({"AUTHGATE_ID_TOKEN_ALGS": bad})
    assert Settings.from_env({"AUTHGATE_ID_TOKEN_ALGS": "RS256, PS256"}).id_token_algs == (
        "RS256",
        "PS256",
    )


async def test_a_new_algorithm_is_never_added_under_a_wrong_master_key(world: World) -> None:
    from authgate.clock import FixedClock
    from authgate.service.keyring import Keyring
    from authgate.wiring import derive

    store = world.services.storage
    before = await store.list_keys()
    wrong = Keyring(
        store,
        master_key=derive(b"\x01" * 32, b"not the master key"),
        alg="ES256",
        rotation=86400.0,
        token_lifetime=600.0,
        clock=FixedClock(),
        id_token_algs=("RS256", "ES384"),
    )
    with pytest.raises(ConfigurationError):
        await wrong.load()
    assert await store.list_keys() == before
