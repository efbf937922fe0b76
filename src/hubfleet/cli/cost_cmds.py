"""simulate and cost: what a year of the catalog will cost, and what the cluster really cost (OpenCost)."""

# No `from __future__ import annotations`: typer evaluates every command's annotations on every run (cli/common.py).

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

from typing import TYPE_CHECKING

import typer

from hubfleet.cli.common import CatalogArg, console, err_console, load_or_exit, show, table

if TYPE_CHECKING:  # the simulator (numpy) and the catalog models load when a command runs, not at CLI start-up
    from hubfleet.catalog.model import Catalog
    from hubfleet.simulate import Results, Window
    from hubfleet.simulate.model import Prices, UsageModel

FromOption = typer.Option(None, "--from", help="First day (YYYY-MM-DD); default 1 September of this academic year.")
ToOption = typer.Option(None, "--to", help="Day after the last (YYYY-MM-DD); default a year after --from.")
ModelOption = typer.Option(None, "--model", help="Usage model file (YAML); default: the documented defaults.")
PricesOption = typer.Option(None, "--prices", help="Prices file (YAML); default: illustrative cloud list prices.")
SeedOption = typer.Option(0, "--seed", help="Random seed; the same seed gives the same year.")


def _date(text: str, flag: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        err_console.print(f"[red]{flag} {text!r} is not a date; write YYYY-MM-DD[/]")
        raise typer.Exit(2) from None


def window_of(start: str | None, end: str | None, today: dt.date | None = None) -> "Window":
    from hubfleet.simulate import Window

    today = today or dt.date.today()
    first = _date(start, "--from") if start else dt.date(today.year if today.month >= 9 else today.year - 1, 9, 1)
    last = _date(end, "--to") if end else dt.date(first.year + 1, first.month, min(first.day, 28 if first.month == 2
                                                                                else 31))
    if last <= first:
        err_console.print(f"[red]--to {last} is not after --from {first}; give a later --to[/]")
        raise typer.Exit(2)
    return Window(first, last)


def inputs(model: Path | None, prices: Path | None) -> tuple["UsageModel", "Prices"]:
    from hubfleet.catalog import CatalogError
    from hubfleet.costs.files import load_model, load_prices

    try:
        return load_model(model), load_prices(prices)
    except CatalogError as exc:
        for problem in exc.problems:
            err_console.print(str(problem), markup=False, highlight=False, soft_wrap=True)
        err_console.print(f"[red]{exc.count} error(s); nothing was written.[/]")
        raise typer.Exit(2) from None


def run_simulation(catalog: "Catalog", window: "Window", model: "UsageModel", prices: "Prices", seed: int,
                   calendars: Mapping[str, str] | None = None) -> "Results":
    """The simulation with a progress bar (on stderr, so piped output stays clean)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hubfleet.simulate import simulate_catalog, steps

    with Progress(TextColumn("simulating {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task(f"{catalog.fleet.name} {window.start}..{window.end}", total=steps(catalog, window, model))
        try:
            return simulate_catalog(catalog, window, model, prices, seed, progress=lambda n: bar.advance(task, n),
                                    calendars=calendars)
        except ValueError as exc:  # e.g. a profile larger than the node type: the prices file must change
            err_console.print(f"[red]{exc}[/]")
            raise typer.Exit(2) from None


def write_outputs(results: "Results", out: Path) -> list[Path]:
    from hubfleet.simulate import report  # matplotlib: only when a report is written

    out.mkdir(parents=True, exist_ok=True)
    images = report.plots(results)
    files = {"report.html": report.html(results, images), "results.json": results.to_json(),
             "scenarios.csv": results.scenarios_csv(), "costs.csv": results.costs_csv()}
    written = []
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    for name, data in images.items():
        (out / name).write_bytes(data)
        written.append(out / name)
    return written


def print_scenarios(results: "Results") -> None:
    rows = table("topology", "hib.", "pre.", "hubs", "user node-h", "peak", "hub peak", "wait p50/p95 s", "total",
                  "per student-h", "idle+ovh", title=f"{results.fleet}: {results.start} to {results.end} "
                  f"({results.currency})")
    base, best = results.baseline(), results.cheapest()
    for s in results.scenarios:
        style = "bold" if s is base else ("green" if s is best else None)
        rows.add_row(s.topology, "on" if s.hibernation else "off", "on" if s.prewarm else "off", str(s.hubs), f"{s.user_node_hours:,.0f}", str(s.peak_users), str(s.peak_hub_users),
                      f"{s.wait_p50_s:.0f}/{s.wait_p95_s:.0f}", f"{s.total:,.0f}", f"{s.cost_per_student_hour:.3f}",
                      f"{s.idle_overhead_share:.0%}", style=style)
    show(rows)
    console.print(f"As written: [bold]{base.name}[/], {base.total:,.0f} {results.currency}. "
                  f"Cheapest: [green]{best.name}[/], {best.total:,.0f} {results.currency}.")


def print_topologies(results: "Results") -> None:
    """The topology comparison: one row per topology, read off the simulation's scenarios."""
    by_topology: dict[str, dict] = {}
    for s in results.scenarios:
        by_topology.setdefault(s.topology, {})[(s.hibernation, s.prewarm)] = s
    c = results.currency
    rows = table("topology", "hubs", "largest hub peak", f"cost, always on ({c})", f"cost, hibernating ({c})",
                  "wait p95 s (no pre-warm / pre-warm)", "per student-h", "idle+ovh",
                  title=f"Topologies for {results.fleet}, {results.start} to {results.end} (simulated)")
    best = results.cheapest()
    for topology, by in by_topology.items():
        on, hib = by.get((False, False)), by.get((True, False))
        warm = by.get((False, True))
        base = on or next(iter(by.values()))
        rows.add_row(
            topology + (" (catalog)" if topology == results.catalog_topology else ""), str(base.hubs),
            str(base.peak_hub_users), f"{on.total:,.0f}" if on else "-", f"{hib.total:,.0f}" if hib else "-",
            f"{base.wait_p95_s:.0f} / {warm.wait_p95_s:.0f}" if warm else f"{base.wait_p95_s:.0f}",
            f"{base.cost_per_student_hour:.3f}", f"{base.idle_overhead_share:.0%}",
            style="green" if topology == best.topology else None,
        )
    show(rows)
    console.print(f"Cheapest: [green]{best.name}[/], {best.total:,.0f} {c}.")


def simulate(
    catalog: Path = CatalogArg,
    start: str = FromOption,
    end: str = ToOption,
    model: Path = ModelOption,
    prices: Path = PricesOption,
    seed: int = SeedOption,
    out: Path = typer.Option(..., "--out", help="Directory for report.html, results.json, CSVs and plots."),
) -> None:
    """Simulate a year of the catalog in every topology: node-hours, peaks, spawn waits, cost per course.

    Example: hubfleet simulate examples/university --from 2026-09-01 --to 2027-09-01 --out sim/
    """
    loaded = load_or_exit(catalog)
    window = window_of(start, end)
    usage, price_list = inputs(model, prices)
    results = run_simulation(loaded.catalog, window, usage, price_list, seed, loaded.calendars)
    print_scenarios(results)
    for path in write_outputs(results, out):
        console.print(f"wrote {path}", highlight=False)


def _predicted(catalog: "Catalog", start: dt.date, end: dt.date, model: "UsageModel", prices: "Prices", seed: int):
    """The simulator's cost per presentation for the same window, as the catalog is written."""
    from hubfleet.simulate import Window

    as_written = model.model_copy(update={"scenarios": model.scenarios.model_copy(update={
        "topologies": [catalog.fleet.topology], "hibernation": [False], "prewarm": [False]})})
    results = run_simulation(catalog, Window(start, max(end, start + dt.timedelta(days=1))), as_written, prices, seed)
    return results.baseline().per_presentation


def cost(
    catalog: Path = CatalogArg,
    opencost: str = typer.Option(..., "--opencost", help="OpenCost API URL, e.g. http://localhost:9003"),
    window: str = typer.Option("30d", "--window", help="OpenCost window: 30d, 12h, lastmonth, or an RFC3339 pair."),
    model: Path = ModelOption,
    prices: Path = PricesOption,
    seed: int = SeedOption,
    out: Path = typer.Option(None, "--out", help="Also write cost.csv and cost.html here."),
) -> None:
    """Real cost per presentation, course and unit from OpenCost, with the simulator's prediction beside it.

    Example: hubfleet cost examples/university --opencost http://localhost:9003 --window 30d --out cost/
    """
    from hubfleet.costs import opencost as oc

    loaded = load_or_exit(catalog)
    usage, price_list = inputs(model, prices)
    try:
        real = oc.attribute(loaded.catalog, oc.fetch(opencost, window), usage.platform.sharing)
    except oc.OpenCostError as exc:
        err_console.print(f"[red]{exc}[/]", highlight=False)
        raise typer.Exit(2) from None
    predicted = _predicted(loaded.catalog, real.start, real.end, usage, price_list, seed)
    rows = oc.rows(real, predicted)
    found = table("presentation", "course", "unit", "own namespaces", "shared overhead", "real total", "predicted",
                  title=f"{loaded.catalog.fleet.name}: OpenCost {real.start} to {real.end} "
                  f"(overhead shared by {usage.platform.sharing})")
    for r in rows:
        found.add_row(r["presentation"], r["course"], r["unit"], f"{r['direct']:,.2f}", f"{r['shared']:,.2f}",
                      f"{r['real']:,.2f}", f"{r['predicted']:,.2f}")
    show(found)
    for level in ("course", "unit"):
        t = table(level, "real", "predicted")
        for name, (real_cost, pred) in oc.totals(rows, level).items():
            t.add_row(name, f"{real_cost:,.2f}", f"{pred:,.2f}")
        show(t)
    if real.shared_sources:
        console.print("Shared overhead from: " + ", ".join(f"{ns} {c:,.2f}" for ns, c in real.shared_sources.items()),
                      highlight=False)
    console.print(f"Total: real {real.grand_total:,.2f}, predicted {sum(r['predicted'] for r in rows):,.2f}")
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / "cost.csv").write_text(oc.csv_text(rows), encoding="utf-8")
        (out / "cost.html").write_text(oc.html(real, rows, loaded.catalog.fleet.name, usage.platform.sharing),
                                       encoding="utf-8")
        console.print(f"wrote {out / 'cost.csv'} and {out / 'cost.html'}", highlight=False)
