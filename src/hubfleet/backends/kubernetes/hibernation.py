"""Hibernation of a z2jh release: its ``hub`` and ``proxy`` Deployments scaled to 0 replicas, and back to 1.

What stays: the Helm release, the hub's database claim (``hub-db-dir``), its Secrets, every student's claim and
the namespace's other objects; only the two Deployments change, so a woken hub is the same hub with the same
database. The change is rendered here as whole objects (``scaled``, a pure builder: a Deployment in, the scaled
Deployment out, with ``hubfleet.io/hibernated`` saying since when) and written through the backend's ``Cluster``
with ``replace`` (optimistic concurrency on the live resourceVersion), never by a subprocess.

A ``helm upgrade`` of the release (an ``update`` action) renders ``replicas: 1`` again and so wakes it, as an
update wakes a local hub: the change is applied to a running hub, which sleeps again once idle. A Deployment that
carries the annotation but runs replicas (helm put them back) counts as awake.
"""

from __future__ import annotations

import copy
import datetime as dt

from hubfleet.backends.kubernetes.cluster import Cluster, Conflict, NotFound

__all__ = ["ANNOTATION", "DEPLOYMENTS", "finish_wake", "hibernate", "is_hibernated", "ready_replicas", "scaled", "wake"]

ANNOTATION = "hubfleet.io/hibernated"
# z2jh 4.4.0's Deployments that make a hub: JupyterHub and its configurable-http-proxy. The user scheduler and
# image pullers are fleet-level here (values.py), students' pods are KubeSpawner's and are never touched.
DEPLOYMENTS = ("hub", "proxy")
ATTEMPTS = 5  # optimistic-concurrency retries of one scale


def scaled(deployment: dict, replicas: int, since: dt.datetime | None) -> dict:
    """``deployment`` with ``replicas`` and the hibernation annotation set (``since``) or removed (None)."""
    out = copy.deepcopy(deployment)
    out["spec"]["replicas"] = replicas
    annotations = out["metadata"].setdefault("annotations", {})
    if since is None:
        annotations.pop(ANNOTATION, None)
    else:
        annotations[ANNOTATION] = since.astimezone(dt.timezone.utc).isoformat(timespec="seconds")
    return out


def _scale(cluster: Cluster, namespace: str, replicas: int, since: dt.datetime | None,
           names: tuple[str, ...] = DEPLOYMENTS, only_marked: bool = False) -> list[str]:
    changed = []
    for name in names:
        for attempt in range(ATTEMPTS):
            live = cluster.get("apps/v1", "Deployment", namespace, name)
            marked = ANNOTATION in (live["metadata"].get("annotations") or {})
            if (since is not None and live["spec"].get("replicas") == 0 and marked) or (only_marked and not marked):
                break  # asleep already, since then (or not ours to wake): nothing to write
            wanted = scaled(live, replicas, since)
            if wanted == live:
                break
            try:
                cluster.replace(wanted)
            except Conflict:  # the Deployment controller wrote its status meanwhile: read again
                if attempt == ATTEMPTS - 1:
                    raise
                continue
            changed.append(name)
            break
    return changed


def hibernate(cluster: Cluster, namespace: str, now: dt.datetime | None = None) -> list[str]:
    """Scale the hub's Deployments to 0; returns the ones changed."""
    return _scale(cluster, namespace, 0, now or dt.datetime.now(dt.timezone.utc))


def wake(cluster: Cluster, namespace: str, names: tuple[str, ...] = DEPLOYMENTS) -> list[str]:
    """Scale them (or ``names`` of them) back to 1 (z2jh runs one hub and one proxy); returns the ones changed."""
    return _scale(cluster, namespace, 1, None, names)


def finish_wake(cluster: Cluster, namespace: str) -> list[str]:
    """Scale up what a wake left asleep (the waker stopped between scaling ``hub`` and ``proxy``): only
    Deployments still carrying the annotation, and only once ``hub`` is awake. Returns the ones changed."""
    if is_hibernated(cluster, namespace):
        return []
    try:
        return _scale(cluster, namespace, 1, None, only_marked=True)
    except NotFound:
        return []


def ready_replicas(cluster: Cluster, namespace: str, name: str) -> int:
    """Pods of the Deployment that pass their readiness probe (z2jh's hub: ``/hub/health``), as its status says."""
    return int((cluster.get("apps/v1", "Deployment", namespace, name).get("status") or {}).get("readyReplicas") or 0)


def is_hibernated(cluster: Cluster, namespace: str) -> bool:
    try:
        hub = cluster.get("apps/v1", "Deployment", namespace, "hub")
    except NotFound:
        return False
    marked = ANNOTATION in (hub["metadata"].get("annotations") or {})
    return marked and hub["spec"].get("replicas", 1) == 0
