"""Hub-side pieces that need no running hub: storage layouts, freezing a course folder, account names, the
membership rules and the restart decision."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path

import pytest

from hubfleet.backends.local import hubconfig, workspace
from hubfleet.backends.local.membership import HubContext
from hubfleet.catalog import load_catalog
from hubfleet.plan import plan

CATALOG = """\
fleet:
  name: testuni
  topology: per-course
  platform_team: [root-admin]
courses:
  - code: TM351
    title: Data management
    storage:
      extra_mounts: [{name: postgres, path: "{course_dir}/.postgres/data"}, {name: cache, path: "/home/{username}/.cache/x"}]
    team: {tutors: [tess]}
    presentations:
      - {id: 2026J, start: 2026-10-03, end: 2027-06-10, expected_students: 10}
      - {id: 2027B, start: 2027-02-06, end: 2027-10-14, expected_students: 10, storage: {layout: per-presentation}}
      - {id: 2025J, start: 2026-02-07, end: 2027-01-10, expected_students: 10, storage: {layout: ephemeral}}
"""


@pytest.fixture
def ctx(tmp_path: Path) -> HubContext:
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "fleet.yaml").write_text(CATALOG)
    # 2027-01-30: 2026J open, 2027B provisioned (staff only), 2025J read-only (ended 2027-01-10).
    spec = plan(load_catalog(tmp_path / "cat").catalog, dt.date(2027, 1, 30)).hub("tm351")
    hub_dir = tmp_path / "state" / "hubs" / "tm351"
    hub_dir.mkdir(parents=True)
    members = {"alice": {"TM351-2026J": "student"}, "bob": {"TM351-2027B": "student"}, "cara": {"TM351-2025J": "student"}}
    (hub_dir / "members.json").write_text(json.dumps(members))
    raw = {"spec": spec.model_dump(mode="json"), "hub_dir": str(hub_dir), "storage_root": str(tmp_path / "s"),
           "catalog_root": str(tmp_path / "cat"), "members": str(hub_dir / "members.json"), "demo_mode": True}  # fmt: skip
    (hub_dir / "hub.json").write_text(json.dumps(raw))
    return HubContext(hub_dir / "hub.json")


def test_phases_decide_who_gets_in(ctx: HubContext) -> None:
    phases = {p.key: p.phase.value for p in ctx.spec.presentations}
    assert phases == {"TM351-2025J": "read-only", "TM351-2026J": "open", "TM351-2027B": "provisioned"}
    assert ctx.admission("alice").allowed
    bob = ctx.admission("bob")
    assert not bob.allowed and "opens to students on 2027-02-06" in bob.reason
    assert [p.key for p in ctx.admission("tess").presentations] == ["TM351-2025J", "TM351-2026J", "TM351-2027B"]
    assert not ctx.admission("zed").allowed and "not enrolled" in ctx.admission("zed").reason
    assert ctx.admission("root-admin").allowed
    assert ctx.read_only_for("cara", "TM351-2025J") and not ctx.read_only_for("tess", "TM351-2025J")
    assert [p.presentation for p in ctx.profiles_for("cara")] == ["TM351-2025J"]


def test_members_json_is_reread_when_it_changes(ctx: HubContext) -> None:
    assert not ctx.admission("dan").allowed
    path = Path(ctx.raw["members"])
    data = json.loads(path.read_text())
    data["dan"] = {"TM351-2026J": "student"}
    path.write_text(json.dumps(data))
    os.utime(path, ns=(1, 1))  # a different mtime even within the filesystem's timestamp granularity
    assert ctx.admission("dan").allowed


def test_layouts_map_server_paths_onto_storage(ctx: HubContext, tmp_path: Path) -> None:
    s = tmp_path / "s"
    by_key = {p.key: p for p in ctx.spec.presentations}
    personal = workspace.workspace_for(s, "tm351", "alice", by_key["TM351-2026J"])
    assert personal.course_dir == personal.course_path == s / "home" / "alice" / "TM351-2026J"
    assert personal.mounts == (personal.course_dir / ".postgres" / "data", s / "home" / "alice" / ".cache" / "x")
    per = workspace.workspace_for(s, "tm351", "bob", by_key["TM351-2027B"])
    assert per.course_dir == s / "presentations" / "TM351-2027B" / "bob"
    assert per.course_path == s / "home" / "bob" / "TM351-2027B" and per.course_rel == "TM351-2027B"
    assert per.mounts[0] == per.course_dir / ".postgres" / "data"  # inside the real folder, not via the link
    eph = workspace.workspace_for(s, "tm351", "cara", by_key["TM351-2025J"])
    assert eph.ephemeral and eph.home == s / "ephemeral" / "tm351" / "cara"

    workspace.prepare(per, s, None)
    assert per.course_path.is_symlink() and per.course_path.resolve() == per.course_dir
    assert (per.course_dir / ".postgres" / "data").is_dir()
    workspace.prepare(eph, s, None)
    assert eph.course_dir.is_dir()
    workspace.remove(eph)
    assert not eph.home.exists()


def test_set_read_only_round_trip(tmp_path: Path) -> None:
    course = tmp_path / "TM351-2026J"
    (course / "sub").mkdir(parents=True)
    (course / "sub" / "nb.ipynb").write_text("{}")
    (course / "link").symlink_to("/etc/passwd")  # never followed
    before = stat.S_IMODE(Path("/etc/passwd").stat().st_mode)
    workspace.set_read_only(course, True)
    assert workspace.is_read_only(course)
    assert not stat.S_IMODE((course / "sub" / "nb.ipynb").stat().st_mode) & 0o222
    assert not stat.S_IMODE(course.stat().st_mode) & 0o222
    assert stat.S_IMODE(Path("/etc/passwd").stat().st_mode) == before
    workspace.set_read_only(course, True)  # idempotent
    workspace.set_read_only(course, False)
    assert not workspace.is_read_only(course)
    assert stat.S_IMODE((course / "sub" / "nb.ipynb").stat().st_mode) & 0o200
    assert stat.S_IMODE(course.stat().st_mode) & 0o200


def test_thaw_gives_back_the_students_own_modes(tmp_path: Path) -> None:
    course = tmp_path / "TM351-2026J"
    (course / "shared").mkdir(parents=True)
    (course / "shared").chmod(0o751)
    (course / "group.csv").write_text("x")
    (course / "group.csv").chmod(0o664)
    (course / "mine.txt").write_text("x")
    (course / "mine.txt").chmod(0o400)  # the student made it read-only themselves
    workspace.set_read_only(course, True)
    assert stat.S_IMODE((course / "group.csv").stat().st_mode) & 0o222 == 0
    workspace.set_read_only(course, False)
    modes = {p: stat.S_IMODE((course / p).stat().st_mode) for p in ("shared", "group.csv", "mine.txt")}
    assert modes == {"shared": 0o751, "group.csv": 0o664, "mine.txt": 0o400}


def test_config_file_is_two_lines_and_restart_rules(ctx: HubContext) -> None:
    path = hubconfig.write_config_file(ctx.hub_dir)
    assert path.read_text().splitlines() == [
        "from hubfleet.backends.local.hubconfig import configure",
        f"configure(c, {str(ctx.hub_dir.resolve() / 'hub.json')!r})",
    ]
    old = json.loads(ctx.path.read_text())
    assert hubconfig.restart_needed(None, old)
    phase_only = json.loads(json.dumps(old))
    phase_only["spec"]["presentations"][0]["phase"] = "archived"
    assert not hubconfig.restart_needed(old, phase_only)  # HubContext re-reads it live
    admins = json.loads(json.dumps(old))
    admins["spec"]["admins"] = ["someone-else"]
    assert hubconfig.restart_needed(old, admins)


def test_groups_seeded_from_members(ctx: HubContext) -> None:
    groups = hubconfig.groups(ctx)
    assert groups["tm351-2026j"] == {"users": ["alice"]}
    assert groups["tm351-2026j-tutors"] == {"users": ["tess"]}
    assert groups["tm351-2027b"] == {"users": ["bob"]}
