"""How long a no-op `plan` / re-apply takes for a large fleet on the kubernetes backend, against the fakes.

Applies N hubs once to a FakeCluster + FakeHelm (untimed), then times, best of 3:

- observe:   list hub namespaces, applied-spec records, archive markers, student claims; helm status per hub
- plan:      catalog -> FleetSpec (pure planner)
- diff:      FleetSpec x FleetState -> Plan (must be empty)
- converge:  an `update` of every hub with an unchanged spec: render manifests + values, compare each object
             with the live one and the values with `helm get values`; must write nothing and call no helm write

The fakes answer from memory, so this measures hubfleet's own work, not API server or helm latency (a real
`helm status` is a ~100 ms subprocess; observe runs them `--concurrency` at a time). Also runs the renderer
benchmark (benchmarks/render_scale.py) for the same sizes when it is there. No threshold is asserted.

    .venv/bin/python benchmarks/k8s_plan.py [--hubs 200 500] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import sys
import time
from pathlib import Path

from hubfleet.backends.kubernetes.backend import KubernetesBackend
from hubfleet.backends.kubernetes.cluster import KindInfo
from hubfleet.backends.kubernetes.fake import FakeCluster
from hubfleet.backends.kubernetes.helm import FakeHelm
from hubfleet.catalog.model import Catalog
from hubfleet.plan import Plan, diff, plan
from hubfleet.plan.diff import Action, Kind

TODAY = dt.date(2026, 11, 1)
HERE = Path(__file__).resolve().parent


def render_scale():
    """helper module benchmarks/render_scale.py (the renderers' own benchmark), or None."""
    path = HERE / "render_scale.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("render_scale", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def catalog(hubs: int) -> Catalog:
    """One-presentation courses alternating the three storage layouts, embedded auth (Secrets minted by apply)."""
    layouts = ("per-presentation", "personal-subfolder", "ephemeral")
    courses = [
        {
            "code": f"C{i:04d}",
            "title": f"Course {i}",
            "images": [{"name": "default", "image": f"ghcr.io/example/c{i % 40}:2026J"}],
            "storage": {"layout": layouts[i % 3]},
            "presentations": [{"id": "2026J", "start": "2026-10-01", "end": "2027-06-01", "expected_students": 300}],
        }
        for i in range(hubs)
    ]
    return Catalog.model_validate({
        "fleet": {"name": "bench", "backend": "kubernetes", "domain": "hubs.example.org", "platform_team": ["admin"],
                  "kubernetes": {"personal_store": {"server": "10.0.0.5"}}},
        "courses": courses,
    })


def best_of(fn, runs: int = 3) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def noop_plan_against_fake(hubs: int, concurrency: int = 4, validate: bool = False) -> dict[str, float]:
    """Seconds per step of a no-op plan for `hubs` hubs (see the module docstring).

    `validate=False` skips the fake's kubernetes-validate check on writes: it only slows the untimed setup.
    """
    cat = catalog(hubs)
    cluster = FakeCluster(extra_kinds=[KindInfo("v1", "PersistentVolume", "persistentvolumes", False)],
                          validate=validate)
    helm = FakeHelm(cluster, validate_values=validate)
    backend = KubernetesBackend(cluster, helm, concurrency=concurrency)
    spec = plan(cat, TODAY)
    t0 = time.perf_counter()
    report = backend.apply(diff(spec, backend.observe()), spec)
    setup = time.perf_counter() - t0
    if not report.ok:
        raise SystemExit(f"setup apply failed: {report.failures[0].message}")
    cluster.reset_counters()
    helm.counts.clear()

    t_observe, state = best_of(backend.observe)
    t_plan, spec = best_of(lambda: plan(cat, TODAY))
    t_diff, result = best_of(lambda: diff(spec, state))
    if result != Plan():
        raise SystemExit(f"expected an empty plan, got {len(result.actions)} actions")
    forced = Plan(actions=tuple(Action(kind=Kind.update, hub=h.name) for h in spec.hubs))
    t_converge, report = best_of(lambda: backend.apply(forced, spec))
    if not report.ok or cluster.write_count or helm.write_count:
        raise SystemExit(f"no-op converge wrote: cluster {dict(cluster.writes)}, helm {dict(helm.counts)}")
    return {"setup": setup, "observe": t_observe, "plan": t_plan, "diff": t_diff, "converge": t_converge}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hubs", type=int, nargs="*", default=[200])
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    for n in args.hubs:
        t = noop_plan_against_fake(n, args.concurrency)
        noop = t["observe"] + t["plan"] + t["diff"]
        print(f"{n:>5} hubs: no-op plan {noop:6.2f} s (observe {t['observe']:.2f}, plan {t['plan']:.2f}, "
              f"diff {t['diff']:.3f}); forced no-op converge of every hub {t['converge']:6.2f} s "
              f"({t['converge'] / n * 1000:.1f} ms/hub, 0 writes); first apply {t['setup']:.2f} s")
    module = render_scale()
    if module is not None and hasattr(module, "render_all"):
        for n in args.hubs:
            spec = plan(module.catalog(n), module.TODAY)
            seconds = module.best_of(module.render_all, spec)
            print(f"{n:>5} hubs: render values+manifests {seconds:6.2f} s (benchmarks/render_scale.py)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
