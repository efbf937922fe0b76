"""The archive Job names students by username, not by directory name (issue 9, item 6).

The Job is rendered, then run as kubelet would run it on local folders: its init container's own command builds the
by-username view of the personal store, and the archiver runs with the container's own arguments. The ledger rows,
the marker and the portal all key archives by username, and ``--exclude`` (the course team) is a list of usernames.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_k8s_backend import spec_of, write_catalog

from hubfleet.backends.kubernetes.archive_job import claim_users, render_archive_job, student_view
from hubfleet.backends.kubernetes.fleet import DEFAULT_OPTIONS
from hubfleet.backends.kubernetes.validation import validate_manifest
from hubfleet.catalog.naming import USERNAME_MAX, is_username, storage_name
from hubfleet.lifecycle import jobrunner

ARCHIVED = dt.date(2027, 8, 1)  # TM351-2026J archived; M269-2026J (personal store) still open, planned the same way
STUDENTS = ["alice.smith", "josé", "a.smith@example.ac.uk", "ab1234", "alice-2esmith"]
TEAM = ["jean.luc"]
LONG = "ж" * 30  # its storage name is cut (> 128 characters): not decodable, archived under that name
_ALPHABET = st.sampled_from(list("abcdexyz0189.-_@+") + ["é", "ß", "ø", "ж", "中"])
usernames = st.text(_ALPHABET, min_size=1, max_size=USERNAME_MAX).map(str.lower).filter(is_username)


def _presentation(tmp_path: Path, key: str):
    catalog = write_catalog(tmp_path / "catalog")
    return next(p for p in spec_of(catalog, ARCHIVED).all_presentations() if p.key == key)


def _swap(arg: str, paths: dict[str, Path]) -> str:
    for inside, outside in sorted(paths.items(), key=lambda kv: -len(kv[0])):
        if arg == inside or arg.startswith(inside + "/"):
            return str(outside) + arg[len(inside):]
    return arg


def test_personal_store_archives_are_named_by_username_and_the_team_is_kept(tmp_path):
    pres = _presentation(tmp_path, "M269-2026J")
    assert pres.storage.layout == "personal-subfolder"
    job = render_archive_job(pres, "m269-2026j", "img:1", {}, TEAM, DEFAULT_OPTIONS, portal_url="https://p/archives/")
    assert validate_manifest(job) == []
    store, view, archives = tmp_path / "store", tmp_path / "view", tmp_path / "archives"
    for user in [*STUDENTS, *TEAM, LONG]:
        course = store / "home" / storage_name(user) / "M269-2026J"
        course.mkdir(parents=True)
        (course / "work.py").write_text(f"# {user}\n")
    (store / "home" / "lost+found").mkdir()  # not a storage name, and no course folder: left alone
    pod = job["spec"]["template"]["spec"]
    paths = {"/personal-store": store, "/store": view, "/archives": archives}

    (init,) = pod["initContainers"]
    subprocess.run([sys.executable, *[_swap(a, paths) for a in init["command"][1:]]], check=True)
    command = pod["containers"][0]["command"]
    args = [_swap(a, paths) for a in command[command.index("archive"):]]
    marker_file = tmp_path / "marker.json"
    assert jobrunner.main([*args, "--marker-out", str(marker_file), "--workers", "1"]) == 0

    shas = json.loads(json.loads(marker_file.read_text())["data"]["archives.json"])
    assert set(shas) == {*STUDENTS, storage_name(LONG)}
    assert all((archives / "M269-2026J" / f"{user}.tar.gz").is_file() for user in STUDENTS)
    for user in STUDENTS:  # torn down in the real store, stub beside the course folder it replaces
        home = store / "home" / storage_name(user)
        assert not (home / "M269-2026J").exists() and (home / "WHERE-ARE-MY-FILES.txt").is_file()
    assert (store / "home" / storage_name("jean.luc") / "M269-2026J" / "work.py").is_file()  # the tutor's own


def test_per_presentation_claims_are_mounted_by_the_username_kubespawner_annotated(tmp_path):
    pres = _presentation(tmp_path, "TM351-2026J")
    claims = [{"metadata": {"name": f"claim-tm351-2026j-{slug}", "annotations": {"hub.jupyter.org/username": user}}}
              for slug, user in [("a-smith---1d2f3e4a", "a.smith@example.ac.uk"), ("jos---0a1b2c3d", "josé")]]
    users = claim_users(claims)
    assert set(users.values()) == {"a.smith@example.ac.uk", "josé"}
    job = render_archive_job(pres, "tm351-2026j", "img:1", users, [], DEFAULT_OPTIONS)
    assert validate_manifest(job) == []
    mounts = {m["mountPath"] for m in job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert {"/students/a.smith@example.ac.uk", "/students/josé"} <= mounts
    with pytest.raises(ValueError, match="hub.jupyter.org/username"):
        claim_users([{"metadata": {"name": "claim-tm351-2026j-x", "annotations": {}}}])
    with pytest.raises(ValueError, match="annotate it"):
        claim_users([{"metadata": {"name": "claim-x", "annotations": {"hub.jupyter.org/username": "../etc"}}}])


@settings(max_examples=200, deadline=None)
@given(st.lists(usernames, min_size=1, max_size=4, unique=True))
def test_the_view_names_every_decodable_folder_by_its_username(names):
    with tempfile.TemporaryDirectory() as tmp:
        src, view = Path(tmp) / "home", Path(tmp) / "view"
        for name in names:
            (src / storage_name(name)).mkdir(parents=True)
        student_view(str(src), str(view))
        expected = {name if "_" not in storage_name(name) else storage_name(name) for name in names}
        assert {p.name for p in view.iterdir()} == expected
        for name in names:
            link = view / (name if "_" not in storage_name(name) else storage_name(name))
            assert link.resolve() == (src / storage_name(name)).resolve()
