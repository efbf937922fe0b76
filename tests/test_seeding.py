"""Seeding course material: what a student and a course team see after a server start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hubfleet.storage import seeding
from hubfleet.storage.seeding import MANIFEST_NAME, SeedError, seed

SEEDING_FILE = Path(seeding.__file__)


@pytest.fixture
def material(tmp_path: Path) -> Path:
    src = tmp_path / "course-material"
    (src / "notebooks").mkdir(parents=True)
    (src / "data").mkdir()
    (src / "notebooks" / "01-intro.ipynb").write_text('{"cells": ["intro v1"]}')
    (src / "notebooks" / "02-sql.ipynb").write_text('{"cells": ["sql v1"]}')
    (src / "data" / "rivers.csv").write_text("name,length\nThames,346\n")
    (src / "README.md").write_text("Welcome to TM351\n")
    return src


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home" / "alice" / "TM351-2026J"


def files_of(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): p.read_text()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    }


@pytest.mark.parametrize("policy", ["never", "always", "if-unchanged"])
def test_first_start_copies_all_material_with_structure(material: Path, home: Path, policy: str) -> None:
    report = seed(material, home, policy)
    assert files_of(home) == files_of(material)
    assert sorted(report.copied) == sorted(files_of(material))
    assert (home / MANIFEST_NAME).is_file()


@pytest.mark.parametrize("policy", ["never", "always", "if-unchanged"])
def test_second_start_copies_nothing(material: Path, home: Path, policy: str) -> None:
    seed(material, home, policy)
    again = seed(material, home, policy)
    assert again.copied == [] and again.updated == []
    assert sorted(again.skipped_existing) == sorted(files_of(material))


def test_if_unchanged_keeps_student_edit_and_updates_untouched_files(material: Path, home: Path) -> None:
    seed(material, home, "if-unchanged")
    (home / "notebooks" / "01-intro.ipynb").write_text('{"cells": ["my answers"]}')
    # The course team fixes a typo in both notebooks for this presentation.
    (material / "notebooks" / "01-intro.ipynb").write_text('{"cells": ["intro v2"]}')
    (material / "notebooks" / "02-sql.ipynb").write_text('{"cells": ["sql v2"]}')

    report = seed(material, home, "if-unchanged")

    assert (home / "notebooks" / "01-intro.ipynb").read_text() == '{"cells": ["my answers"]}'
    assert (home / "notebooks" / "02-sql.ipynb").read_text() == '{"cells": ["sql v2"]}'
    assert report.kept_student_edits == ["notebooks/01-intro.ipynb"]
    assert report.updated == ["notebooks/02-sql.ipynb"]


def test_if_unchanged_respects_a_deletion_but_never_brings_it_back(material: Path, home: Path) -> None:
    seed(material, home, "if-unchanged")
    (home / "README.md").unlink()
    report = seed(material, home, "if-unchanged")
    assert not (home / "README.md").exists()
    assert report.kept_student_deletions == ["README.md"]
    # Still deleted on the start after that: the decision is remembered in the manifest.
    assert seed(material, home, "if-unchanged").kept_student_deletions == ["README.md"]

    # Under "never", deleting a file is how a student gets a fresh copy.
    report = seed(material, home, "never")
    assert report.copied == ["README.md"]
    assert (home / "README.md").read_text() == "Welcome to TM351\n"


def test_new_material_added_mid_presentation_reaches_students(material: Path, home: Path) -> None:
    seed(material, home, "if-unchanged")
    (material / "notebooks" / "03-nosql.ipynb").write_text('{"cells": ["nosql"]}')
    report = seed(material, home, "if-unchanged")
    assert report.copied == ["notebooks/03-nosql.ipynb"]
    assert (home / "notebooks" / "03-nosql.ipynb").read_text() == '{"cells": ["nosql"]}'


def test_never_leaves_existing_files_alone_even_if_material_changed(material: Path, home: Path) -> None:
    seed(material, home, "never")
    (material / "README.md").write_text("Welcome v2\n")
    report = seed(material, home, "never")
    assert (home / "README.md").read_text() == "Welcome to TM351\n"
    assert "README.md" in report.skipped_existing


def test_always_overwrites_student_edits(material: Path, home: Path) -> None:
    seed(material, home, "always")
    (home / "README.md").write_text("student scribbles\n")
    report = seed(material, home, "always")
    assert (home / "README.md").read_text() == "Welcome to TM351\n"
    assert report.updated == ["README.md"]


def test_file_present_before_first_seed_counts_as_the_students(material: Path, home: Path) -> None:
    (home / "notebooks").mkdir(parents=True)
    (home / "notebooks" / "01-intro.ipynb").write_text("brought my own")
    report = seed(material, home, "if-unchanged")
    assert (home / "notebooks" / "01-intro.ipynb").read_text() == "brought my own"
    assert report.kept_student_edits == ["notebooks/01-intro.ipynb"]


def test_symlink_planted_in_target_is_never_written_through(material: Path, home: Path, tmp_path: Path) -> None:
    bob = tmp_path / "home" / "bob" / "TM351-2026J"
    (bob / "notebooks").mkdir(parents=True)
    (bob / "README.md").write_text("bob's work\n")
    (bob / "notebooks" / "01-intro.ipynb").write_text("bob's notebook")
    home.mkdir(parents=True)
    # Alice points a seeded file and a seeded directory at Bob's folder.
    (home / "README.md").symlink_to(bob / "README.md")
    (home / "notebooks").symlink_to(bob / "notebooks")

    report = seed(material, home, "always")

    assert (bob / "README.md").read_text() == "bob's work\n"
    assert (bob / "notebooks" / "01-intro.ipynb").read_text() == "bob's notebook"
    assert sorted(os.listdir(bob / "notebooks")) == ["01-intro.ipynb"]
    assert sorted(report.refused_symlinks) == [
        "README.md",
        "notebooks/01-intro.ipynb",
        "notebooks/02-sql.ipynb",
    ]
    assert (home / "data" / "rivers.csv").is_file()  # the rest is still seeded


def test_target_folder_itself_being_a_symlink_is_refused(material: Path, home: Path, tmp_path: Path) -> None:
    other = tmp_path / "home" / "bob" / "TM351-2026J"
    other.mkdir(parents=True)
    home.parent.mkdir(parents=True)
    home.symlink_to(other)
    with pytest.raises(SeedError, match="not a real directory"):
        seed(material, home, "if-unchanged")
    assert os.listdir(other) == []


def test_symlinks_in_the_material_are_skipped(material: Path, home: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("exam answers")
    (material / "answers.txt").symlink_to(secret)
    (material / "outside").symlink_to(tmp_path)
    report = seed(material, home, "if-unchanged")
    assert not (home / "answers.txt").exists() and not (home / "outside").exists()
    assert sorted(report.skipped_source_links) == ["answers.txt", "outside"]


def test_manifest_symlink_does_not_leak_or_clobber(material: Path, home: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.json"
    victim.write_text("precious")
    home.mkdir(parents=True)
    (home / MANIFEST_NAME).symlink_to(victim)
    seed(material, home, "if-unchanged")
    assert victim.read_text() == "precious"
    assert not (home / MANIFEST_NAME).is_symlink()


def test_explicit_manifest_location(material: Path, home: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "state" / "alice.json"
    seed(material, home, "if-unchanged", manifest)
    recorded = json.loads(manifest.read_text())["files"]
    assert set(recorded) == set(files_of(material))
    assert not (home / MANIFEST_NAME).exists()


def test_executable_scripts_stay_executable(material: Path, home: Path) -> None:
    script = material / "setup.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    seed(material, home, "never")
    assert os.access(home / "setup.sh", os.X_OK)


def test_cli_prints_one_line_json_and_exits_zero(material: Path, home: Path) -> None:
    cmd = [sys.executable, str(SEEDING_FILE), "--source", str(material), "--target", str(home)]
    done = subprocess.run([*cmd, "--policy", "if-unchanged"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["copied"] == 4
    assert files_of(home) == files_of(material)


def test_cli_missing_source_exits_2_with_message(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-material"
    done = subprocess.run(
        [sys.executable, str(SEEDING_FILE), "--source", str(missing), "--target", str(tmp_path / "t"),
         "--policy", "never"],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode == 2
    assert "seed source is missing" in done.stderr and str(missing) in done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_uid_gid_own_created_files(material: Path, home: Path) -> None:
    seed(material, home, "never", uid=4242, gid=4343)
    for path in [home / "README.md", home / "notebooks", home / "notebooks" / "02-sql.ipynb"]:
        st = path.lstat()
        assert (st.st_uid, st.st_gid) == (4242, 4343)
