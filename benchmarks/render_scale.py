"""How long the Kubernetes renderers take for a large fleet: values + namespace manifests (+ YAML dump).

Builds an in-memory catalog of N one-presentation courses (two images, a seed step, an extra mount each),
plans it, and times ``render_values`` + ``render_manifests`` for every hub, then the YAML dump of the same.
Prints the best of 3 runs per size; no threshold is asserted anywhere.

    .venv/bin/python benchmarks/render_scale.py [--hubs 1000]

Hook for later: ``noop_plan_against_fake(hubs)`` is where "a no-op plan for 200 hubs against the fake
cluster" goes (apply once, re-plan, time the empty plan); it is left unimplemented here on purpose.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from hubfleet.backends.kubernetes.fleet import render_fleet
from hubfleet.backends.kubernetes.gitops import dump_yaml
from hubfleet.backends.kubernetes.manifests import render_manifests
from hubfleet.backends.kubernetes.values import render_values
from hubfleet.catalog.model import Catalog
from hubfleet.plan import plan

TODAY = dt.date(2026, 11, 1)


def catalog(hubs: int) -> Catalog:
    courses = [
        {
            "code": f"C{i:04d}",
            "title": f"Course {i}",
            "images": [
                {"name": "default", "image": f"ghcr.io/example/c{i % 40}:2026J"},
                {"name": "big", "image": "quay.io/jupyter/scipy-notebook:2026-11-24",
                 "resources": {"cpu": "2", "memory": "4G"}},
            ],
            "storage": {"extra_mounts": [{"name": "data", "path": "{course_dir}/data"}]},
            "presentations": [{"id": "2026J", "start": "2026-10-01", "end": "2027-06-01",
                               "expected_students": 300}],
        }
        for i in range(hubs)
    ]
    return Catalog.model_validate({
        "fleet": {"name": "bench", "backend": "kubernetes", "domain": "hubs.example.org",
                  "kubernetes": {"personal_store": {"server": "10.0.0.5"}},
                  "auth": {"type": "oidc", "issuer": "https://login.example.org"}, "platform_team": ["admin"]},
        "courses": courses,
    })


def render_all(spec) -> int:
    n = len(render_fleet(spec))
    for hub in spec.hubs:
        render_values(hub, spec)
        n += len(render_manifests(hub, spec))
    return n


def dump_all(spec) -> int:
    return sum(len(dump_yaml(render_values(hub, spec))) + len(dump_yaml(render_manifests(hub, spec)))
               for hub in spec.hubs)


def noop_plan_against_fake(hubs: int) -> float:  # pragma: no cover - filled in with the fake cluster
    raise NotImplementedError("no-op plan against backends.kubernetes.fake: to be added with the apply step")


def best_of(fn, *args, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hubs", type=int, nargs="*", default=[100, 1_000])
    args = parser.parse_args()
    for n in args.hubs:
        spec = plan(catalog(n), TODAY)
        assert len(spec.hubs) == n
        objects = render_all(spec)
        render = best_of(render_all, spec)
        dump = best_of(dump_all, spec, runs=1)
        print(f"{n:>6} hubs: render values+manifests {render:6.2f} s ({objects} objects, "
              f"{render / n * 1000:.2f} ms/hub); render+YAML dump {dump:6.2f} s")


if __name__ == "__main__":
    main()
