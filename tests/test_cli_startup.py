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
    # The plugin loader's stand-in (hubfleet.cli.plugin_search) is in sys.modules from the start; it is not pydantic.
    return found["code"], {m.split(".")[0] for m in found["modules"] if m != "pydantic.plugin._loader"}


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
    ["validate", str(EXAMPLE)],
])
def test_commands_that_print_no_rich_output_do_not_import_rich(args):
    """JSON for editors and scripts, and validate's one-line "ok": rich (its console is made on first use) is not
    loaded for them. (validate's errors still go through rich.)"""
    code, modules = imported(args)
    assert code == 0
    assert "rich" not in modules


def test_validate_never_imports_the_plugin_loader_it_does_not_use():
    """Plugins are switched off wherever validate builds validators, so pydantic's loader (and importlib.metadata,
    which it imports at once) is never imported (hubfleet.cli.plugin_search)."""
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(["validate", str(EXAMPLE)])],
                         capture_output=True, text=True, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["code"] == 0
    assert "importlib.metadata" not in found["modules"]


_PLUGIN = """
class Probe:
    def new_schema_validator(self, schema, schema_type, schema_type_path, schema_kind, config, plugin_settings):
        print("plugin saw", schema_type.__name__)
        return None, None, None

probe = Probe()
"""

_WITH_PLUGIN = """
import os
from hubfleet.cli import plugin_search
plugin_search.install()
from pydantic import BaseModel

os.environ["PYDANTIC_DISABLE_PLUGINS"] = "1"  # as typer and the catalog loader switch them off
class Quiet(BaseModel):
    x: int
del os.environ["PYDANTIC_DISABLE_PLUGINS"]
class Seen(BaseModel):  # built with plugins on: the user's plugin sees it, as without the stand-in
    x: int
class AlsoSeen(BaseModel):
    x: int
"""


def test_a_users_pydantic_plugin_still_sees_every_model_built_with_plugins_on(tmp_path):
    """The stand-in changes only when pydantic's loader is imported, never which validators a plugin sees: a real
    plugin, installed as pydantic finds them (an entry point in the `pydantic` group), sees exactly the models
    built outside the switched-off windows."""
    (tmp_path / "hfprobe_plugin.py").write_text(_PLUGIN)
    dist = tmp_path / "hfprobe_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: hfprobe-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pydantic]\nhfprobe = hfprobe_plugin:probe\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    env.pop("PYDANTIC_DISABLE_PLUGINS", None)
    out = subprocess.run([sys.executable, "-c", _WITH_PLUGIN], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.splitlines() == ["plugin saw Seen", "plugin saw AlsoSeen"]
