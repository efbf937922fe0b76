"""The CLI's import graph: commands a person types often (and editors call) do not import the servers' stacks.

A behaviour test of what gets imported, run in a fresh interpreter each time (this test process has imported
everything already); the timings are in benchmarks/cli_startup.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "university"
# The hubs' and the cluster's stacks, and the web stack of the portal: none is needed to read a catalog.
HEAVY = ("jupyterhub", "kubernetes", "fastapi", "tornado", "sqlalchemy", "httpx", "uvicorn", "starlette")

_PROBE = """
import contextlib, io, json, sys
args = json.loads(sys.argv[1])
if args is None:
    import hubfleet.cli.main
    code = 0
else:
    from hubfleet.cli.main import app
    sys.argv = ["hubfleet", *args]
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            app()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def imported(args: list[str] | None) -> tuple[int, set[str]]:
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(args)], capture_output=True, text=True, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    return found["code"], {m.split(".")[0] for m in found["modules"]}


def test_importing_the_cli_imports_no_server_stack():
    code, modules = imported(None)
    assert code == 0
    assert not modules & {"jupyterhub", "kubernetes", "fastapi"}, modules & {"jupyterhub", "kubernetes", "fastapi"}
    # Nor the catalog's models: `--help` needs only the commands' signatures.
    assert "pydantic" not in modules


@pytest.mark.parametrize("args", [
    ["--help"],
    ["validate", str(EXAMPLE)],
    ["plan", str(EXAMPLE), "--at", "2026-10-03", "--state-dir", "/nonexistent/hubfleet-state"],
    ["schema"],
    ["enrol", "--help"],
])
def test_everyday_commands_import_no_server_stack(args):
    code, modules = imported(args)
    assert code == 0, f"hubfleet {' '.join(args)} exited {code}"
    assert not modules & set(HEAVY), f"hubfleet {' '.join(args)} imported {sorted(modules & set(HEAVY))}"


def test_schema_does_not_read_yaml():
    """`hubfleet schema` (what editors call) needs the models only, not the YAML reader."""
    _, modules = imported(["schema"])
    assert "ruamel" not in modules


def test_loading_a_catalog_leaves_the_environment_as_it_was(monkeypatch):
    """Commands switch pydantic's plugin search off only while they build the catalog's models (a start-up cost);
    what they run afterwards (hubs, the portal) gets the user's environment, and a user's own setting stands."""
    import os

    from hubfleet.cli.common import load_or_exit

    monkeypatch.delenv("PYDANTIC_DISABLE_PLUGINS", raising=False)
    before = dict(os.environ)
    assert load_or_exit(EXAMPLE).catalog.courses
    assert dict(os.environ) == before
    monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", "")
    load_or_exit(EXAMPLE)
    assert os.environ["PYDANTIC_DISABLE_PLUGINS"] == ""


@pytest.mark.parametrize("args", [
    ["schema"],
    ["plan", str(EXAMPLE), "--at", "2026-10-03", "--state-dir", "/nonexistent/hubfleet-state", "--json"],
])
def test_commands_that_print_no_rich_output_do_not_import_rich(args):
    """JSON for editors and scripts: rich (its console is made on first use) is not loaded for it."""
    code, modules = imported(args)
    assert code == 0
    assert "rich" not in modules
