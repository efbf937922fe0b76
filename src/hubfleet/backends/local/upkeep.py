"""The local fleet's upkeep, at every apply and every reconcile tick, outside the plan: logins (members.json,
passwords), ``fleet.json`` for the portal, the front door and its routes, and hibernating idle hubs or waking them
ahead of a timetabled session.

Outside the plan on purpose: rosters and routes are data, not hub config, and a hub re-reads members.json live, so
none of this restarts a hub.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from hubfleet.backends.local import process
from hubfleet.backends.local.fleetstate import FleetPaths, write_json_atomic
from hubfleet.backends.local.frontdoor import FrontDoor
from hubfleet.backends.local.hibernation import hibernate, is_hibernated, wake
from hubfleet.backends.local.hosts import FleetHosts
from hubfleet.backends.local.members import PasswordBook, demo_password, hub_members
from hubfleet.backends.local.ports import PortBook
from hubfleet.catalog.loader import LoadedCatalog
from hubfleet.plan.spec import FleetSpec
from hubfleet.plan.timetable import active_windows, warmup_schedule

__all__ = ["FleetUpkeep"]


class FleetUpkeep:
    """The fleet-wide half of ``LocalBackend`` (mixed into it)."""

    # LocalBackend's, set in its __init__ (frontdoor and archiving are its properties).
    paths: FleetPaths
    loaded: LoadedCatalog
    hosts: FleetHosts
    ports: PortBook
    demo_mode: bool
    hub_timeout: float
    wall_clock: Callable[[], dt.datetime]
    _next_idle_check: dict[str, float]
    frontdoor: FrontDoor
    archiving: Any

    def sync_logins(self, spec: FleetSpec) -> list[str]:
        """members.json for every wanted hub and the passwords; return hubs whose members changed."""
        changed = []
        everyone: set[str] = set()
        for hub in spec.hubs:
            members = hub_members(hub, self.loaded)
            everyone |= members.keys() | set(hub.admins)
            hp = self.paths.hub(hub.name)
            if hp.dir.is_dir() and write_json_atomic(hp.members, members):
                changed.append(hub.name)
        # Unit admins sign in to the portal (hub requests, the dashboard) though no hub enrols them.
        everyone |= {a.username for u in self.loaded.catalog.fleet.units for a in u.admins}
        if self.demo_mode:
            demo_password(self.paths.state)
        else:
            PasswordBook(self.paths.passwords_txt, self.paths.passwords_json).ensure(everyone)
        return changed

    def refresh(self, spec: FleetSpec) -> list[str]:
        """Everything besides hub actions: logins, fleet.json for the portal, front door and its routes."""
        notes = [f"members of {h} updated" for h in self.sync_logins(spec)]
        notes += self.archiving.enforce_read_only(spec)
        up, asleep = self._publish(spec)
        door = self.frontdoor
        door.ensure_running()
        targets = {}
        for name, alive in up.items():
            ports = self.ports.recorded(name)
            if alive and ports:
                targets[name] = ports.proxy_port
        notes += door.sync_routes(targets, asleep)
        return notes

    def hibernate_idle(self, spec: FleetSpec) -> list[str]:
        """Hibernate every running hub that has been idle for its ``hibernate_after`` (``plan.hibernation``);
        called by the ``up`` loop every step. A hub is asked at most every ``hibernate_after / 4`` seconds (and
        at least every minute), so a quiet loop does not poll every hub's API every tick."""
        notes = []
        now = time.monotonic()
        door = self.frontdoor
        warm = self._warm_windows(spec)
        for hub in spec.hubs:
            if hub.name in warm:
                # A session is coming (timetable): the hub is woken ahead of it and kept awake until the arrival
                # window is over, so the class does not wait for it.
                if is_hibernated(self.paths.hub(hub.name)):
                    wake(self.paths, hub.name, door.route_hub, self.hub_timeout, reason="timetable")
                    notes.append(f"{hub.name} woken for {warm[hub.name].session} at "
                                 f"{warm[hub.name].session_start:%H:%M} (timetable)")
                continue
            if hub.hibernate_after is None or now < self._next_idle_check.get(hub.name, 0.0):
                continue
            self._next_idle_check[hub.name] = now + min(max(hub.hibernate_after / 4, 0.2), 60.0)
            hp = self.paths.hub(hub.name)
            if is_hibernated(hp) or not self._alive(hub.name):
                continue
            if hibernate(self.paths, hub, door.route_hub) is None:
                notes.append(f"{hub.name} hibernated (idle for {hub.hibernate_after}s, no servers)")
        if notes:
            self._publish(spec)
        return notes

    def _warm_windows(self, spec: FleetSpec) -> dict[str, Any]:
        """Hubs in a timetable warm-up window now (plan.timetable), by the wall clock (``self.wall_clock``)."""
        at = self.wall_clock()
        windows = warmup_schedule(self.loaded.catalog, at - dt.timedelta(days=1), days=2, calendars=self.loaded.calendars)
        wanted = {h.name for h in spec.hubs}
        return {hub: w for hub, w in active_windows(windows, at).items() if hub in wanted}

    def _alive(self, hub: str) -> bool:
        hp = self.paths.hub(hub)
        return hp.applied.exists() and process.read_alive(hp.hub_pidfile) is not None

    def _publish(self, spec: FleetSpec) -> tuple[dict[str, bool], list[str]]:
        """Write fleet.json, which the portal reads for its hub list; return (hub -> up, hubs asleep)."""
        asleep = [h.name for h in spec.hubs if is_hibernated(self.paths.hub(h.name))]
        up = {h.name: h.name not in asleep and self._alive(h.name) for h in spec.hubs}
        write_json_atomic(self.paths.fleet_json, self._fleet_document(spec, up, asleep))
        return up, asleep

    def _fleet_document(self, spec: FleetSpec, up: dict[str, bool], asleep: list[str] = ()) -> dict[str, Any]:
        branding = spec.hubs[0].branding.model_dump() if spec.hubs else self.loaded.catalog.fleet.branding.model_dump()
        logo = branding.get("logo")
        branding["logo_path"] = str(self.loaded.path(logo)) if logo else None
        return {
            "fleet": spec.fleet,
            "date": spec.date.isoformat(),
            "front_door": self.hosts.portal_url,
            "portal_url": self.hosts.portal_url,
            "domain": self.hosts.domain,
            "demo_mode": self.demo_mode,
            "branding": branding,
            "hubs": [
                {
                    "name": h.name,
                    "url": self.hosts.hub_url(h.name),
                    # A hibernated hub counts as up for people: its link works, the first request wakes it.
                    "up": up.get(h.name, False) or h.name in asleep,
                    "hibernated": h.name in asleep,
                    "presentations": [
                        {
                            "key": p.key, "course": p.course, "presentation": p.presentation, "title": p.title,
                            "phase": p.phase.value, "start": p.start.isoformat(), "end": p.end.isoformat(),
                            # What each profile runs on here (images are not used locally): the portal says so.
                            "environments": [{"profile": pr.display_name, "runs_on": pr.environment_summary}
                                             for pr in h.profiles if pr.presentation == p.key],
                        }
                        for p in h.presentations
                    ],
                }
                for h in spec.hubs
            ],
        }
