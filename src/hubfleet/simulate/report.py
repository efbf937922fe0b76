"""The simulation as a self-contained HTML page (plots inline as PNG data URIs, rendered with Jinja) and as
separate PNG plots. Builds bytes and text only; the CLI writes them.

Plots are deterministic for a given result: no timestamps in the PNG metadata, fixed figure sizes and fonts.
"""

from __future__ import annotations

import base64
import datetime as dt
import io

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
from jinja2 import Environment, StrictUndefined  # noqa: E402

from hubfleet.simulate.results import Results, ScenarioResult  # noqa: E402

COLOURS = {"user_pods": "#0b4f8a", "idle_capacity": "#7fa7cc", "hub_overhead": "#e08a1e",
           "shared_platform": "#b03a2e", "storage": "#6b8e23"}
LABELS = {"user_pods": "servers' requests", "idle_capacity": "idle node capacity", "hub_overhead": "hub pods",
          "shared_platform": "shared platform", "storage": "storage"}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def weekly_plot(r: Results) -> bytes:
    fig, ax = plt.subplots(figsize=(9, 3.2))
    weeks = [r.start + dt.timedelta(weeks=i) for i in range(len(r.weekly_peak_users))]
    ax.step(weeks, r.weekly_peak_users, where="post", color=COLOURS["user_pods"])
    ax.set_ylabel("peak concurrent servers")
    ax.set_title("Weekly peak of concurrent student servers")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    return _png(fig)


def course_plot(r: Results, s: ScenarioResult) -> bytes:
    costs = r.by(s, "course")
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(costs) + 1.2))
    names = list(costs)[::-1]
    ax.barh(names, [costs[n] for n in names], color=COLOURS["user_pods"])
    ax.set_xlabel(f"cost over the window ({r.currency})")
    ax.set_title(f"Cost per course: {s.name}")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def topology_plot(r: Results) -> bytes:
    rows = r.scenarios[::-1]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(rows) + 1.2))
    ax.barh([s.name for s in rows], [s.total for s in rows],
            color=["#b03a2e" if s is r.cheapest() else "#0b4f8a" for s in rows])
    ax.set_xlabel(f"total cost ({r.currency}); cheapest in red")
    ax.set_title("Topology comparison")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def overhead_plot(r: Results) -> bytes:
    rows = [s for s in r.scenarios if not s.prewarm]
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(rows) + 1.4))
    left = [0.0] * len(rows)
    for part in COLOURS:
        vals = [getattr(s.breakdown, part) for s in rows]
        ax.barh([s.name.removesuffix(", pre-warming off") for s in rows], vals, left=left, color=COLOURS[part],
                label=LABELS[part])
        left = [a + b for a, b in zip(left, vals)]
    ax.set_xlabel(f"cost ({r.currency})")
    ax.set_title("Where the money goes (without pre-warming)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1 - 1.0 / (len(rows) + 3)), ncol=5, fontsize="small")
    ax.invert_yaxis()
    return _png(fig)


def plots(r: Results) -> dict[str, bytes]:
    return {"weekly-concurrency.png": weekly_plot(r), "cost-per-course.png": course_plot(r, r.baseline()),
            "topologies.png": topology_plot(r), "overhead.png": overhead_plot(r)}


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>hubfleet simulation: {{ r.fleet }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.best { background: #fde8e4; } tr.base { font-weight: bold; }
img { max-width: 100%; }
</style></head><body>
<h1>{{ r.fleet }}: a simulated year, {{ r.start }} to {{ r.end }}</h1>
<p>Seed {{ r.seed }}. Prices in {{ r.currency }}. Shared overhead split by <b>{{ r.sharing }}</b>.
The catalog as written ({{ base.name }}) costs <b>{{ money(base.total) }}</b>;
the cheapest scenario is <b>{{ best.name }}</b> at <b>{{ money(best.total) }}</b>.</p>
<h2>Scenarios</h2>
<table><tr><th>scenario</th><th>hubs</th><th>user node-hours</th><th>core node-hours</th><th>peak servers</th>
<th>largest hub peak</th><th>wait p50 (s)</th><th>wait p95 (s)</th><th>total</th><th>per student-hour</th>
<th>idle + overhead share</th></tr>
{% for s in r.scenarios %}<tr class="{{ 'best' if s.name == best.name else '' }} {{ 'base' if s.name == base.name else '' }}">
<td>{{ s.name }}</td><td>{{ s.hubs }}</td><td>{{ '%.0f' % s.user_node_hours }}</td>
<td>{{ '%.0f' % s.core_node_hours }}</td><td>{{ s.peak_users }}</td><td>{{ s.peak_hub_users }}</td>
<td>{{ '%.0f' % s.wait_p50_s }}</td><td>{{ '%.0f' % s.wait_p95_s }}</td><td>{{ money(s.total) }}</td>
<td>{{ '%.3f' % s.cost_per_student_hour }}</td><td>{{ '%.0f%%' % (100 * s.idle_overhead_share) }}</td></tr>
{% endfor %}</table>
<p>Waits are at class starts, from asking for a server to its spawn beginning (a hub waking, a node being added,
the hub's concurrent spawn limit). The idle + overhead share is the part of compute cost that no server's request
used: idle node capacity, hub pods and the shared platform.</p>
{% for name, title in figures %}<h2>{{ title }}</h2><img alt="{{ title }}" src="data:image/png;base64,{{ images[name] }}">
{% endfor %}
<h2>Cost per course and unit ({{ base.name }})</h2>
<table><tr><th>course</th><th>cost</th></tr>
{% for k, v in r.by(base, 'course').items() %}<tr><td>{{ k }}</td><td>{{ money(v) }}</td></tr>{% endfor %}
</table>
<table><tr><th>unit</th><th>cost</th></tr>
{% for k, v in r.by(base, 'unit').items() %}<tr><td>{{ k }}</td><td>{{ money(v) }}</td></tr>{% endfor %}
</table>
<h2>Cost per presentation ({{ base.name }})</h2>
<table><tr><th>presentation</th><th>students</th><th>cost</th><th>per student</th></tr>
{% for p in r.presentations %}{% set c = base.per_presentation[p.key] %}<tr><td>{{ p.key }}</td>
<td>{{ p.students }}</td><td>{{ money(c) }}</td><td>{{ money(c / p.students) if p.students else '-' }}</td></tr>
{% endfor %}</table>
</body></html>
"""

FIGURES = [("weekly-concurrency.png", "Weekly concurrency"), ("cost-per-course.png", "Cost per course"),
           ("topologies.png", "Topology comparison"), ("overhead.png", "Overhead breakdown")]


def html(r: Results, images: dict[str, bytes] | None = None) -> str:
    images = images if images is not None else plots(r)
    env = Environment(autoescape=True, undefined=StrictUndefined)
    return env.from_string(_TEMPLATE).render(
        r=r, base=r.baseline(), best=r.cheapest(), figures=FIGURES,
        images={k: base64.b64encode(v).decode() for k, v in images.items()},
        money=lambda x: f"{x:,.0f}",
    )
