"""Timetable pre-warming on Kubernetes (FakeCluster + FakeHelm, which validates values against the z2jh 4.4.0
schema): when a warm-up window opens the plan updates that release with user placeholders and a raised spawn limit,
applied through the backend's helm upgrade; when it closes they go; in between a re-plan is empty."""

from __future__ import annotations

import datetime as dt

from test_k8s_backend import OPEN, PV, converge, spec_of, write_catalog  # the shared small catalog

from hubfleet.backends.kubernetes.backend import KubernetesBackend
from hubfleet.backends.kubernetes.fake import FakeCluster
from hubfleet.backends.kubernetes.helm import FakeHelm
from hubfleet.backends.kubernetes.validation import validate_chart_values
from hubfleet.plan.diff import Kind
from hubfleet.plan.timetable import WarmWindow


T = dt.datetime
WINDOW = WarmWindow(hub="tm351-2026j", presentation="TM351-2026J", session="tue 10:00",
                    session_start=T(2026, 11, 3, 10), warm_from=T(2026, 11, 3, 9, 54), warm_until=T(2026, 11, 3, 10, 10),
                    expected=150, headroom_users=75, placeholders=75, concurrent_spawn_limit=90)  # fmt: skip


def test_placeholders_are_created_for_the_window_and_removed_after_it(tmp_path):
    catalog = write_catalog(tmp_path / "catalog")
    cluster = FakeCluster(extra_kinds=[PV])
    helm = FakeHelm(cluster)
    backend = KubernetesBackend(cluster, helm, concurrency=2, catalog_root=catalog)
    spec = spec_of(catalog, OPEN)
    converge(backend, spec)
    assert backend.plan(spec, backend.observe()).actions == ()  # no window: nothing to warm

    backend.warm = lambda: {"tm351-2026j": WINDOW}
    opening = backend.plan(spec, backend.observe())
    assert [(a.kind, a.hub, a.reason) for a in opening.actions] == [
        (Kind.update, "tm351-2026j", "timetable: tue 10:00, placeholders 0 -> 75")]
    assert backend.apply(opening, spec).ok
    values = helm.get_values("tm351-2026j", "tm351-2026j")
    assert values["scheduling"]["userPlaceholder"] == {"enabled": True, "replicas": 75}
    assert values["hub"]["concurrentSpawnLimit"] == 90
    validate_chart_values(values)  # what helm got is valid for the chart
    assert helm.get_values("m269-2026j", "m269-2026j")["scheduling"]["userPlaceholder"] == {"enabled": False}
    assert backend.plan(spec, backend.observe()).actions == ()  # in the window: steady

    backend.warm = dict  # the arrival window is over
    closing = backend.plan(spec, backend.observe())
    assert [(a.hub, a.reason) for a in closing.actions] == [("tm351-2026j", "timetable: window over, placeholders 75 -> 0")]
    assert backend.apply(closing, spec).ok
    values = helm.get_values("tm351-2026j", "tm351-2026j")
    assert values["scheduling"]["userPlaceholder"] == {"enabled": False} and "concurrentSpawnLimit" not in values["hub"]
    assert backend.plan(spec, backend.observe()).actions == ()
