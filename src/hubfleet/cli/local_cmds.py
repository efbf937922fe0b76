"""Commands that run a fleet: up, apply, status (any backend, through the ``Backend`` protocol only) and down (the
local state dir's processes). Thin: the work is in backends.

``up`` is the foreground, docker-compose-like command: it applies, then keeps reconciling until Ctrl-C (locally
Ctrl-C stops the fleet it runs; ``--detach`` applies once and leaves it running). On a kubernetes catalog the same
command is the in-cluster controller's. ``apply`` is one reconcile that leaves hubs running. ``down`` stops
everything local and deletes nothing.
"""

# No `from __future__ import annotations`: typer evaluates every command's annotations on every run (cli/common.py).

import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import typer

from hubfleet.cli.backend_factory import make_backend
from hubfleet.cli.enrol_cmds import print_changes
from hubfleet.cli.common import (
    AtOption, CatalogArg, console, err_console, load_or_exit, orphan_exit, print_plan, print_report, show, table, today,
)
from hubfleet.cli.guards import AllowMassStopOption, hold_writer, refuse_mass_stop

# The backends, the planner and the enrolment are imported inside the commands (see cli/common.py for why).
if TYPE_CHECKING:
    from hubfleet.backends.base import ApplyReport, Backend
    from hubfleet.backends.reconcile import StepReport
    from hubfleet.catalog import LoadedCatalog
    from hubfleet.plan.diff import Action, Plan
    from hubfleet.plan.spec import FleetSpec

StateOption = typer.Option(None, "--state-dir", help="Where hubfleet keeps hub state; default .hubfleet/ next to the catalog.")
StorageOption = typer.Option(None, "--storage-root", help="Where student files live; default <state>/storage.")
PortOption = typer.Option(8000, "--port", help="Front-door port on 127.0.0.1.")


def state_dir_for(catalog: Path, state_dir: Path | None) -> Path:
    base = catalog if catalog.is_dir() else catalog.parent
    return (state_dir or base / ".hubfleet").resolve()


@contextmanager
def _progress_display(total: int = 0) -> Iterator:
    """While hubs start: one line for the whole apply (actions done of all, elapsed, time left) and a spinner line
    per hub saying what it is doing. Apply runs hubs in parallel threads, so this must be thread-safe."""
    from rich.progress import (
        BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn,
    )

    lock = threading.Lock()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=20), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console,
                  transient=False) as bar:  # fmt: skip
        tasks: dict[str, int] = {}
        overall = bar.add_task("[bold]applying the plan[/]", total=total or None)

        def report(action: "Action", message: str) -> None:
            with lock:
                label = f"[bold]{action.hub}[/] {action.kind.value}: {message}"
                if action.hub not in tasks:
                    tasks[action.hub] = bar.add_task(label, total=None)
                bar.update(tasks[action.hub], description=label)
                if message.startswith(("done: ", "failed: ")):
                    bar.advance(overall)

        yield report
        for task in tasks.values():
            bar.update(task, total=1, completed=1)


def _apply(backend: "Backend", plan: "Plan", spec: "FleetSpec") -> "ApplyReport":
    """Apply with the progress display; a fleet-wide fault (local: no proxy binary, the front door failing) exits
    with its code: 2 when the operator's input must change (the front door's port taken: --port), else 1."""
    from hubfleet.backends.base import FleetUnavailable

    try:
        with _progress_display(len(plan.actions)) as progress:
            return backend.apply(plan, spec, progress)
    except FleetUnavailable as exc:
        err_console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


def _print_access(backend: "Backend", spec: "FleetSpec") -> None:
    for line in backend.access(spec):
        console.print(line, highlight=False)


def _say(action: "Action", message: str) -> None:
    console.print(f"[bold]{action.hub}[/] {action.kind.value}: {message}", highlight=False)


def _print_step(report: "StepReport") -> None:
    from hubfleet.backends.base import ApplyReport

    for note in report.notes:
        console.print(f"[cyan]{note}[/]", highlight=False)
    for error in report.errors:
        err_console.print(error, markup=False, highlight=False)
    if report.results:
        print_report(ApplyReport(report.results))


def up(
    catalog: Path = CatalogArg,
    state_dir: Path = StateOption,
    storage_root: Path = StorageOption,
    port: int = PortOption,
    at: str = AtOption,
    interval: float = typer.Option(3.0, "--interval", help="Seconds between reconciles."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Apply once and leave the fleet running."),
    allow_mass_stop: bool = AllowMassStopOption,
) -> None:
    """Bring the fleet up and keep it equal to the catalog until Ctrl-C or SIGTERM.

    Local: hubs run on this machine and Ctrl-C stops them. Kubernetes: the in-cluster controller's command; it
    reconciles the cluster under the fleet's Lease (a second one stands by), and Ctrl-C leaves the hubs running.

    Example: hubfleet up examples/university --at 2026-11-01
    """
    from hubfleet.plan import plan as make_plan

    date = today(at)
    loaded = load_or_exit(catalog)  # a bad catalog exits 2 here, before anything running is touched
    spec = make_plan(loaded.catalog, date)
    backend = make_backend(loaded, state_dir, storage_root=storage_root, port=port)
    runner = backend.runner(catalog, loaded, date if at else None, allow_mass_stop=allow_mass_stop)
    # One writer per fleet: a second `up` exits 2 naming this one, or (a controller replica) stands by until it leads.
    hold_writer(runner.lock, standby=interval if runner.standby and not detach else None)
    try:
        report, synced = _apply_once(backend, loaded, spec, allow_mass_stop, hold_back=runner.unattended and not detach)
        if detach:
            raise typer.Exit(0 if report.ok and synced else 1)
        console.print(f"\nWatching {catalog} (every {interval:g}s). Ctrl-C stops.")

        def on_step(step: "StepReport") -> None:
            if runner.loop.standing_by is None:
                for problem in runner.after_step(step):
                    err_console.print(problem, markup=False, highlight=False)
            _print_step(step)

        runner.loop.run(interval, progress=_say, on_step=on_step)
    except KeyboardInterrupt:
        # Ctrl-C, or SIGTERM (e.g. from `hubfleet down`, or a pod's stop), even in the middle of the first apply:
        # the apply has stopped starting hubs by now; finish what the backend does on the way out, then let go of
        # the lock (click closes the context).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        console.print("\nStopping (no data is deleted) ...")
        console.print(runner.stop(), highlight=False)


def _apply_once(backend: "Backend", loaded: "LoadedCatalog", spec: "FleetSpec", allow_mass_stop: bool,
                hold_back: bool = False) -> tuple["ApplyReport", bool]:
    """`up`'s first reconcile in the foreground: the plan shown, the mass-stop guard (``hold_back``: keep those hubs
    running and say so, instead of exiting 2), apply, enrolment, access."""
    from hubfleet.plan import OrphanError
    from hubfleet.plan.guard import mass_stop, without_hubs

    try:
        state = backend.observe()
        plan = backend.plan(spec, state)
    except OrphanError as exc:
        raise orphan_exit(exc) from None
    except ValueError as exc:  # course material the backend cannot read or ship
        err_console.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    print_plan(spec, plan)
    verdict = None if allow_mass_stop or not hold_back else mass_stop(plan, state, spec)
    if verdict is not None:
        for line in [*verdict.lines(), "kept running; restart `up` with --allow-mass-stop if intended"]:
            err_console.print(line, markup=False, highlight=False, soft_wrap=True)
        plan = without_hubs(plan, verdict.names)
    refuse_mass_stop(plan, state, spec, allow_mass_stop)
    _prepare(backend, spec)
    report = _apply(backend, plan, spec)
    print_report(report)
    synced = _sync(backend, loaded, spec)
    _print_access(backend, spec)
    return report, synced


def _sync(backend: "Backend", loaded: "LoadedCatalog", spec: "FleetSpec", report: "ApplyReport | None" = None) -> bool:
    """Put enrolled students into their hubs' groups right after an apply, so they can log in at once. Only hubs
    that answer from here (a cluster's hubs may not yet, or not from this machine: `hubfleet enrol sync` later)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hubfleet.enrol.membership import SourceError
    from hubfleet.enrol.sync import sync_spec

    # Hubs this apply (re)started loaded members.json themselves (hubconfig's load_groups): the table says so.
    started = frozenset(r.action.hub for r in (report.results if report else ())
                        if r.ok and r.message.startswith(("started", "restarted")))  # fmt: skip
    up = {h.name for h in backend.status(spec) if h.up}
    if not up:
        return True

    def endpoint(name: str) -> tuple[str, str]:
        ep = backend.endpoint(name)
        return ep.api_url, ep.token

    try:
        with Progress(TextColumn("{task.description}"), BarColumn(bar_width=20), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=True) as bar:  # fmt: skip
            task = bar.add_task("enrolment sync: hubs checked", total=len(up))
            results = sync_spec(loaded, spec, endpoint, hubs=up, on_done=lambda _r: bar.advance(task))
    except SourceError as exc:
        err_console.print(str(exc), markup=False)
        return False
    print_changes(results, dry_run=False, started=started)
    return not any(r.error for r in results)


def apply(
    catalog: Path = CatalogArg,
    state_dir: Path = StateOption,
    storage_root: Path = StorageOption,
    port: int = PortOption,
    at: str = AtOption,
    yes: bool = typer.Option(False, "--yes", "-y", help="Apply without asking."),
    allow_mass_stop: bool = AllowMassStopOption,
) -> None:
    """Reconcile once: show the plan, ask, apply it, and leave the hubs running.

    Example: hubfleet apply examples/university --yes
    """
    from hubfleet.plan import OrphanError, plan as make_plan

    loaded = load_or_exit(catalog)
    spec = make_plan(loaded.catalog, today(at))
    backend = make_backend(loaded, state_dir, storage_root=storage_root, port=port)
    hold_writer(backend.writer_lock())  # one writer per fleet: a second up/apply exits 2 naming this one
    try:
        state = backend.observe()
        plan = backend.plan(spec, state)
    except OrphanError as exc:
        raise orphan_exit(exc) from None
    except ValueError as exc:  # course material the backend cannot read or ship (kubernetes)
        err_console.print(str(exc), markup=False)
        raise typer.Exit(2) from None
    print_plan(spec, plan)
    refuse_mass_stop(plan, state, spec, allow_mass_stop)
    if plan and not yes:
        if not sys.stdin.isatty():
            err_console.print("[red]Refusing to apply without confirmation: stdin is not a terminal. Pass --yes.[/]")
            raise typer.Exit(1)
        if not typer.confirm("Apply this plan?", default=False):
            raise typer.Exit(1)
    _prepare(backend, spec)
    try:
        report = _apply(backend, plan, spec)
        print_report(report)
        synced = _sync(backend, loaded, spec, report)
    except KeyboardInterrupt:
        err_console.print("[red]Interrupted: nothing more was started; what already runs keeps running "
                          "(`hubfleet down` stops it).[/]")  # fmt: skip
        raise typer.Exit(130) from None
    _print_access(backend, spec)
    raise typer.Exit(0 if report.ok and synced else 1)


def status(
    catalog: Path = CatalogArg,
    state_dir: Path = StateOption,
    storage_root: Path = StorageOption,
    port: int = PortOption,
    at: str = AtOption,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """Each hub: URL, phase, up or down, users and running servers (asked from the hub's REST API).

    Example: hubfleet status examples/university
    """
    from hubfleet.plan import plan as make_plan

    loaded = load_or_exit(catalog)
    spec = make_plan(loaded.catalog, today(at))
    phases = {h.name: ", ".join(f"{p.key} {p.phase.value}" for p in h.presentations) for h in spec.hubs}
    backend = make_backend(loaded, state_dir, storage_root=storage_root, port=port)
    rows = backend.status(spec)
    who = backend.writer_lock().holder()
    if who is not None:
        err_console.print(f"in use by {who}", markup=False, highlight=False, soft_wrap=True)
    # Corrupt, missing or unverified archives block teardown; say so whatever else is shown (stderr, loud).
    for problem in backend.archive_problems():
        err_console.print(f"ARCHIVE PROBLEM {problem}", style="bold red", markup=False, highlight=False)
    if as_json:
        import json

        print(json.dumps([{**r.__dict__, "phase": phases[r.name]} for r in rows], indent=2))
        return
    hubs = table("hub", "url", "phase", "up", "users", "servers", "detail", title=f"{spec.fleet} on {spec.date}",
                 whole=(0, 1))
    for r in rows:
        hubs.add_row(
            r.name, r.url, phases[r.name], "[green]up[/]" if r.up else "[blue]hibernated[/]" if r.hibernated else "[red]down[/]",
            "" if r.users is None else str(r.users), "" if r.running_servers is None else str(r.running_servers), r.detail,
        )
    show(hubs)


def down(
    catalog: Path = CatalogArg,
    state_dir: Path = StateOption,
) -> None:
    """Stop every hub, proxy, culler, server, the front door and the portal, and a running `up` or `apply` first.
    Deletes nothing; `apply` brings it all back. Returns when nothing of the fleet is left running.

    Example: hubfleet down examples/university
    """
    from hubfleet.backends.local.backend import fleet_processes, stop_fleet
    from hubfleet.backends.local.statelock import StateLock, stop_holder

    state = state_dir_for(catalog, state_dir)
    if not state.is_dir():
        console.print(f"Nothing to stop: no state dir at {state}")
        return
    lock = StateLock(state)
    try:
        # A running `up` would start again whatever we stop: stop it first (it stops its fleet on SIGTERM, even
        # mid-apply) and hold the lock ourselves while stopping, so no writer starts anything behind our back.
        holder = stop_holder(lock)
        if holder is not None:
            console.print(f"Stopped {holder.describe()} first.", highlight=False)
        stopped = stop_fleet(state)
        left = fleet_processes(state)
    finally:
        lock.release()
    if left:
        for proc in left:
            err_console.print(f"still running: pid {proc.pid} {' '.join(_cmdline(proc))}", markup=False,
                              highlight=False)  # fmt: skip
        err_console.print("[red]Some processes of the fleet would not stop (see above).[/]")
        raise typer.Exit(1)
    console.print(f"Stopped {len(stopped)} hub(s), the front door and the portal; nothing of the fleet is running. "
                  "No data was deleted.")  # fmt: skip


def _cmdline(proc) -> list[str]:  # noqa: ANN001
    try:
        return proc.cmdline()
    except Exception:  # noqa: BLE001 - it may have exited meanwhile
        return []


def _prepare(backend: "Backend", spec: "FleetSpec") -> None:
    """What the fleet needs before any hub is touched (exit 2 if the operator must change something, e.g. --port)."""
    from hubfleet.backends.base import FleetUnavailable

    try:
        backend.prepare(spec)
    except FleetUnavailable as exc:
        err_console.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
