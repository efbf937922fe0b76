"""What every command that changes a fleet does before changing it: hold the state dir's writer lock, and refuse a plan
that stops too many running hubs. Thin wrappers: the rules live in ``backends.local.statelock`` and ``plan.guard``.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from hubfleet.cli.common import err_console

if TYPE_CHECKING:
    from hubfleet.backends.base import WriterLock
    from hubfleet.backends.local.statelock import StateLock
    from hubfleet.plan import FleetSpec, FleetState, Plan

__all__ = ["AllowMassStopOption", "hold_state", "hold_writer", "refuse_mass_stop"]

AllowMassStopOption = typer.Option(
    False, "--allow-mass-stop",
    help="Apply even if the plan stops more than a quarter of the running hubs (e.g. many presentations end today).",
)

# SIGTERM (a service manager, `hubfleet down`) and SIGHUP (the terminal went away) stop a writer the way Ctrl-C does:
# as a KeyboardInterrupt in the main thread, which apply turns into "start nothing more" and `up` into a fleet stop.
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def hold_state(state: Path) -> StateLock:
    """Take ``state``'s writer lock for the rest of this command or exit 2 naming who holds it."""
    from hubfleet.backends.local.statelock import StateLock

    lock = StateLock(state)
    hold_writer(lock)
    return lock


def hold_writer(lock: WriterLock, standby: float | None = None) -> WriterLock:
    """Take a backend's writer lock for the rest of this command or exit 2 naming who holds it; with ``standby``
    (seconds), wait for it instead, trying again that often (a controller replica standing by on the Lease).

    Released when the command ends (click closes its context) or the process dies, whichever comes first.
    """
    from hubfleet.backends.base import WriterBusy

    said = None
    while True:
        try:
            lock.acquire()
            break
        except WriterBusy as exc:
            if standby is None:
                err_console.print(f"[red]{exc}[/]", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            if str(exc) != said:
                err_console.print(f"standing by: {exc}", markup=False, highlight=False, soft_wrap=True)
                said = str(exc)
            try:
                time.sleep(standby)
            except KeyboardInterrupt:  # stopped while standing by: it held nothing, so there is nothing to undo
                raise typer.Exit(130) from None
    if said is not None:
        err_console.print("leading: this process acts now", markup=False, highlight=False)
    previous = {sig: signal.signal(sig, _interrupt) for sig in _STOP_SIGNALS}

    def release() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        lock.release()

    ctx = _current_context()
    if ctx is not None:
        ctx.call_on_close(release)
    return lock


def _current_context():  # noqa: ANN202 - a click Context
    """The running command's context. typer >= 0.2x runs commands on its own vendored copy of click
    (``typer._click``), where ``click.get_current_context`` finds nothing; without this, the lock was only let
    go when the process ended, which for the Kubernetes Lease means a controller waits out its whole duration.
    click itself is imported here, not at module level: it is the fallback only, and importing it cost every command
    (`--help` too) ~25 ms (benchmarks/cli_startup.py)."""
    import click

    try:
        from typer._click.globals import get_current_context
    except ImportError:  # an older typer on click itself
        get_current_context = click.get_current_context
    return get_current_context(silent=True) or click.get_current_context(silent=True)


def refuse_mass_stop(plan: Plan, state: FleetState, spec: FleetSpec, allow: bool) -> None:
    """Exit 2, listing the hubs and why, if the plan stops too many running hubs and ``--allow-mass-stop`` was not
    given; with it, print the same list as a warning and go on."""
    from hubfleet.plan.guard import mass_stop

    verdict = mass_stop(plan, state, spec)
    if verdict is None:
        return
    for line in verdict.lines():
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)
    if allow:
        err_console.print("--allow-mass-stop given: going ahead.", style="yellow")
        return
    err_console.print("[red]Refused; nothing was changed. If this is intended, run again with --allow-mass-stop.[/]")
    raise typer.Exit(2)
