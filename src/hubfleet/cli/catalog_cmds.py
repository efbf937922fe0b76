"""Commands over the catalog alone: validate, plan, schema, docs, topology compare."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from hubfleet.cli.backend_factory import StateDirOption, observing_backend
from hubfleet.cli.common import AtOption, CatalogArg, console, load_or_exit, orphan_exit, print_plan, show, table, today

topology_app = typer.Typer(help="Compare ways of grouping presentations into hubs.", no_args_is_help=True)


def validate(catalog: Path = CatalogArg) -> None:
    """Check a catalog strictly; exit 0, or exit 2 listing every error as FILE:LINE:COL.

    Example: hubfleet validate examples/university
    """
    loaded = load_or_exit(catalog)
    c = loaded.catalog
    n_pres = sum(len(course.presentations) for course in c.courses)
    n_members = sum(len(r) for r in loaded.rosters.values())
    console.print(f"[green]ok[/] {catalog}: {len(c.courses)} courses, {n_pres} presentations, {n_members} roster rows")


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
    if as_json:
        print(plan_json(spec, actions))
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
    print_plan(spec, actions)


def schema() -> None:
    """Print the catalog's JSON Schema, for editors (e.g. yaml-language-server).

    Example: hubfleet schema > catalog.schema.json
    """
    from hubfleet.catalog.model import Catalog

    print(json.dumps(Catalog.model_json_schema(), indent=2))


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
def topology_compare(catalog: Path = CatalogArg, at: str = AtOption) -> None:
    """One row per topology: hubs, largest hub, profiles per hub, shared presentations, images per hub.

    Example: hubfleet topology compare examples/university --at 2026-11-01
    """
    from hubfleet.plan.planner import compare

    loaded = load_or_exit(catalog)
    rows = table(
        "topology", "hubs", "largest hub (students)", "profiles/hub max", "profiles/hub mean",
        "presentations sharing a hub", "images/hub max", "images/hub mean",
        title=f"Topologies for {loaded.catalog.fleet.name}",
    )
    for row in compare(loaded.catalog, today(at)):
        rows.add_row(
            row.topology, str(row.hubs), f"{row.largest_hub} ({row.largest_hub_students})", str(row.profiles_max),
            str(row.profiles_mean), str(row.shared_presentations), str(row.images_max), str(row.images_mean),
        )
    show(rows)
