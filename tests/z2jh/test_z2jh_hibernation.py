"""Hibernation on Kubernetes, on the chart tier: real `helm template` objects of a z2jh 4.4.0 release in the fake
API server; hibernating scales the chart's own hub and proxy Deployments to 0 through the API (the release, the
hub's database claim, its Secret and everything else stay), the backend observes `hibernated` (so nothing plans a
start), the process kubelet starts no hub pod for it, and waking scales them back to 1."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from hubfleet.backends.kubernetes.hibernation import ANNOTATION
from hubfleet.plan import diff
from hubfleet.testing.chart import ChartCluster

AT = dt.date(2026, 11, 1)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "university"
HUB = "m269-2026j"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory):
    with ChartCluster(EXAMPLE, tmp_path_factory.mktemp("z2jh-sleep")) as cc:
        cc.apply(AT)
        yield cc


def _objects(chart: ChartCluster) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for kind in (("v1", "Secret"), ("v1", "PersistentVolumeClaim"),
            ("v1", "ConfigMap"), ("v1", "Service")) for o in chart.cluster.list(*kind, HUB)}  # fmt: skip


def test_hibernate_scales_hub_and_proxy_to_zero_and_wake_brings_them_back(chart: ChartCluster) -> None:
    backend = chart.backend
    replicas = lambda: {d["metadata"]["name"]: d["spec"]["replicas"]  # noqa: E731
                        for d in chart.cluster.list("apps/v1", "Deployment", HUB)}
    assert {"hub": 1, "proxy": 1}.items() <= replicas().items()
    kept = _objects(chart)
    assert ("PersistentVolumeClaim", "hub-db-dir") in kept and ("Secret", "hub") in kept
    assert backend.hibernate(HUB) == ["hub", "proxy"]
    assert {"hub": 0, "proxy": 0}.items() <= replicas().items()
    assert _objects(chart) == kept  # release, database claim, secrets: all still there
    assert chart.helm.status(HUB, HUB).deployed
    seen = backend.observe().hubs[HUB]
    assert (seen.running, seen.hibernated) == (False, True)
    assert [a for a in diff(chart.spec, backend.observe()).actions if a.hub == HUB] == []  # not down: no start
    [row] = [r for r in backend.status(chart.spec, query_api=False) if r.name == HUB]
    assert (row.up, row.hibernated) == (False, True)
    assert backend.hibernate(HUB) == []  # idempotent: nothing written twice
    assert chart.kubelet.start_deployments(HUB) == []  # no hub or proxy pod for a hibernated release
    assert backend.wake(HUB) == ["hub", "proxy"]
    assert {"hub": 1, "proxy": 1}.items() <= replicas().items()
    hub = chart.cluster.get("apps/v1", "Deployment", HUB, "hub")
    assert ANNOTATION not in (hub["metadata"].get("annotations") or {})
    assert backend.observe().hubs[HUB].hibernated is False
