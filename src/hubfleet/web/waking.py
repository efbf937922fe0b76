"""The waker's hooks, one set per backend (``web/waker.py`` is the middleware that uses them): whether a hub sleeps,
whether it runs and is ready, how to wake it, and what to note when a wake ends.

The portal passes one set to ``create_app``: ``local_waking`` for a fleet of local processes (the hubs' files and
``backends/local/hibernation.wake``), ``kubernetes_waking`` for the portal in a cluster (the hub's Deployments, with
the portal's service account). ``hub_state`` gives the portal's ``/metrics`` the same view of every hub.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["hub_state", "kubernetes_waking", "local_waking"]


def local_waking(state: Path, fleet: Callable[[], dict]) -> dict[str, Any]:
    """The waker's hooks for a local fleet: the hub's files say whether it sleeps, ``hibernation.wake`` wakes it and
    points its front-door route back at its proxy."""
    from hubfleet.backends.local import process
    from hubfleet.backends.local.fleetstate import FleetPaths
    from hubfleet.backends.local.frontdoor import FrontDoor
    from hubfleet.backends.local.hibernation import is_hibernated, wake

    paths = FleetPaths(state)

    def wake_hub(name: str) -> float | None:
        door = FrontDoor(paths, 0, None, fleet().get("domain") or "localhost")
        return wake(paths, name, door.route_hub)

    return {
        "fleet": fleet,
        "asleep": lambda name: is_hibernated(paths.hub(name)),
        "alive": lambda name: process.read_alive(paths.hub(name).hub_pidfile) is not None,
        "wake": wake_hub,
    }


def kubernetes_waking(fleet: Callable[[], dict], cluster: Any = None,
                      ready_url: Callable[[str], str] | None = None, state: Path | None = None) -> dict[str, Any]:
    """The waker's hooks in the cluster: a hub sleeps when its ``hub`` Deployment is scaled to 0 with hubfleet's
    annotation (backends/kubernetes/hibernation.py); waking scales ``hub`` and ``proxy`` back and waits until the
    hub answers through its proxy. ``cluster``: the API server (default: the pod's own service account, whose
    only rights are get/update on those two Deployments in hub namespaces, portal.py); ``ready_url(hub)``: where
    the hub answers (default: its proxy-public Service). A hub's namespace is its name."""
    from hubfleet.backends.kubernetes import hibernation
    from hubfleet.backends.kubernetes.hubstate import is_ready, ready_url as proxy_url, wake_and_wait

    from hubfleet.backends.kubernetes.cluster import ClusterError, ClusterUnavailable

    clients: list[Any] = [cluster] if cluster is not None else []

    def api() -> Any:
        # Made on first use: a portal whose service account cannot reach the API server still serves sign-in.
        if not clients:
            from hubfleet.backends.kubernetes.cluster import KubernetesCluster

            clients.append(KubernetesCluster())
        return clients[0]

    where = ready_url or proxy_url

    def asleep(name: str) -> bool:
        try:
            return hibernation.is_hibernated(api(), name)
        except (ClusterError, ClusterUnavailable):
            return False  # unknown: the portal's usual answer (a redirect), never a wake it cannot do

    def scaled_up(name: str) -> bool:
        try:  # scaled up (maybe still starting): the page reloads until the ingress reaches the proxy again
            return (api().get("apps/v1", "Deployment", name, "hub")["spec"].get("replicas", 1) or 0) > 0
        except (ClusterError, ClusterUnavailable):
            return False

    def observe(event: str, hub: str, reason: str, seconds: float | None = None, **_: Any) -> None:
        if state is not None and event in ("wake_done", "wake_failed"):
            from hubfleet.backends.local.fleetstate import FleetPaths
            from hubfleet.backends.local.hibernation import record

            entry = {"event": "wake", "hub": hub, "reason": reason, "ok": event == "wake_done"}
            record(FleetPaths(state), entry | ({"seconds": round(seconds, 3)} if seconds is not None else {}))

    def ready(name: str) -> bool:
        try:
            return is_ready(api(), name)
        except (ClusterError, ClusterUnavailable):
            return False

    return {
        "fleet": fleet,
        "asleep": asleep,
        "alive": scaled_up,
        "wake": lambda name: wake_and_wait(api(), name, where(name)),
        "ready": ready,
        "observe": observe,
    }


def hub_state(waking: dict[str, Any], name: str) -> str:
    """running, hibernated or down, as the waker sees the hub (its hooks work for either backend)."""
    if waking["asleep"](name):
        return "hibernated"
    return "running" if waking["alive"](name) and waking.get("ready", lambda _: True)(name) else "down"
