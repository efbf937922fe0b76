"""Students' Unix accounts and folders on the local backend (root mode): one per user, per fleet, created once.

Real ``useradd``/``getpwnam`` on this machine; the accounts are removed at the end.
"""

from __future__ import annotations

import multiprocessing
import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubfleet.backends.local import workspace
from hubfleet.catalog import naming
from hubfleet.plan.spec import PresentationSpec

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates real system users")
FLEET = "accounts-test"
PREFIX = naming.account_prefix(FLEET)


@pytest.fixture
def accounts() -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        subprocess.run(["userdel", name], capture_output=True)


def _ensure(args: tuple[str, str, object]) -> tuple[str, int] | str:
    username, home, barrier = args
    barrier.wait()  # every process calls at the same moment: the race of two first spawns
    try:
        owner = workspace.ensure_system_user(username, Path(home), PREFIX, FLEET)
        return owner.name, owner.uid
    except Exception as exc:  # noqa: BLE001 - reported back to the test
        return f"{type(exc).__name__}: {exc}"


def test_concurrent_first_spawns_of_a_new_student_share_one_account(accounts: list[str], tmp_path: Path) -> None:
    # Separate processes, as two hubs (or two spawns) of one fleet are; several new students, four spawns each.
    users = [f"race{i}-{os.getpid()}" for i in range(4)]
    accounts.extend(naming.unix_account(PREFIX, u) for u in users)
    ctx = multiprocessing.get_context("fork")
    for user in users:
        barrier = ctx.Manager().Barrier(4)
        with ctx.Pool(4) as pool:
            results = pool.map(_ensure, [(user, str(tmp_path / user), barrier)] * 4)
        assert all(isinstance(r, tuple) for r in results), results
        assert len(set(results)) == 1, results  # one account, one uid, for all four
        assert pwd.getpwnam(naming.unix_account(PREFIX, user)).pw_uid == results[0][1]


def test_an_account_of_another_fleet_is_refused_not_reused(accounts: list[str], tmp_path: Path) -> None:
    name = naming.unix_account(PREFIX, "zed")
    accounts.append(name)
    # Same name, made by another fleet (an explicit account_prefix that happens to equal ours), its student zed.
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    "--comment", workspace.account_comment("other-fleet", "zed"), name], check=True)  # fmt: skip
    with pytest.raises(PermissionError, match="not fleet accounts-test's account for zed"):
        workspace.ensure_system_user("zed", tmp_path / "zed", PREFIX, FLEET)


def _pres(key: str = "TM351-2026J", layout: str = "personal-subfolder") -> PresentationSpec:
    import datetime as dt

    from hubfleet.plan.spec import ExtensionSpec, Phase, StorageSpec

    course, presentation = key.split("-")
    return PresentationSpec(
        key=key, course=course, presentation=presentation, title=course, unit=None, hub=key.lower(),
        start=dt.date(2026, 10, 3), end=dt.date(2027, 6, 10), phase=Phase.open, archive_on=dt.date(2027, 7, 10),
        purge_on=dt.date(2028, 7, 10), expected_students=1, group=key.lower(), tutor_group=f"{key.lower()}-tutors",
        instructor_group=f"{key.lower()}-instructors", instructors=(), tutors=(), enrolment=(),
        storage=StorageSpec(layout=layout, size=None, home="/home/{username}", course_dir=f"/home/{{username}}/{key}",
                            volume="home/{username}" if layout == "personal-subfolder" else f"presentations/{key}/{{username}}"),
        seed=(), extensions=ExtensionSpec(), container_user="username",
    )  # fmt: skip


@pytest.mark.parametrize("layout", ["personal-subfolder", "per-presentation"])
def test_names_that_used_to_collide_get_their_own_account_and_folder(accounts: list[str], tmp_path: Path, layout: str) -> None:
    # Both are valid roster usernames; the old mapping gave both hf-alice-smith-63425827 and one home.
    users = ["alice.smith", "alice-smith-63425827"]
    pres = _pres(layout=layout)
    owners, spaces = [], []
    for user in users:
        ws = workspace.workspace_for(tmp_path, pres.hub, user, pres)
        owner = workspace.ensure_system_user(user, ws.home, PREFIX, FLEET)
        accounts.append(owner.name)
        workspace.prepare(ws, tmp_path, owner)
        (ws.course_dir / "mine.txt").write_text(user)
        owners.append(owner)
        spaces.append(ws)
    assert owners[0].name != owners[1].name and owners[0].uid != owners[1].uid
    assert spaces[0].home != spaces[1].home and spaces[0].course_dir != spaces[1].course_dir
    assert [(ws.course_dir / "mine.txt").read_text() for ws in spaces] == users
    assert all(ws.home.stat().st_uid == o.uid and ws.home.stat().st_mode & 0o077 == 0 for ws, o in zip(spaces, owners))
    # The archiver finds each folder under its user's real name.
    assert set(workspace.course_dirs(tmp_path, pres)) == set(users)
    # And the account's comment says whose it is, so another fleet's run refuses it.
    assert pwd.getpwnam(owners[0].name).pw_gecos == workspace.account_comment(FLEET, "alice.smith")
