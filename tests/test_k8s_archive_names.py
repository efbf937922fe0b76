"""The archive Job names students by username, not by directory name (issue 9, item 6).

The Job is rendered, then its program runs with the container's own arguments on local folders laid out as the
pod mounts them. The ledger rows, the marker and the portal all key archives by username, archive files are named
by storage name as on the local backend, and ``--exclude`` (the course team) is a list of usernames.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_k8s_backend import spec_of, write_catalog

from hubfleet.backends.kubernetes.archive_job import claim_users, render_archive_job
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
    store, archives = tmp_path / "store", tmp_path / "archives"
    for user in [*STUDENTS, *TEAM, LONG]:
        course = store / "home" / storage_name(user) / "M269-2026J"
        course.mkdir(parents=True)
        (course / "work.py").write_text(f"# {user}\n")
    (store / "home" / "lost+found").mkdir()  # not a storage name, and no course folder: left alone
    mounts = {m["mountPath"]: m for m in job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["/store"]["name"] == "store"
    paths = {"/store": store, "/archives": archives}

    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    args = [_swap(a, paths) for a in command[command.index("archive"):]]
    marker_file = tmp_path / "marker.json"
    assert jobrunner.main([*args, "--marker-out", str(marker_file), "--workers", "1"]) == 0

    shas = json.loads(json.loads(marker_file.read_text())["data"]["archives.json"])
    assert set(shas) == {*STUDENTS, storage_name(LONG)}
    assert all((archives / "M269-2026J" / f"{storage_name(user)}.tar.gz").is_file() for user in STUDENTS)
    for user in STUDENTS:  # torn down in the store, the stub beside the course folder it replaces
        home = store / "home" / storage_name(user)
        assert not (home / "M269-2026J").exists() and (home / "WHERE-ARE-MY-FILES.txt").is_file()
        assert "https://p/archives/" in (home / "WHERE-ARE-MY-FILES.txt").read_text()
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


@settings(max_examples=300)
@given(usernames)
def test_the_job_decodes_every_storage_name_it_can(name):
    # The Job ships hubfleet.catalog.naming itself (archive_job.SHIPPED), so this is the library's own inverse.
    assert jobrunner.username_of(storage_name(name)) == (name if "_" not in storage_name(name) else None)


@pytest.mark.parametrize("stored", ["lost+found", "-41", "ab-2", "a-zz", "-2e-2e", "-c3", "x_0123"])
def test_names_storage_name_never_makes_do_not_decode(stored):
    assert jobrunner.username_of(stored) is None
