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


PASSWORD = "correct horse battery"
USERS = ("mo3312", "ef4410", "ua1001", "ua2002", "rk4521", "st0001")


def portal_with_requests(tmp_path: Path, db_url: str, today, mailer=None, commit_to: str = "main"):  # noqa: ANN001, ANN201
    """A portal app (state dir of its own, users with one password) with the request pages on the git catalog."""
    import json
    import os

    from fastapi.testclient import TestClient

    from hubfleet.backends.local.members import hash_password
    from hubfleet.web.portal import PortalSource, create_app
    from hubfleet.web.requests_pages import RequestSettings, mount

    repo = catalog_repo(tmp_path, commit_to)
    state = tmp_path / "state"
    state.mkdir()
    hashes = {u: hash_password(PASSWORD) for u in USERS}
    (state / "passwords.json").write_text(json.dumps(hashes))
    os.chmod(state / "passwords.json", 0o600)
    app = create_app(PortalSource(state))
    service = mount(app, RequestSettings(catalog=repo, database_url=db_url, mailer=mailer), today=lambda: today)
    app.state.dashboard_runner = ran = []  # the actions' own commands are the CLI's (tested there); record them
    app.state.dashboard_runner = lambda action, hub: ran.append((action, hub))

    def client():  # noqa: ANN202
        return TestClient(app, base_url="http://portal.localhost:8000", follow_redirects=False)

    return app, service, repo, state, client, ran


def sign_in(client, username: str, password: str = PASSWORD):  # noqa: ANN001, ANN201
    """Sign in at the portal as a browser does: the form (CSRF cookie and token), then its POST."""
    import re

    page = client.get("/portal/login")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    return client.post("/portal/login", data={"username": username, "password": password,
                                               "csrf_token": found.group(1)})  # fmt: skip


def _root_conftest():  # noqa: ANN202
    """tests/conftest.py's helpers (free_port, running_in, wait_until): this folder's own conftest shadows the name."""
    import importlib.util
    import sys

    name = "hubfleet_tests_root_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "conftest.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


free_port = _root_conftest().free_port
running_in = _root_conftest().running_in
wait_until = _root_conftest().wait_until
