"""``hubfleet lifecycle run`` and ``hubfleet archive list|restore``: thin commands over the lifecycle.

``lifecycle run`` is one reconcile at a date (``--at`` simulates one) that reports like an operator needs at the
end of a presentation: the plan, each action, then a deep audit of every recorded archive (read back in full).
Anything wrong (an archive that did not verify, a corrupt or missing one, a hub kept because of it) makes the exit
code non-zero, so a cron job or CI pipeline notices.
"""

# No `from __future__ import annotations`: typer evaluates every command's annotations on every run (cli/common.py).

from pathlib import Path

import typer

from hubfleet.cli.backend_factory import StateDirOption, make_backend, state_dir_for
from hubfleet.cli.common import (
    AtOption, CatalogArg, console, err_console, load_or_exit, orphan_exit, print_plan, print_report, show, table, today,
)
from hubfleet.cli.guards import AllowMassStopOption, hold_state, hold_writer, refuse_mass_stop

lifecycle_app = typer.Typer(help="Presentation lifecycle: read-only, archive, teardown, purge.", no_args_is_help=True)
archive_app = typer.Typer(help="Students' archives: list them, restore one into a new presentation.",
                          no_args_is_help=True)

StorageOption = typer.Option(None, "--storage-root", help="Where student files live; default <state>/storage.")
StoreOption = typer.Option(None, "--archive-store", help="Archive store: a directory or a URL (s3://bucket/prefix). "
                           "Default: the one this fleet used before, else <state>/archives.")
PortOption = typer.Option(8000, "--port", help="Front-door port on 127.0.0.1 (local backend).")
PresentationOption = typer.Option(..., "--presentation", "-p", help="Presentation key, e.g. TM351-2026J.")


@lifecycle_app.command("run")
def run(
    catalog: Path = CatalogArg,
    at: str = AtOption,
    state_dir: Path = StateDirOption,
    storage_root: Path = StorageOption,
    archive_store: str = StoreOption,
    port: int = PortOption,
    allow_mass_stop: bool = AllowMassStopOption,
) -> None:
    """Carry out every phase change due at the date: freeze, archive + verify + tear down, delete hubs, purge.

    Example: hubfleet lifecycle run examples/university --at 2027-07-15
    """
    from hubfleet.plan import OrphanError, plan as make_plan

    loaded = load_or_exit(catalog)
    spec = make_plan(loaded.catalog, today(at))
    backend = make_backend(loaded, state_dir, storage_root=storage_root, port=port)
    try:
        # What the archives hold, and anything they could not hold, printed before any folder is deleted.
        backend.configure_archive(archive_store, lambda line: console.print(line, markup=False, highlight=False))
    except ValueError as exc:
        err_console.print(str(exc), style="red", markup=False)
        raise typer.Exit(2) from None
    hold_writer(backend.writer_lock())  # one writer per fleet (up, apply, lifecycle run, ...)
    try:
        state = backend.observe()
        plan_ = backend.plan(spec, state)
    except OrphanError as exc:
        raise orphan_exit(exc) from None
    print_plan(spec, plan_)
    refuse_mass_stop(plan_, state, spec, allow_mass_stop)
    report = backend.apply(plan_, spec, lambda action, message: None)
    print_report(report)
    problems = backend.archive_problems(deep=True)
    for problem in problems:
        err_console.print(f"ARCHIVE PROBLEM {problem}", style="bold red", markup=False, highlight=False)
    removals = backend.archive_removals()
    if report.ok and not problems:
        console.print(f"Lifecycle: all done; every recorded archive reads back with its recorded sha256. {removals}",
                      highlight=False)
        return
    err_console.print(f"Lifecycle: {len(report.failures)} action(s) failed, {len(problems)} archive problem(s). "
                      f"{removals}", style="red", markup=False, highlight=False)
    raise typer.Exit(1)


def _local(catalog: Path, state_dir: Path | None, storage_root: Path | None):  # noqa: ANN202
    loaded = load_or_exit(catalog)
    backend = make_backend(loaded, state_dir, backend="local", storage_root=storage_root)
    if not (state_dir_for(loaded, state_dir) / "archives.sqlite").exists():
        err_console.print(f"[red]No archive ledger in {state_dir_for(loaded, state_dir)}: nothing was archived here.[/]")
        raise typer.Exit(2)
    return loaded, backend


@archive_app.command("list")
def list_archives(
    catalog: Path = CatalogArg,
    presentation: str = typer.Option(None, "--presentation", "-p", help="Only this presentation."),
    user: str = typer.Option(None, "--user", "-u", help="Only this student."),
    state_dir: Path = StateDirOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Every recorded archive: student, presentation, where, sha256, when verified, when purged.

    Example: hubfleet archive list examples/university --presentation TM351-2026J
    """
    _, backend = _local(catalog, state_dir, None)
    rows = backend.archiving.records(presentation, user)
    if as_json:
        import json

        print(json.dumps([{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.__dict__.items()}
                          for r in rows], indent=2))
        return
    listing = table("presentation", "student", "verified", "folder removed", "purged", "MB", "sha256", "location",
                  title=f"{len(rows)} archive(s)")
    for r in rows:
        state = "[red]" + r.problem + "[/]" if r.problem else (f"{r.verified_at:%Y-%m-%d}" if r.verified_at else "no")
        if r.superseded:
            state = f"superseded (kept): {state}"
        listing.add_row(r.presentation, r.student, state, f"{r.removed_at:%Y-%m-%d}" if r.removed_at else "",
                      f"{r.purged_at:%Y-%m-%d}" if r.purged_at else "", f"{r.bytes / 1e6:.1f}", r.sha256[:12] + "…",
                      r.location)
    show(listing)


@archive_app.command("restore")
def restore(
    catalog: Path = CatalogArg,
    presentation: str = PresentationOption,
    user: str = typer.Option(None, "--user", "-u", help="One student (default: every student of the presentation)."),
    into: str = typer.Option(None, "--into", help="A new presentation key: restore into <its course folder>/"
                             "from-<PRESENTATION>. Default: back into the original course folder (must be gone)."),
    state_dir: Path = StateDirOption,
    storage_root: Path = StorageOption,
) -> None:
    """Restore students' work from their verified archives, re-hashing every file against the manifest.

    Example: hubfleet archive restore examples/university --presentation TM351-2026J --user alice --into TM351-2027J
    """
    from hubfleet.plan import plan as make_plan

    loaded, backend = _local(catalog, state_dir, storage_root)
    hold_state(state_dir_for(loaded, state_dir))  # restoring writes students' folders and the ledger
    spec = make_plan(loaded.catalog, today(None))
    by_key = {p.key: p for p in spec.all_presentations()}
    if into is not None and into not in by_key:
        err_console.print(f"[red]--into {into}: no such presentation in the catalog (or it is not planned now)[/]")
        raise typer.Exit(2)
    # The current archive of each student (one archived again has older, superseded ones, kept as evidence).
    rows = [r for r in backend.archiving.records(presentation, user) if not r.purged_at and not r.superseded]
    if not rows:
        err_console.print(f"[red]No archive of {presentation}{' for ' + user if user else ''} to restore.[/]")
        raise typer.Exit(1)
    failed = 0
    for row in rows:
        try:
            result = backend.archiving.restore(row, by_key.get(into) if into else None, by_key.get(row.presentation))
        except (OSError, KeyError, ValueError) as exc:
            err_console.print(f"FAILED {row.student}: {exc}", style="red", markup=False, highlight=False)
            failed += 1
            continue
        if result.check.ok:
            console.print(f"ok {row.student}: {result.check.files} file(s), {result.check.bytes} bytes, every sha256 "
                          f"matches, in {result.target}", highlight=False)
        else:
            failed += 1
            c = result.check
            err_console.print(f"FAILED {row.student}: {c.error or ''} missing={c.missing[:5]} "
                              f"mismatched={c.mismatched[:5]}", style="red", markup=False, highlight=False)
    raise typer.Exit(1 if failed else 0)
