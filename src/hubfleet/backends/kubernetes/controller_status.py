"""What the controller tells `hubfleet status`: who holds its Lease, and the problems of the leader's latest step.

The leader writes the ConfigMap ``hubfleet-controller-status`` in the fleet namespace (only when its content
changes); `status` reads it and the Lease through the backend's ``writer_lock().holder()``.
"""

from __future__ import annotations

import json

from hubfleet.backends.reconcile import StepReport

from .cluster import Cluster, NotFound
from .fleet import MANAGED_BY
from .lease import API_VERSION, NAME as LEASE_NAME

STATUS_DOCUMENT = "hubfleet-controller-status"


def write_status(cluster: Cluster, namespace: str, holder: str, report: StepReport, catalog_problems: list[str]) -> bool:
    """The leader's last word for `hubfleet status`: the problems of its latest step (catalog errors, refused
    plans, failed actions) and the hubs waiting out a backoff. Written only when that changes (a quiet fleet costs
    no write per step). Only the leader calls it (``Reconciler.standing_by is None``)."""
    problems = [*dict.fromkeys([*catalog_problems, *report.errors]), *(f"{r.action.hub} {r.action.kind.value}: {r.message}" for r in report.results if not r.ok)]
    data = {"holder": holder, "problems": json.dumps(problems), "deferred": json.dumps(sorted(set(report.deferred)))}
    return cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "data": data,
                          "metadata": {"name": STATUS_DOCUMENT, "namespace": namespace, "labels": dict(MANAGED_BY)}})


def read_status(cluster: Cluster, namespace: str) -> list[str]:
    """What `hubfleet status` says about the controller: who holds the Lease, and its latest problems (nothing
    when no controller runs and none left a problem)."""
    try:
        lease = cluster.get(API_VERSION, "Lease", namespace, LEASE_NAME).get("spec") or {}
    except NotFound:
        return []
    holder = lease.get("holderIdentity")
    lines = [f"controller {holder}, Lease renewed {lease.get('renewTime')}"] if holder else []
    try:
        data = cluster.get("v1", "ConfigMap", namespace, STATUS_DOCUMENT).get("data") or {}
    except NotFound:
        return lines
    lines += [f"controller problem: {p}" for p in json.loads(data.get("problems") or "[]")]
    deferred = json.loads(data.get("deferred") or "[]")
    if deferred:
        lines.append(f"controller backing off: {', '.join(deferred)}")
    return lines
