"""What state a Kubernetes hub is in, and the changes of state that are not plan actions: hibernating and waking.

A mixin of ``KubernetesBackend`` (backend.py); it uses the backend's ``cluster``, ``helm``, ``endpoint`` and
``warm``. The mechanism (the hub's ``hub`` and ``proxy`` Deployments scaled to 0 and back) is hibernation.py;
the rule for *when* is the local backend's, pure, in plan.hibernation (``awake_reason`` over ``activity_of``):

* ``hibernate_idle(spec)`` runs after every step of the controller's loop (``LoopHooks.rest``). For each running
  hub with a ``hibernate_after`` it asks the hub's own API, with hubfleet's service token, for its users and
  servers; the hub's "up since" is its pod's start (so a hub a request just woke is not put back to sleep before
  the person who woke it signed in). A hub with a server, a pending spawn or recent activity stays awake; a hub
  whose API does not answer is not known to be idle and is left alone. In a timetable warm-up window the hub is
  woken (reason ``timetable``) and kept awake instead.
* ``wake_and_wait(hub)`` is the waker's (the portal, web/waker.py): scale back up, then wait until the hub
  answers through its proxy, which is what the person's next reload reaches.

A race this does not close (the local backend closes it by switching the route first): a spawn that starts in
the moment between the hub's answer and the scale-down. The student's pod is KubeSpawner's, not the
Deployment's, so it is not stopped; the woken hub finds it again (JupyterHub polls its spawners at start).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import httpx

from hubfleet.backends.base import HubEndpoint, HubStatus
from hubfleet.backends.loopstats import LoopStats
from hubfleet.plan.hibernation import HubActivity, activity_of, awake_reason
from hubfleet.plan.spec import FleetSpec, HubSpec

from . import hibernation
from .cluster import Cluster, ClusterError
from .helm import Helm, HelmError
from .manifests import namespace_name

__all__ = ["HubStates", "WakeFailed", "is_ready", "ready_url", "wake_and_wait"]

# At most this often per hub (and at least every minute): a quiet loop does not ask every hub every tick.
MIN_CHECK, MAX_CHECK = 0.2, 60.0


class WakeFailed(RuntimeError):
    pass


def ready_url(namespace: str) -> str:
    """Where a hub answers once awake, from inside the cluster: through its proxy's Service (z2jh's proxy-public,
    port 80; its NetworkPolicy admits the ``http`` port from any pod), which is what a browser's next request
    reaches through the ingress."""
    return f"http://proxy-public.{namespace}.svc.cluster.local/hub/api/"


def wake_and_wait(cluster: Cluster, namespace: str, url: str, timeout: float = 300.0) -> float | None:
    """Wake a hibernated hub and wait until it answers at ``url``: the seconds it took, or None if it was not
    asleep (woken already). Raises WakeFailed after ``timeout``; it stays scaled up, so the controller's loop sees
    a hub that does not answer (and reports it), not a sleeping one.

    Both at once: JupyterHub does not start without its proxy's API. The proxy is ready a few seconds before the
    hub, and answers the hub's pages with 503 meanwhile; ingress-nginx hands those 503s to the waker too
    (``custom-http-errors``, values.py), whose page keeps reloading until the hub itself answers."""
    if not hibernation.is_hibernated(cluster, namespace):
        return None
    t0 = time.monotonic()
    hibernation.wake(cluster, namespace)
    while time.monotonic() - t0 < timeout:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise WakeFailed(f"{namespace} scaled up but did not answer at {url} within {timeout:g}s")


def is_ready(cluster: Cluster, namespace: str) -> bool:
    """Hub and proxy both pass their readiness probes (the chart's ``/hub/health`` and ``/_chp_healthz``)."""
    try:
        return all(hibernation.ready_replicas(cluster, namespace, name) >= 1 for name in hibernation.DEPLOYMENTS)
    except ClusterError:
        return False


class HubStates:
    """Status, hibernation and waking of the backend's hubs (a mixin of ``KubernetesBackend``)."""

    cluster: Cluster
    helm: Helm
    api_timeout: float
    hub_url: Callable[[str], str] | None
    warm: Callable[[], dict]
    endpoint: Callable[[str], HubEndpoint]
    _next_idle_check: dict[str, float]  # hub -> monotonic time of its next hibernation check
    stats: LoopStats | None

    # -- hibernation (hibernation.py): the hub's Deployments scaled to 0 and back ------------------------------

    def hibernate(self, hub: str) -> list[str]:
        """Scale ``hub``'s JupyterHub and proxy to 0 (release, database claim, secrets, student storage stay)."""
        return hibernation.hibernate(self.cluster, hub)

    def wake(self, hub: str) -> list[str]:
        return hibernation.wake(self.cluster, hub)

    def hub_activity(self, hub: str) -> HubActivity | None:
        """What the running hub's API says about its users and servers; None if it does not answer (or has no
        running hub pod), so it is not known to be idle."""
        try:
            pods = self.cluster.list("v1", "Pod", hub, "component=hub")
        except ClusterError:  # no pods to read (an API without them): nothing known to be idle
            return None
        started = [p["status"].get("startTime") for p in pods
                   if (p.get("status") or {}).get("phase") == "Running" and p["status"].get("startTime")]
        if not started:
            return None
        up_since = max(dt.datetime.fromisoformat(s.replace("Z", "+00:00")) for s in started)
        from hubfleet.hubapi import HubClient

        try:
            ep = self.endpoint(hub)
            with HubClient(ep.api_url, ep.token, timeout=self.api_timeout) as client:
                return activity_of(client.users(), up_since)
        except Exception:  # noqa: BLE001 - a hub that does not answer is not known to be idle: leave it alone
            return None

    def hibernate_idle(self, spec: FleetSpec, now: dt.datetime | None = None) -> list[str]:
        """Hibernate each running hub idle for its ``hibernate_after``; wake a sleeping hub a timetable window
        wants warm. Called after every step of the controller's loop; returns notes for its report."""
        notes = []
        clock = time.monotonic()
        checks = self._next_idle_check
        warm = self.warm()
        from .portal import uses_portal

        # The waker is the portal, rendered only for auth: embedded: without it a sleeping hub could be woken by
        # its timetable only, never by a request, so it stays awake.
        wakeable = uses_portal(spec)
        for hub in spec.hubs:
            ns = namespace_name(hub)
            if hub.name in warm:
                # A session is coming: woken ahead of it and kept awake until its arrival window is over.
                if hibernation.is_hibernated(self.cluster, ns) and hibernation.wake(self.cluster, ns):
                    self._count("wake:timetable")
                    notes.append(f"{hub.name} woken for {warm[hub.name].session} (timetable)")
                continue
            if not wakeable or hub.hibernate_after is None or clock < checks.get(hub.name, 0.0):
                continue
            checks[hub.name] = clock + min(max(hub.hibernate_after / 4, MIN_CHECK), MAX_CHECK)
            if hibernation.is_hibernated(self.cluster, ns):
                continue
            if hibernation.finish_wake(self.cluster, ns):  # a waker stopped half-way: its proxy still asleep
                notes.append(f"{hub.name}: finished a wake (proxy scaled up)")
                continue
            activity = self.hub_activity(ns)
            if activity is None:
                continue
            if awake_reason(hub, activity, now or dt.datetime.now(dt.timezone.utc)) is None:
                if hibernation.hibernate(self.cluster, ns):
                    self._count("hibernate")
                    notes.append(f"{hub.name} hibernated (idle for {hub.hibernate_after}s, no servers)")
        return notes

    def _count(self, event: str) -> None:
        if self.stats is not None:  # the controller's figures (/metrics); saved with its next step
            self.stats.event(event)

    def ready_url(self, hub: str) -> str:
        return self.hub_url(hub).rstrip("/") + "/hub/api/" if self.hub_url is not None else ready_url(hub)

    def wake_and_wait(self, hub: str, timeout: float = 300.0) -> float | None:
        return wake_and_wait(self.cluster, hub, self.ready_url(hub), timeout)

    # -- status ---------------------------------------------------------------------------------------------------

    def _release_status(self, ns: str):  # noqa: ANN202 - a ReleaseStatus or None
        return self.helm.status(ns, ns)

    def _hub_status(self, hub: HubSpec, query_api: bool) -> HubStatus:
        from .backend import _explain

        url = self.hub_url(hub.name) if self.hub_url else hub.url
        try:
            release = self.helm.status(hub.name, namespace_name(hub))
        except (HelmError, ClusterError) as exc:
            return HubStatus(hub.name, url, up=False, detail=f"cannot ask helm: {_explain(exc)}")
        if release is None:
            return HubStatus(hub.name, url, up=False, detail="no release")
        if release.deployed and hibernation.is_hibernated(self.cluster, namespace_name(hub)):
            return HubStatus(hub.name, url, up=False, hibernated=True, detail="hibernated: hub and proxy at 0 replicas")
        if not release.deployed:
            return HubStatus(hub.name, url, up=False, detail=f"release {release.status}: {release.description}")
        where = f"release deployed (revision {release.revision}, chart {release.chart_version})"
        if not query_api:
            return HubStatus(hub.name, url, up=True, detail=where)
        from hubfleet.hubapi import HubClient

        try:
            ep = self.endpoint(hub.name)
            with HubClient(ep.api_url, ep.token, timeout=self.api_timeout) as client:
                users = client.users()
        except Exception as exc:  # noqa: BLE001 - status reports, it does not fail
            return HubStatus(hub.name, url, up=False, detail=f"{where}; hub API not answering from here: {exc}")
        servers = sum(1 for u in users for s in (u.get("servers") or {}).values() if s.get("ready"))
        return HubStatus(hub.name, url, up=True, users=len(users), running_servers=servers, detail=where)
