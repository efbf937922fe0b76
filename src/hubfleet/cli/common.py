"""Helpers every command shares: load a catalog or exit 2 with its errors, parse --at, print plans.

The command modules import only typer, rich's console and the standard library at import time; the catalog, the
planner and the backends are imported inside the commands that use them, so `hubfleet --help` and editor
integrations do not pay for pydantic models, httpx or JupyterHub (tests/test_cli_startup.py keeps it so).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from hubfleet.catalog import LoadedCatalog
    from hubfleet.plan import FleetSpec, OrphanError, Plan

console = Console()
err_console = Console(stderr=True)

CatalogArg = typer.Argument(..., help="A catalog: fleet.yaml, or a folder with fleet.yaml and courses/*.yaml.")
AtOption = typer.Option(None, "--at", help="Plan as of this date (YYYY-MM-DD); default today.")


def today(at: str | None) -> dt.date:
    if at is None:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(at)
    except ValueError:
        err_console.print(f"[red]--at {at!r} is not a date; write YYYY-MM-DD[/]")
        raise typer.Exit(2) from None


def load_or_exit(catalog: Path) -> LoadedCatalog:
    """Load the catalog; on errors print every one of them and exit 2, having changed nothing."""
    from hubfleet.catalog import CatalogError, load_catalog

    try:
        return load_catalog(catalog)
    except CatalogError as exc:
        for problem in exc.problems:
            err_console.print(str(problem), markup=False, highlight=False, soft_wrap=True)
        if exc.omitted:
            err_console.print(f"... and {exc.omitted} more (fix these first)", markup=False, highlight=False)
        err_console.print(f"[red]{exc.count} error(s); nothing was changed.[/]")
        raise typer.Exit(2) from None


def orphan_exit(exc: OrphanError) -> typer.Exit:
    for reason in exc.reasons:
        err_console.print(f"refused: {reason}", markup=False, highlight=False, soft_wrap=True)
    err_console.print("[red]The plan would move student files; nothing was changed.[/]")
    return typer.Exit(2)


_STYLE = {  # by Kind's value, so this module need not import the planner
    "create": ("+", "green"),
    "update": ("~", "yellow"),
    "start": (">", "cyan"),
    "archive": ("a", "magenta"),
    "stop": ("-", "red"),
    "delete": ("-", "red"),
    "purge": ("x", "red"),
}


def print_plan(spec: FleetSpec, plan: Plan) -> None:
    """A human diff: one line per action, field-level changes under updates."""
    from hubfleet.plan.diff import Kind

    console.print(f"[bold]Plan for {spec.fleet}[/] on {spec.date} ({spec.topology}, {len(spec.hubs)} hubs wanted)")
    if not plan:
        console.print("No changes. The fleet matches the catalog.")
        return
    for action in plan.actions:
        mark, colour = _STYLE[action.kind.value]
        target = action.hub + (f" {action.presentation}" if action.presentation else "")
        why = f"  ({action.reason})" if action.reason else ""
        console.print(f"[{colour}]{mark} {action.kind.value:8} {target}[/]{why}", highlight=False)
        for change in action.changes:
            console.print(
                f"    [yellow]~ {change.field}[/]: {json.dumps(change.old)} -> {json.dumps(change.new)}",
                highlight=False,
            )
    counts = {k.value: len(plan.of_kind(k)) for k in Kind if plan.of_kind(k)}
    console.print("Plan: " + ", ".join(f"{n} to {k}" for k, n in counts.items()))


def print_report(report) -> None:
    """One line per applied action: ok or FAILED, with the backend's message."""
    for r in report.results:
        mark = "[green]ok[/]" if r.ok else "[red]FAILED[/]"
        target = r.action.hub + (f" {r.action.presentation}" if r.action.presentation else "")
        console.print(f"{mark} {r.action.kind.value} {target}: {r.message}", highlight=False)
