"""Helpers every command shares: load a catalog or exit 2 with its errors, parse --at, print plans.

The command modules import only typer and the standard library at import time; rich's console is made on first
use, and the catalog, the planner and the backends are imported inside the commands that use them, so `hubfleet
--help` and editor integrations (`schema`) do not pay for what they do not use: pydantic models, httpx, JupyterHub,
rich (tests/test_cli_startup.py keeps it so).

The command modules (``*_cmds.py``) do without ``from __future__ import annotations``: typer reads the signature of
every command on every run (``--help`` too), and each string annotation costs an ``eval`` (~8 ms for the whole CLI);
names imported only for type checking are quoted there instead.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from hubfleet.catalog import LoadedCatalog
    from hubfleet.plan import FleetSpec, OrphanError, Plan


class _LazyConsole:
    """A rich ``Console`` made on first use: importing rich.console costs ~30 ms, which commands that print nothing
    through rich (`schema`, `plan --json`, `docs`) need not pay. Every attribute (and ``with``) goes to the console."""

    def __init__(self, **options: object) -> None:
        object.__setattr__(self, "_options", options)
        object.__setattr__(self, "_console", None)

    def _made(self) -> Console:
        if self._console is None:
            from rich.console import Console

            object.__setattr__(self, "_console", Console(**self._options))
        return self._console

    def __getattr__(self, name: str):  # noqa: ANN204 - whatever the Console attribute is
        return getattr(self._made(), name)

    def __setattr__(self, name: str, value: object) -> None:
        setattr(self._made(), name, value)

    # A data descriptor like Console's own, so `monkeypatch.setattr(console, "width", ...)` saves and restores it.
    @property
    def width(self) -> int:
        return self._made().width

    @width.setter
    def width(self, value: int) -> None:
        self._made().width = value

    def __enter__(self) -> Console:
        return self._made().__enter__()

    def __exit__(self, *exc: object) -> None:
        self._made().__exit__(*exc)


console: Console = _LazyConsole()  # type: ignore[assignment] - a Console in all but its construction
err_console: Console = _LazyConsole(stderr=True)  # type: ignore[assignment]

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


@contextmanager
def no_pydantic_plugins() -> Iterator[None]:
    """Build the catalog's validators without looking for pydantic plugins, unless PYDANTIC_DISABLE_PLUGINS is set.

    The first validator pydantic builds looks for plugins in the entry points of every installed distribution
    (~170 in hubfleet's venv: ~18 ms of `validate` and `schema`, benchmarks/cli_startup.py). hubfleet uses none
    on its catalog, so its commands switch the search off while they build the catalog's models, the way typer does
    for its own parameters. Only for that time: the servers a command starts keep the user's environment.
    ref: https://docs.pydantic.dev/latest/concepts/plugins/ (PYDANTIC_DISABLE_PLUGINS)
    """
    if "PYDANTIC_DISABLE_PLUGINS" in os.environ:  # the user's own setting stands
        yield
        return
    os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"
    try:
        yield
    finally:
        os.environ.pop("PYDANTIC_DISABLE_PLUGINS", None)


def load_or_exit(catalog: Path) -> LoadedCatalog:
    """Load the catalog; on errors print every one of them and exit 2, having changed nothing."""
    from hubfleet.catalog import CatalogError, load_catalog

    try:
        with no_pydantic_plugins():
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
# What a hub's `delete` really does, per backend: neither throws the hub's state away outright, so the plan says so.
_DELETE_SAYS = {
    "local": ("retire", "hub stopped; its state (database, tokens) is moved to the state dir's retired/ as a backup; "
                        "student files are not touched"),
    "kubernetes": ("delete", "the hub's namespace is deleted, refused until every student's archive is verified"),
}


def action_words(kind: str, backend: str) -> tuple[str, str]:
    """The verb a person reads for an action kind, and what it means on this backend ("" if the verb says it)."""
    if kind == "delete":
        return _DELETE_SAYS.get(backend, ("delete", ""))
    return kind, ""


def print_plan(spec: FleetSpec, plan: Plan) -> None:
    """A human diff: one line per action, field-level changes under updates."""
    import json

    from hubfleet.plan.diff import Kind

    console.print(f"[bold]Plan for {spec.fleet}[/] on {spec.date} ({spec.topology}, {len(spec.hubs)} hubs wanted)")
    if not plan:
        console.print("No changes. The fleet matches the catalog.")
        return
    for action in plan.actions:
        mark, colour = _STYLE.get(action.kind.value, ("*", "white"))
        verb, means = action_words(action.kind.value, spec.backend)
        target = action.hub + (f" {action.presentation}" if action.presentation else "")
        why = "; ".join(x for x in (action.reason, means) if x)
        why = f"  ({why})" if why else ""
        console.print(f"[{colour}]{mark} {verb:8} {target}[/]{why}", highlight=False, soft_wrap=True)
        for change in action.changes:
            console.print(
                f"    [yellow]~ {change.field}[/]: {json.dumps(change.old)} -> {json.dumps(change.new)}",
                highlight=False,
            )
    counts = {action_words(k.value, spec.backend)[0]: len(plan.of_kind(k)) for k in Kind if plan.of_kind(k)}
    console.print("Plan: " + ", ".join(f"{n} to {k}" for k, n in counts.items()))


def table(*headers: str, whole: tuple[int, ...] = (0,), **kw):  # noqa: ANN201 - a rich Table (imported here)
    """A rich Table for :func:`show`: the ``whole`` columns (names and URLs people copy) are never wrapped or cut,
    the others fold onto more lines instead of ending in "…" (rich's default cut hub names to `a233-202…`)."""
    from rich.table import Table

    t = Table(**kw)
    for i, header in enumerate(headers):
        t.add_column(header, no_wrap=i in whole, overflow="fold")
    return t


def show(t, out: Console | None = None) -> None:  # noqa: ANN001 - a Table from table()
    """Print ``t`` as a table if it fits the console (a pipe counts as 80 columns), else as one block per row:
    the first cell on a line of its own, then ``column: value`` lines, so nothing is ever cut."""
    from rich.measure import Measurement

    out = out or console
    # Measured unbounded: every column at least as wide as its longest word (a name, a number, a header word).
    if Measurement.get(out, out.options.update_width(100_000), t).minimum <= out.width:
        out.print(t)
        return
    if t.title:
        out.print(t.title, style="bold", highlight=False)
    columns = list(t.columns)
    for row in zip(*(list(c.cells) for c in columns)):
        out.print(row[0], style="bold", highlight=False, soft_wrap=True)
        for column, cell in zip(columns[1:], row[1:]):
            out.print(f"  {column.header}: {cell}", highlight=False, soft_wrap=True)


def print_report(report) -> None:
    """One line per applied action: ok or FAILED, with the backend's message."""
    for r in report.results:
        mark = "[green]ok[/]" if r.ok else "[red]FAILED[/]"
        target = r.action.hub + (f" {r.action.presentation}" if r.action.presentation else "")
        console.print(f"{mark} {r.action.kind.value} {target}: {r.message}", highlight=False, soft_wrap=True)
