"""Contract: UserStore (accounts and roles)."""

from __future__ import annotations

import dataclasses

import pytest

from authgate.errors import Conflict, NotFound
from authgate.storage.base import RoleRecord, Storage

from ._records import T0, digest, refresh, session, user

pytestmark = pytest.mark.anyio


async def test_create_and_get_user_round_trip(storage: Storage) -> None:
    alice = dataclasses.replace(user("u1", roles=("editor", "admin")), disabled=True, ver=7)
    await storage.create_user(alice)

    expected = dataclasses.replace(alice, roles=("admin", "editor"))  # stored sorted
    assert await storage.get_user("u1") == expected
    assert await storage.get_user_by_email("u1@example.com") == expected


async def test_roles_are_deduplicated(storage: Storage) -> None:
    await storage.create_user(user("u1", roles=("b", "a", "b")))
    got = await storage.get_user("u1")
    assert got is not None
    assert got.roles == ("a", "b")


async def test_unknown_user_is_none(storage: Storage) -> None:
    await storage.create_user(user("u1"))
    assert await storage.get_user("nope") is None
    assert await storage.get_user_by_email("nope@example.com") is None
    # The email is compared exactly: normalising it is the service's job.
    assert await storage.get_user_by_email("U1@example.com") is None


async def test_duplicate_email_is_a_conflict_and_stores_nothing(storage: Storage) -> None:
    await storage.create_user(user("u1", email="same@example.com"))
    with pytest.raises(Conflict) as info:
        await storage.create_user(user("u2", email="same@example.com", roles=("intruder",)))
    assert info.value.code == "conflict"
    assert await storage.get_user("u2") is None
    assert await storage.users_with_role("intruder") == []
    original = await storage.get_user_by_email("same@example.com")
    assert original is not None
    assert original.id == "u1"


async def test_duplicate_id_is_a_conflict(storage: Storage) -> None:
    await storage.create_user(user("u1"))
    with pytest.raises(Conflict) as info:
        await storage.create_user(user("u1", email="other@example.com"))
    assert info.value.code == "conflict"
    assert await storage.get_user_by_email("other@example.com") is None


async def test_conflict_reason_does_not_leak_the_password_hash(storage: Storage) -> None:
    secret = "$argon2id$v=19$m=19456,t=2,p=1$c2VjcmV0LXNhbHQ$c2VjcmV0LWhhc2g"
    await storage.create_user(user("u1"))
    with pytest.raises(Conflict) as info:
        await storage.create_user(
            dataclasses.replace(user("u2", email="u1@example.com"), password_hash=secret)
        )
    assert secret not in str(info.value)
    assert secret not in info.value.reason
    assert secret not in repr(info.value.__cause__)
    assert secret not in str(info.value.__cause__)


async def test_list_users_pages_by_id(storage: Storage) -> None:
    for uid in ["u3", "u1", "u5", "u2", "u4"]:
        await storage.create_user(user(uid, roles=(f"r-{uid}",)))

    first = await storage.list_users(after=None, limit=2)
    assert [u.id for u in first] == ["u1", "u2"]
    assert [u.roles for u in first] == [("r-u1",), ("r-u2",)]
    second = await storage.list_users(after="u2", limit=2)
    assert [u.id for u in second] == ["u3", "u4"]
    last = await storage.list_users(after="u4", limit=2)
    assert [u.id for u in last] == ["u5"]
    assert await storage.list_users(after="u5", limit=2) == []
    assert len(await storage.list_users(after=None, limit=100)) == 5


async def test_list_users_filters_by_email_substring(storage: Storage) -> None:
    for uid, email in [
        ("u1", "ada@example.com"),
        ("u2", "bob@example.org"),
        ("u3", "adam@example.com"),
        ("u4", "x_y%z@example.com"),
    ]:
        await storage.create_user(user(uid, email=email))

    found = await storage.list_users(after=None, limit=10, email_contains="ada")
    assert [u.id for u in found] == ["u1", "u3"]
    page = await storage.list_users(after="u1", limit=10, email_contains="example.com")
    assert [u.id for u in page] == ["u3", "u4"]
    # Wildcards match themselves only.
    assert [u.id for u in await storage.list_users(after=None, limit=10, email_contains="_")] == [
        "u4"
    ]
    assert await storage.list_users(after=None, limit=10, email_contains="%@") == []
    assert [u.id for u in await storage.list_users(after=None, limit=10, email_contains="%")] == [
        "u4"
    ]


async def test_update_user_changes_only_given_fields(storage: Storage) -> None:
    await storage.create_user(user("u1", roles=("a",)))
    assert await storage.update_user("u1", name="Renamed") is True

    got = await storage.get_user("u1")
    assert got == dataclasses.replace(user("u1", roles=("a",)), name="Renamed")
    assert got is not None
    assert got.ver == 0  # neither is a privilege


async def test_every_privilege_change_increments_the_version(storage: Storage) -> None:
    await storage.put_role(RoleRecord("a", ("x",), T0))
    await storage.create_user(user("u1", roles=("a",)))
    await storage.create_user(user("u2", roles=("a",)))
    await storage.create_user(user("bystander"))

    assert await storage.set_disabled("u1", True) == 1
    got = await storage.get_user("u1")
    assert got is not None
    assert (got.disabled, got.ver) == (True, 1)
    assert await storage.set_disabled("u1", False) == 2
    assert await storage.set_roles("u1", ["a", "b"]) == 3
    assert await storage.bump_version("u1") == 4
    # A role edit moves every holder, in the same call.
    assert await storage.put_role(RoleRecord("a", ("x", "y"), T0)) == {"u1": 5, "u2": 1}
    assert await storage.put_role(RoleRecord("unheld", ("z",), T0)) == {}
    assert await storage.delete_role("a") == {"u1": 6, "u2": 2}
    bystander = await storage.get_user("bystander")
    assert bystander is not None
    assert bystander.ver == 0
    for method in (storage.bump_version,):
        assert await method("ghost") is None
    assert await storage.set_disabled("ghost", True) is None


async def test_update_unknown_user_is_false(storage: Storage) -> None:
    assert await storage.update_user("ghost", name="x") is False
    assert await storage.update_user("ghost") is False
    await storage.create_user(user("u1"))
    assert await storage.update_user("u1") is True  # nothing to change, but it exists


async def test_set_roles_replaces_them(storage: Storage) -> None:
    await storage.create_user(user("u1", roles=("a", "b")))
    assert await storage.set_roles("u1", ["c", "b", "c"]) == 1
    got = await storage.get_user("u1")
    assert got is not None
    assert got.roles == ("b", "c")
    assert await storage.users_with_role("a") == []
    assert await storage.set_roles("u1", []) == 2
    got = await storage.get_user("u1")
    assert got is not None
    assert got.roles == ()


async def test_set_roles_of_unknown_user_is_false(storage: Storage) -> None:
    assert await storage.set_roles("ghost", ["a"]) is None
    assert await storage.users_with_role("a") == []


async def test_delete_user_cascades_to_roles_sessions_and_tokens(storage: Storage) -> None:
    await storage.create_user(user("u1", roles=("a",)))
    await storage.create_user(user("u2", roles=("a",)))
    await storage.create_session(session("s1", "u1"), refresh("t1", "s1"), password_hash=None)
    await storage.create_session(session("s2", "u2"), refresh("t2", "s2"), password_hash=None)
    first = refresh("t1", "s1")
    assert await storage.rotate_refresh(
        first.digest, refresh("t1b", "s1", parent=first.digest), now=T0 + 1
    )

    assert await storage.delete_user("u1") == 0  # the ver it had

    assert await storage.get_user("u1") is None
    assert await storage.users_with_role("a") == ["u2"]
    assert await storage.get_session("s1") is None
    assert await storage.list_sessions("u1", live_at=None) == []
    assert await storage.get_refresh(digest("t1")) is None
    assert await storage.get_refresh(digest("t1b")) is None
    # The other user is untouched.
    assert await storage.get_session("s2") is not None
    assert await storage.get_refresh(digest("t2")) is not None
    assert await storage.delete_user("u1") is None


async def test_email_is_free_again_after_delete(storage: Storage) -> None:
    await storage.create_user(user("u1"))
    assert await storage.delete_user("u1") == 0
    await storage.create_user(user("u9", email="u1@example.com"))
    got = await storage.get_user_by_email("u1@example.com")
    assert got is not None
    assert got.id == "u9"


async def test_put_get_list_roles(storage: Storage) -> None:
    await storage.put_role(RoleRecord("viewer", ("posts:read",), T0))
    await storage.put_role(RoleRecord("admin", ("authgate:admin", "posts:write"), T0 + 1))
    assert await storage.get_role("viewer") == RoleRecord("viewer", ("posts:read",), T0)
    assert await storage.get_role("nope") is None
    assert await storage.list_roles() == [
        RoleRecord("admin", ("authgate:admin", "posts:write"), T0 + 1),
        RoleRecord("viewer", ("posts:read",), T0),
    ]


async def test_put_role_replaces_permissions_and_keeps_created_at(storage: Storage) -> None:
    await storage.put_role(RoleRecord("editor", ("posts:read",), T0))
    await storage.put_role(
        RoleRecord("editor", ("posts:write", "posts:read", "posts:write"), T0 + 99)
    )
    assert await storage.get_role("editor") == RoleRecord(
        "editor", ("posts:read", "posts:write"), T0
    )
    await storage.put_role(RoleRecord("editor", (), T0 + 100))
    assert await storage.get_role("editor") == RoleRecord("editor", (), T0)
    assert len(await storage.list_roles()) == 1


async def test_delete_role_removes_it_from_every_user(storage: Storage) -> None:
    await storage.put_role(RoleRecord("a", ("x",), T0))
    await storage.put_role(RoleRecord("b", ("y",), T0))
    await storage.create_user(user("u1", roles=("a", "b")))
    await storage.create_user(user("u2", roles=("a",)))
    assert await storage.users_with_role("a") == ["u1", "u2"]

    assert await storage.delete_role("a") == {"u1": 1, "u2": 1}

    assert await storage.get_role("a") is None
    assert await storage.users_with_role("a") == []
    u1, u2 = await storage.get_user("u1"), await storage.get_user("u2")
    assert u1 is not None
    assert u2 is not None
    assert u1.roles == ("b",)
    assert u2.roles == ()
    assert await storage.delete_role("a") is None
    assert [r.name for r in await storage.list_roles()] == ["b"]


async def test_users_with_role_is_sorted_and_exact(storage: Storage) -> None:
    for uid in ["u3", "u1", "u2"]:
        await storage.create_user(user(uid, roles=("staff",)))
    await storage.create_user(user("u4", roles=("staff-extra",)))
    assert await storage.users_with_role("staff") == ["u1", "u2", "u3"]
    assert await storage.users_with_role("nobody") == []


async def test_stale_privileges_a_grant_of_a_role_deleted_meanwhile_changes_nothing(
    storage: Storage,
) -> None:
    """The directory checks that a role exists, then grants it: a role deleted in between
    used to be granted anyway, a dangling name in every token that a new role of the same
    name would silently fill with its permissions."""
    await storage.put_role(RoleRecord("editor", ("posts:write",), T0))
    await storage.create_user(user("u1", roles=("viewer",)))
    assert await storage.delete_role("editor") == {}
    with pytest.raises(NotFound):
        await storage.set_roles("u1", ["editor"], must_exist=True)
    got = await storage.get_user("u1")
    assert got is not None
    assert (got.roles, got.ver) == (("viewer",), 0)  # nothing changed, not even ver
    await storage.put_role(RoleRecord("editor", ("posts:delete",), T0 + 1))
    assert await storage.users_with_role("editor") == []
