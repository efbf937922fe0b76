"""Real cost beside predicted cost: rows, totals per course and unit, CSV and a small HTML page."""

from __future__ import annotations

import csv
import io
from collections import defaultdict

from jinja2 import Environment, StrictUndefined

from hubfleet.costs.opencost import RealCosts


def rows(real: RealCosts, predicted: dict[str, float]) -> list[dict]:
    return [{"presentation": p["key"], "course": p["course"], "unit": p["unit"], "students": p["students"],
             "direct": real.direct.get(p["key"], 0.0), "shared": real.shared_share.get(p["key"], 0.0),
             "real": real.total(p["key"]), "predicted": predicted.get(p["key"], 0.0)}
            for p in real.presentations]


def totals(rows: list[dict], level: str) -> dict[str, tuple[float, float]]:
    out: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in rows:
        out[r[level]][0] += r["real"]
        out[r[level]][1] += r["predicted"]
    return {k: (v[0], v[1]) for k, v in sorted(out.items())}


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["presentation", "course", "unit", "students", "own_namespaces", "shared_overhead", "real_total",
                "predicted"])
    for r in rows:
        w.writerow([r["presentation"], r["course"], r["unit"], r["students"], f"{r['direct']:.2f}",
                    f"{r['shared']:.2f}", f"{r['real']:.2f}", f"{r['predicted']:.2f}"])
    return buf.getvalue()


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{{ fleet }}: real cost</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}td:first-child,th:first-child{text-align:left}</style>
</head><body><h1>{{ fleet }}: real cost {{ real.start }} to {{ real.end }}</h1>
<p>From OpenCost, aggregated by hubfleet's namespace labels; the shared overhead
({{ '%.2f' % shared_total }}: {% for ns, c in real.shared_sources.items() %}{{ ns }} {{ '%.2f' % c }}{% if not loop.last %},
{% endif %}{% endfor %}) is split by <b>{{ sharing }}</b>. Predicted: the simulator, same window, catalog as written.</p>
{% for level, data in levels %}<h2>Per {{ level }}</h2><table><tr><th>{{ level }}</th><th>real</th><th>predicted</th></tr>
{% for k, v in data.items() %}<tr><td>{{ k }}</td><td>{{ '%.2f' % v[0] }}</td><td>{{ '%.2f' % v[1] }}</td></tr>
{% endfor %}</table>{% endfor %}
<h2>Per presentation</h2><table><tr><th>presentation</th><th>own namespaces</th><th>shared overhead</th>
<th>real total</th><th>predicted</th></tr>
{% for r in rows %}<tr><td>{{ r.presentation }}</td><td>{{ '%.2f' % r.direct }}</td><td>{{ '%.2f' % r.shared }}</td>
<td>{{ '%.2f' % r.real }}</td><td>{{ '%.2f' % r.predicted }}</td></tr>
{% endfor %}</table></body></html>
"""


def html(real: RealCosts, rows: list[dict], fleet: str, sharing: str) -> str:
    env = Environment(autoescape=True, undefined=StrictUndefined)
    return env.from_string(_PAGE).render(
        fleet=fleet, real=real, rows=rows, sharing=sharing, shared_total=sum(real.shared_sources.values()),
        levels=[("course", totals(rows, "course")), ("unit", totals(rows, "unit"))],
    )
