"""Real cost per presentation, course and unit from OpenCost's allocation API.

OpenCost knows namespaces, not courses. hubfleet labels every hub namespace (``hubfleet.io/hub``, and where
single-valued ``hubfleet.io/presentation``, ``hubfleet.io/course``, ``hubfleet.io/unit``; see
``plan.planner._labels``), so the query aggregates by namespace and reads each namespace's labels:

- a namespace labelled with a presentation is that presentation's cost;
- a hub namespace shared by several presentations (per-course, per-unit, central) is split over the
  presentations the catalog puts on that hub, by enrolled students (the simulator's split of an awake hub);
- everything else (namespaces without hubfleet labels such as kube-system or ingress, OpenCost's ``__idle__``
  and ``__unallocated__``, hub namespaces the catalog no longer names) is the shared platform overhead and is
  split by the same declared sharing rule the simulator uses (``results.share_out``).

# ref: https://opencost.io/docs/integrations/api (GET /allocation/compute: window, aggregate, accumulate, includeIdle)
# ref: https://opencost.io/docs/integrations/api-examples (response: {"code": 200, "data": [{name: allocation}]})
"""

from __future__ import annotations

import datetime as dt
import csv
import io
import re
from collections import defaultdict
from dataclasses import dataclass, field

import httpx
from jinja2 import Environment, StrictUndefined

from hubfleet.catalog.model import Catalog
from hubfleet.catalog.naming import dns_label, presentation_key
from hubfleet.plan import plan
from hubfleet.simulate import share_out

WINDOW = re.compile(
    r"^(\d+[mhdw]|today|yesterday|week|month|lastweek|lastmonth"
    r"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ,\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ|\d{9,11},\d{9,11})$"
)
# OpenCost reports Kubernetes label keys as Prometheus label names: `hubfleet.io/hub` -> `hubfleet_io_hub`.
LABEL_KEYS = {"hub": "hubfleet.io/hub", "presentation": "hubfleet.io/presentation"}
SPECIAL = ("__idle__", "__unallocated__")


class OpenCostError(Exception):
    """Something a person must fix (URL, window); the CLI prints it and exits 2."""


def check_window(window: str) -> str:
    if not WINDOW.match(window):
        raise OpenCostError(
            f"--window {window!r} is not an OpenCost window; write a duration (30d, 12h, 2w), a keyword (month, "
            "lastmonth) or an RFC3339 pair (2026-11-01T00:00:00Z,2026-12-01T00:00:00Z)"
        )
    return window


@dataclass
class Allocation:
    namespace: str
    labels: dict[str, str]
    total: float
    start: dt.datetime | None
    end: dt.datetime | None


def fetch(url: str, window: str, client: httpx.Client | None = None) -> list[Allocation]:
    """One accumulated allocation set for ``window``, aggregated by namespace, idle included."""
    check_window(window)
    params = {"window": window, "aggregate": "namespace", "accumulate": "true", "includeIdle": "true"}
    endpoint = url.rstrip("/") + "/allocation/compute"
    own = client is None
    client = client or httpx.Client(timeout=60)
    try:
        response = client.get(endpoint, params=params)
    except httpx.HTTPError as exc:
        raise OpenCostError(f"cannot reach OpenCost at {endpoint}: {exc}; check --opencost (e.g. kubectl -n "
                            "opencost port-forward deployment/opencost 9003, then http://localhost:9003)") from None
    finally:
        if own:
            client.close()
    try:
        body = response.json()
    except ValueError:
        raise OpenCostError(f"{endpoint} answered {response.status_code} with no JSON; is --opencost the OpenCost "
                            "API (port 9003), not its UI?") from None
    code = body.get("code", response.status_code) if isinstance(body, dict) else response.status_code
    if response.status_code != 200 or code != 200:
        message = body.get("message", "") if isinstance(body, dict) else ""
        raise OpenCostError(f"OpenCost refused window {window!r} ({code}): {message or response.text[:200]}")
    sets = body.get("data") if isinstance(body, dict) else None
    if not sets or not any(sets):
        raise OpenCostError(f"OpenCost has no allocation data for window {window!r}: the window is before OpenCost "
                            "started collecting or past its Prometheus retention; try a shorter --window")
    out = []
    for name, item in (sets[0] or {}).items():
        props = item.get("properties") or {}
        labels = {**(props.get("labels") or {}), **(props.get("namespaceLabels") or {})}
        win = item.get("window") or {}
        out.append(Allocation(namespace=props.get("namespace") or name, labels=labels,
                              total=float(item.get("totalCost") or 0.0),
                              start=_time(win.get("start") or item.get("start")),
                              end=_time(win.get("end") or item.get("end"))))
    return out


def _time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _label(labels: dict[str, str], key: str) -> str | None:
    full = LABEL_KEYS[key]
    return labels.get(full) or labels.get(re.sub(r"[^a-zA-Z0-9_]", "_", full))


@dataclass
class RealCosts:
    start: dt.date
    end: dt.date
    direct: dict[str, float]  # presentation key -> its namespaces' cost
    shared_share: dict[str, float]  # presentation key -> its part of the shared overhead
    shared_sources: dict[str, float] = field(default_factory=dict)  # namespace -> cost counted as shared
    presentations: list[dict] = field(default_factory=list)  # key, course, unit, students

    def total(self, key: str) -> float:
        return self.direct.get(key, 0.0) + self.shared_share.get(key, 0.0)

    @property
    def grand_total(self) -> float:
        return sum(self.direct.values()) + sum(self.shared_share.values())


def attribute(catalog: Catalog, allocations: list[Allocation], sharing: str) -> RealCosts:
    """Split the allocations over the catalog's presentations (as planned on the window's last day)."""
    ends = [a.end for a in allocations if a.end]
    starts = [a.start for a in allocations if a.start]
    end = max(ends).date() if ends else dt.date.today()
    start = min(starts).date() if starts else end
    spec = plan(catalog, max(end - dt.timedelta(days=1), start))
    by_dns = {}
    info = {}
    for course in catalog.courses:
        for pres in course.presentations:
            key = presentation_key(course.code, pres.id)
            by_dns[dns_label(key)] = key
            info[key] = {"key": key, "course": course.code, "unit": course.unit or "-",
                         "students": pres.expected_students}
    hubs = {h.name: [p.key for p in h.presentations] for h in spec.hubs}
    direct: dict[str, float] = defaultdict(float)
    shared: dict[str, float] = defaultdict(float)
    for a in allocations:
        pres_label, hub_label = _label(a.labels, "presentation"), _label(a.labels, "hub")
        if a.namespace not in SPECIAL and pres_label in by_dns:
            direct[by_dns[pres_label]] += a.total
        elif a.namespace not in SPECIAL and hub_label in hubs and hubs[hub_label]:
            members = hubs[hub_label]
            parts = share_out(a.total, [info[k]["students"] + 1e-9 for k in members])
            for k, part in zip(members, parts):
                direct[k] += float(part)
        else:
            shared[a.namespace] += a.total
    live = [p.key for h in spec.hubs for p in h.presentations]
    if not live:
        live = list(direct) or list(info)
    if sharing == "students":
        basis = [info[k]["students"] for k in live]
    elif sharing == "equal":
        basis = [1.0] * len(live)
    else:  # hub-hours: every hub is up all window; a shared hub's hours split by students, as in the simulator
        weight: dict[str, float] = {}
        for h in spec.hubs:
            members = [p.key for p in h.presentations]
            weight.update(zip(members, share_out(1.0, [info[k]["students"] for k in members])))
        basis = [weight.get(k, 0.0) for k in live]
    parts = share_out(sum(shared.values()), basis) if live else []
    shared_share = {k: float(p) for k, p in zip(live, parts)}
    keys = sorted(set(direct) | set(shared_share))
    return RealCosts(start=start, end=end, direct=dict(direct), shared_share=shared_share,
                     shared_sources=dict(sorted(shared.items())), presentations=[info[k] for k in keys])


# -- real beside predicted: rows, totals per course and unit, CSV and a small HTML page ---------------------------


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
