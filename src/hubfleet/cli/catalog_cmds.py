"""Commands over the catalog alone: validate, plan, schema, docs, topology compare."""

# No `from __future__ import annotations`: typer evaluates every command's annotations on every run (cli/common.py).

import datetime as dt
from pathlib import Path

import typer

from hubfleet.cli import cost_cmds
from hubfleet.cli.backend_factory import StateDirOption, observing_backend
from hubfleet.cli.common import (
    AtOption, CatalogArg, console, load_or_exit, no_pydantic_plugins, orphan_exit, print_plan, show, table, today,
)

topology_app = typer.Typer(help="Compare ways of grouping presentations into hubs.", no_args_is_help=True)


def validate(catalog: Path = CatalogArg) -> None:
    """Check a catalog strictly; exit 0, or exit 2 listing every error as FILE:LINE:COL.

    Example: hubfleet validate examples/university
    """
    loaded = load_or_exit(catalog)
    c = loaded.catalog
    n_pres = sum(len(course.presentations) for course in c.courses)
    n_members = sum(len(r) for r in loaded.rosters.values())
    # typer's own echo, not rich: this one line needs no layout, and importing rich and rendering with it was
    # ~25 ms of the command's ~0.3 s (benchmarks/cli_startup.py). Green on a terminal, plain when piped, never
    # wrapped (rich wrapped a long catalog path at 80 columns when piped).
    typer.secho("ok", fg="green", nl=False)
    typer.echo(f" {catalog}: {len(c.courses)} courses, {n_pres} presentations, {n_members} roster rows")


def plan(
    catalog: Path = CatalogArg,
    at: str = AtOption,
    state: Path = typer.Option(
        None, "--state", help="Observed state as JSON (FleetState); default: the local fleet's state dir if any."
    ),
    state_dir: Path = StateDirOption,
    as_json: bool = typer.Option(False, "--json", help="Print {hubs, actions} as JSON."),
) -> None:
    """Show the hubs the catalog implies on a date and the actions needed to get there. Changes nothing.

    Example: hubfleet plan examples/university --at 2026-10-03
    """
    from hubfleet.plan import FleetState, OrphanError, diff, plan as make_plan
    from hubfleet.plan.diff import plan_json
    from hubfleet.plan.planner import environment_rows
    from hubfleet.plan.timetable import warmup_schedule

    loaded = load_or_exit(catalog)
    spec = make_plan(loaded.catalog, today(at))
    backend = None if state else observing_backend(loaded, state_dir)
    try:
        if backend is None:
            # --state given, or nothing runs yet (no state dir; no KUBECONFIG: planned against an empty cluster)
            observed = FleetState.model_validate_json(state.read_text()) if state else FleetState()
            actions = diff(spec, observed)
        else:
            actions = backend.plan(spec, backend.observe())  # read-only
    except OrphanError as exc:
        raise orphan_exit(exc) from None
    windows = warmup_schedule(loaded.catalog, dt.datetime.combine(spec.date, dt.time()), calendars=loaded.calendars)
    if as_json:
        import json

        doc = json.loads(plan_json(spec, actions))
        doc["warmup"] = [{k: v.isoformat() if isinstance(v, dt.datetime) else v for k, v in vars(w).items()}
                         for w in windows]  # fmt: skip
        print(json.dumps(doc, indent=2))
        return
    hubs = table("hub", "url", "presentations", "profiles", "students", whole=(0, 1))
    for hub in spec.hubs:
        hubs.add_row(
            hub.name,
            hub.url,
            ", ".join(f"{p.key} ({p.phase.value})" for p in hub.presentations),
            str(len(hub.profiles)),
            str(hub.expected_students),
        )
    show(hubs)
    runs_on = environment_rows(loaded.catalog, spec)  # images not pulled here: what each profile really runs on
    if runs_on:
        envs = table("hub", "profile", "runs on", title="Environments (local backend)", whole=(0, 1))
        for row in runs_on:
            envs.add_row(*row)
        show(envs)
    if windows:
        warm = table("hub", "session", "starts", "warm from", "until", "expected", "headroom", "placeholders",
                     "spawn limit", title=f"Warm-up schedule, 7 days from {spec.date}", whole=(0,))
        for w in windows:
            warm.add_row(w.hub, w.session, f"{w.session_start:%a %d %b %H:%M}", f"{w.warm_from:%H:%M}",
                         f"{w.warm_until:%H:%M}", str(w.expected), str(w.headroom_users), str(w.placeholders),
                         str(w.concurrent_spawn_limit))
        show(warm)
    print_plan(spec, actions)


def schema() -> None:
    """Print the catalog's JSON Schema, for editors (e.g. yaml-language-server).

    Example: hubfleet schema > catalog.schema.json
    """
    import json

    from hubfleet.catalog.model import Catalog

    with no_pydantic_plugins():
        doc = Catalog.model_json_schema()
    print(json.dumps(doc, indent=2))


def docs(out: Path = typer.Option(None, "--out", help="Write here instead of stdout.")) -> None:
    """Generate the catalog reference (docs/catalog.md) from the schema.

    Example: hubfleet docs --out docs/catalog.md
    """
    from hubfleet.catalog.docs import render_reference

    text = render_reference()
    if out:
        out.write_text(text)
    else:
        print(text, end="")


@topology_app.command("compare")
def topology_compare(
    catalog: Path = CatalogArg,
    start: str = cost_cmds.FromOption,
    end: str = cost_cmds.ToOption,
    model: Path = cost_cmds.ModelOption,
    prices: Path = cost_cmds.PricesOption,
    seed: int = cost_cmds.SeedOption,
) -> None:
    """One row per topology from a simulated year: hubs, largest hub's peak, cost with and without hibernation,
    spawn wait at class starts, cost per student-hour. `hubfleet simulate` has the full report.

    Example: hubfleet topology compare examples/university --from 2026-09-01
    """
    loaded = load_or_exit(catalog)
    usage, price_list = cost_cmds.inputs(model, prices)
    results = cost_cmds.run_simulation(loaded.catalog, cost_cmds.window_of(start, end), usage, price_list, seed,
                                       loaded.calendars)
    cost_cmds.print_topologies(results)
