"""The SQLite database holds password hashes, emails and addresses: its file and the -wal
and -shm files beside it are created 0600 whatever the umask, and an existing file that
others can read loses those permissions (its group bits stay: they may be on purpose)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from _support.files import umask
from authgate.storage.sql import migrate

from ._records import user
from ._stores import opened

pytestmark = pytest.mark.anyio


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which SQLite alone creates its files 0644."""
    with umask(0o022):
        yield


def modes(db: Path) -> dict[str, int]:
    """The permission bits of the database and of each side file that exists."""
    found = {}
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{db}{suffix}")
        if path.exists():
            found[path.name] = path.stat().st_mode & 0o777
    return found


async def write_and_read(db: Path, uid: str = "usr_mode") -> dict[str, int]:
    """Migrate, write a row and read the modes while the connection (and the WAL) is open."""
    url = f"sqlite:///{db}"
    await migrate(url)
    async with opened(url) as storage:
        await storage.create_user(user(uid))
        return modes(db)


async def test_world_readable_database_new_files_are_0600(tmp_path: Path, umask_022: None) -> None:
    db = tmp_path / "authgate.db"
    found = await write_and_read(db)
    assert set(found) == {"authgate.db", "authgate.db-wal", "authgate.db-shm"}
    assert found == {name: 0o600 for name in found}


async def test_world_readable_database_existing_file_loses_other_bits(
    tmp_path: Path, umask_022: None
) -> None:
    db = tmp_path / "authgate.db"
    db.touch()
    db.chmod(0o644)  # as an earlier version left it
    found = await write_and_read(db)
    assert found == {name: 0o640 for name in found}
    assert len(found) == 3


async def test_world_readable_database_group_access_is_kept(
    tmp_path: Path, umask_022: None
) -> None:
    db = tmp_path / "authgate.db"
    db.touch()
    db.chmod(0o660)  # shared with a group on purpose: left as it is
    found = await write_and_read(db)
    assert found == {name: 0o660 for name in found}
    assert len(found) == 3


async def test_world_readable_database_side_files_lose_other_bits(
    tmp_path: Path, umask_022: None
) -> None:
    db = tmp_path / "authgate.db"
    await write_and_read(db)
    for suffix in ("-wal", "-shm"):  # left readable by an older version, or by hand
        Path(f"{db}{suffix}").touch()
        Path(f"{db}{suffix}").chmod(0o604)
    found = await write_and_read(db, "usr_mode_again")
    assert found == {name: 0o600 for name in found}
    assert len(found) == 3
