"""What the CLI prints must be true and whole: names are never cut (pipes and 80-column terminals), the plan says
what a `delete` really does, and the enrolment table reports what happened."""

from __future__ import annotations

import datetime as dt
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from hubfleet.catalog import load_catalog
from hubfleet.cli import common
from hubfleet.cli.enrol_cmds import print_changes
from hubfleet.enrol.sync import GroupChange, HubChanges
from hubfleet.plan import FleetState, ObservedHub, diff, plan

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "university"
DATE = dt.date(2026, 10, 3)


def piped(*args: str, columns: int = 80) -> str:
    """Run hubfleet with stdout a pipe (not a terminal) and COLUMNS as a narrow terminal would set it."""
    env = {**os.environ, "COLUMNS": str(columns)}
    out = subprocess.run([sys.executable, "-c", "from hubfleet.cli.main import app; app()", *args],
                         capture_output=True, text=True, env=env, check=True)  # fmt: skip
    return out.stdout


@pytest.fixture(scope="module")
def spec():
    return plan(load_catalog(EXAMPLE).catalog, DATE)


@pytest.fixture
def narrow(monkeypatch) -> io.StringIO:
    buffer = io.StringIO()
    monkeypatch.setattr(common, "console", Console(file=buffer, width=80, color_system=None))
    return buffer


def test_plan_piped_at_80_columns_keeps_every_hub_name_and_url_whole(spec):
    text = piped("plan", str(EXAMPLE), "--at", DATE.isoformat(), "--state-dir", "/nonexistent/state")
    assert "…" not in text
    lines = text.splitlines()
    for hub in spec.hubs:
        assert any(line.strip() == hub.name or f" {hub.name} " in line for line in lines), hub.name
        assert hub.url in text


def test_topology_compare_at_80_columns_is_readable():
    text = piped("topology", "compare", str(EXAMPLE), "--from", "2026-09-01")
    assert "…" not in text
    for name in ("per-presentation (catalog)", "per-course", "per-unit", "central", "per-student",
                 "example-university"):
        assert name in text
    assert "wait p95 s (no pre-warm / pre-warm)" in text  # headers whole too


def test_a_wide_terminal_still_gets_a_table(spec):
    text = piped("plan", str(EXAMPLE), "--at", DATE.isoformat(), "--state-dir", "/nonexistent/state", columns=160)
    assert "┃ hub" in text and all(hub.url in text for hub in spec.hubs)


def test_plan_says_a_local_hub_is_retired_with_its_state_kept_not_deleted(spec, narrow):
    gone = ObservedHub(name="old-hub-2025j", running=True, applied={})
    actions = diff(spec, FleetState(hubs={"old-hub-2025j": gone}))
    assert any(a.hub == "old-hub-2025j" and a.kind.value == "delete" for a in actions.actions)
    common.print_plan(spec, actions)
    text = narrow.getvalue()
    line = next(line for line in text.splitlines() if "old-hub-2025j" in line and "stop " not in line)
    assert "retire" in line and "backup" in line and "student files are not touched" in line
    assert "delete" not in text.replace("\n", " ")
    assert "to retire" in text


def test_enrolment_table_says_what_happened_and_keeps_names_whole(narrow):
    results = [
        HubChanges(hub="tm351-2026j-with-a-long-name", enrolled=721),  # a new hub: it loaded members.json at start
        HubChanges(hub="m269-2026j", enrolled=550, create_users=["zz9999"],
                   groups=[GroupChange(group="M269-2026J", add=["zz9999"])], writes=2),
        HubChanges(hub="dd211-2026j", enrolled=420),
    ]
    print_changes(results, dry_run=False, started=frozenset({"tm351-2026j-with-a-long-name"}))
    text = narrow.getvalue()
    assert "…" not in text
    assert "tm351-2026j-with-a-long-name" in text and "721" in text
    assert "loaded by the hub at start" in text  # not "no change" beside a hub full of users
    assert "synced" in text and "up to date" in text
