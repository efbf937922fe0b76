"""Helpers of the hub-request tests: the example catalog as a git repository with unit admins."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "university"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def catalog_repo(tmp_path: Path, commit_to: str = "main") -> Path:
    """The example catalog as a git repository (branch main), with unit admins and the request policy added."""
    repo = tmp_path / "catalog"
    shutil.copytree(EXAMPLE, repo, ignore=shutil.ignore_patterns(".hubfleet", "generate_rosters.py"))
    fleet = (repo / "fleet.yaml").read_text()
    fleet = fleet.replace(
        "    - {id: stem, name: Faculty of STEM}\n",
        "    - id: stem\n      name: Faculty of STEM\n      admins:\n        - {username: ua1001, until: 2030-07-31}\n"
        "        - {username: ua1999, until: 2026-01-31}\n",
    ).replace(
        "    - {id: arts, name: Faculty of Arts and Social Sciences}\n",
        "    - id: arts\n      name: Faculty of Arts and Social Sciences\n      admins:\n"
        "        - {username: ua2002, until: 2030-07-31}\n",
    )
    fleet += f"  requests: {{commit_to: {commit_to}, main_branch: main}}\n"
    (repo / "fleet.yaml").write_text(fleet)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "catalog")
    return repo
