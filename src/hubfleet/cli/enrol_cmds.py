"""`hubfleet enrol sync`: put every enrolled student in the right hub groups before the first tutorial."""

# No `from __future__ import annotations`: typer evaluates every command's annotations on every run (cli/common.py).

from pathlib import Path

from typing import TYPE_CHECKING

import typer

from hubfleet.cli.backend_factory import StateDirOption, make_backend
from hubfleet.cli.common import AtOption, CatalogArg, console, err_console, load_or_exit, show, table, today

if TYPE_CHECKING:
    from hubfleet.enrol.sync import HubChanges

enrol_app = typer.Typer(help="Enrolment: students, tutors and instructors into each hub's groups.", no_args_is_help=True)


def print_changes(results: list["HubChanges"], dry_run: bool, started: frozenset[str] = frozenset()) -> None:
    """One row per hub: how many are enrolled and what this sync wrote. ``started``: hubs (re)started just before,
    which loaded their enrolment (members.json) themselves at start, so the sync found it in place and says so
    instead of a bare "0 created / no change" beside a hub full of users."""
    changes = table("hub", "enrolled", "users created", "added", "removed", "groups +/-", "API writes", "via", "result",
                    title="Enrolment" + (" (dry run: nothing written)" if dry_run else ""))
    for r in results:
        c = r.counts()
        if r.error:
            result = f"[red]{r.error}[/]"
        elif not r.empty:
            result = "would change" if dry_run else "synced"
        elif r.hub in started:
            result = "in place: loaded by the hub at start"
        else:
            result = "up to date"
        changes.add_row(
            r.hub, str(r.enrolled), str(c["users created"]), str(c["added to groups"]), str(c["removed from groups"]),
            f"+{c['groups created']}/-{c['groups deleted']}", str(r.writes), r.method or "-", result,
        )
    show(changes)


def sync_catalog(loaded, backend, at, hub: str | None = None, dry_run: bool = False, show=True) -> list["HubChanges"]:
    """Resolve every source first (so an unreadable one changes nothing), then sync hubs concurrently."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hubfleet.enrol.sync import sync_spec
    from hubfleet.plan import plan as make_plan

    spec = make_plan(loaded.catalog, at)
    wanted = {hub} if hub else None

    def endpoint(name: str) -> tuple[str, str]:
        ep = backend.endpoint(name)
        return ep.api_url, ep.token

    if not show:
        return sync_spec(loaded, spec, endpoint, hubs=wanted, dry_run=dry_run)
    total = len([h for h in spec.hubs if wanted is None or h.name in wanted])
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("syncing hubs", total=total)
        return sync_spec(loaded, spec, endpoint, hubs=wanted, dry_run=dry_run, on_done=lambda _r: progress.advance(task))


@enrol_app.command("sync")
def sync(
    catalog: Path = CatalogArg,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the changes without writing anything."),
    hub: str = typer.Option(None, "--hub", help="Only this hub."),
    at: str = AtOption,
    state_dir: Path = StateDirOption,
) -> None:
    """Sync rosters, LDAP groups and static lists into each hub's users and groups (bulk, incremental).

    A student who leaves a roster loses the group (and access); their user and files are kept.
    A source that cannot be read (a missing CSV, LDAP down) stops the sync before anything is written.

    Example: hubfleet enrol sync examples/university --dry-run
    """
    from hubfleet.enrol.membership import SourceError

    loaded = load_or_exit(catalog)
    backend = make_backend(loaded, state_dir)
    try:
        results = sync_catalog(loaded, backend, today(at), hub, dry_run)
    except SourceError as exc:
        err_console.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(1) from None
    print_changes(results, dry_run)
    if any(r.error for r in results):
        raise typer.Exit(1)
