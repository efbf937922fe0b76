"""One local hub's converge: create, update and start are one operation. Make the hub's files right, build its
profiles' environments, (re)start it only if needed, verify it answers, record it.

Rules kept here:

* ``applied.json`` is written only after the hub answers its API with the service token, so a hub that failed to
  come up is planned again (create) at the next reconcile instead of being recorded as done.
* A hub is restarted only when something it reads at startup changed; members.json and the fields the hub
  re-reads at runtime are rewritten in place, so students are not logged out by a roster edit.
* Secrets are generated once (``ensure_secret``) and never rewritten; ports are stable (``PortBook``).
* The planner reads no files, so an edited requirements file is found here: an update of the hubs it changes.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from hubfleet.backends.executor import ApplyCancelled
from hubfleet.backends.local import process
from hubfleet.backends.local.fleetstate import FleetPaths, HubPaths, read_json, write_json_atomic
from hubfleet.backends.local.frontdoor import FrontDoor
from hubfleet.backends.local.hibernation import hub_lock, start_hub_processes, wait_hub_api
from hubfleet.backends.local.hosts import FleetHosts
from hubfleet.backends.local.members import hub_members
from hubfleet.backends.local.ports import HubPorts, PortBook
from hubfleet.backends.local.secrets import ensure_secret
from hubfleet.backends.local.shutdown import reap_leftovers
from hubfleet.catalog import naming
from hubfleet.catalog.loader import LoadedCatalog
from hubfleet.plan.diff import Action, Change, Kind, Plan
from hubfleet.plan.spec import FleetSpec, HubSpec

__all__ = ["HubConvergence"]


class HubConvergence:
    """The per-hub half of ``LocalBackend`` (mixed into it): what makes one hub equal to its spec."""

    # LocalBackend's, set in its __init__ (chp and frontdoor are its properties).
    paths: FleetPaths
    storage_root: Path
    loaded: LoadedCatalog
    hosts: FleetHosts
    ports: PortBook
    demo_mode: bool
    own_proxy: bool
    hub_timeout: float
    cancelled: threading.Event
    chp: Path
    frontdoor: FrontDoor

    def _with_environment_changes(self, spec: FleetSpec, planned: Plan) -> Plan:
        """``planned`` plus an update of every hub (not already being changed) whose profile's requirements file
        now resolves to another environment than the one its hub.json records."""
        from hubfleet.backends.local.environments import BuildFailed, EnvironmentBook, resolve

        book = EnvironmentBook(self.paths.envs)
        busy = {a.hub for a in planned.actions if a.kind in (Kind.create, Kind.update, Kind.start, Kind.delete)}
        extra = []
        for hub in spec.hubs:
            recorded = (read_json(self.paths.hub(hub.name).hub_json) or {}).get("environments")
            if hub.name in busy or recorded is None:
                continue
            changes = []
            for profile in hub.profiles:
                if profile.environment is None or not profile.environment.requirements_file:
                    continue
                try:
                    wanted = str(book.python(resolve(profile.environment, self.loaded.path).key))
                except BuildFailed as exc:
                    wanted = f"(unreadable: {exc})"
                if recorded.get(profile.name) != wanted:
                    changes.append(Change(field=f"profiles[{profile.name}].environment ({profile.environment.requirements_file})",
                                          old=recorded.get(profile.name), new=wanted))  # fmt: skip
            if changes:
                extra.append(Action(kind=Kind.update, hub=hub.name, changes=tuple(changes),
                                    reason="a requirements file changed"))  # fmt: skip
        if not extra:
            return planned
        kinds = list(Kind)
        return Plan(actions=tuple(sorted(planned.actions + tuple(extra), key=lambda a: kinds.index(a.kind))))

    def _check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise ApplyCancelled("interrupted: not started")

    def _converge(self, hub: HubSpec, say: Any) -> str:
        """Create, update and start are one operation: make files right, (re)start if needed, verify, record.
        Under the hub's wake lock, so the portal's waker never starts the same hub at the same time; a hibernated
        hub is woken by it (an update is applied to a running hub) and goes back to sleep when idle again."""
        hp = self.paths.hub(hub.name)
        with hub_lock(hp):
            message = self._converge_locked(hub, hp, say)
            hp.hibernated.unlink(missing_ok=True)
        return message

    def _converge_locked(self, hub: HubSpec, hp: HubPaths, say: Any) -> str:
        hp.logs.mkdir(parents=True, exist_ok=True)
        for secret in hp.secrets():
            ensure_secret(secret)
        ports = self.ports.ports_for(hub.name, owner_pids=self._owner_pids(hp))
        write_json_atomic(hp.members, hub_members(hub, self.loaded))
        environments = self._environments(hub, say)
        old = read_json(hp.hub_json)
        new = self._hub_json(hub, hp, ports)
        new["environments"] = environments  # read live by the spawner: a new env reaches the next server start
        write_json_atomic(hp.hub_json, new, mode=0o600)
        old_config = hp.config.read_bytes() if hp.config.exists() else None
        _hub_side().write_config_file(hp.dir)
        restart = old_config != hp.config.read_bytes() or _restart_needed(old, new)
        if self.own_proxy and {"proxy", "proxy_api"} & set(ports.moved):
            process.stop(hp.proxy_pidfile)
        hub_alive = process.read_alive(hp.hub_pidfile) is not None
        verb = "started"
        if hub_alive and restart:
            say("restarting (startup config changed)")
            # Students keep their running servers across a hub restart (cleanup_servers is off).
            process.stop(hp.hub_pidfile, timeout=20, descendants=False)
            verb = "restarted"
        elif hub_alive:
            verb = "updated in place (no restart needed)"
        t0 = time.monotonic()
        reap_leftovers(hp)
        self._check_cancelled()
        start_hub_processes(hp, say, own_proxy=self.own_proxy)
        say("waiting for the hub API")
        wait_hub_api(hp, self.hub_timeout, self._check_cancelled)
        write_json_atomic(hp.applied, hub.model_dump(mode="json"))
        return f"{verb} in {time.monotonic() - t0:.1f}s" if verb != "updated in place (no restart needed)" else verb

    def _environments(self, hub: HubSpec, say: Any) -> dict[str, str]:
        """Build (or find) every profile's environment; {profile: python}. A failed build fails this hub only,
        before anything of it changes, so its servers keep the environments they had."""
        from hubfleet.backends.local.environments import EnvironmentBook, resolve

        book = EnvironmentBook(self.paths.envs)
        out = {}
        for profile in hub.profiles:
            if profile.environment is not None:
                self._check_cancelled()
                resolved = resolve(profile.environment, self.loaded.path)
                out[profile.name] = str(book.ensure(profile, resolved, say))
        return out

    def _prune_environments(self) -> list[str]:
        """Remove the environments no hub of this state dir records any more (EnvironmentBook.prune says which
        are kept anyway). A hub whose update failed still records the ones its servers use: they stay."""
        from hubfleet.backends.local.environments import EnvironmentBook, key_of

        referenced = {key_of(python) for name in self.paths.hub_names()
                      for python in ((read_json(self.paths.hub(name).hub_json) or {}).get("environments") or {}).values()}
        return EnvironmentBook(self.paths.envs).prune(referenced)

    def _hub_json(self, hub: HubSpec, hp: HubPaths, ports: HubPorts) -> dict[str, Any]:
        return {
            "spec": hub.model_dump(mode="json"),
            "hub_dir": str(hp.dir),
            "storage_root": str(self.storage_root),
            "catalog_root": str(self.loaded.root),
            "hub_port": ports.hub_port,
            "proxy_port": ports.proxy_port,
            "proxy_api_port": ports.proxy_api_port,
            "chp": str(self.chp),
            # Where people start (the portal), this hub's own host, and the front door by address for the
            # hub's server-to-server OAuth calls. ``hub_url`` turns on students' hosts of their own (hubconfig.py).
            "front_door": self.hosts.portal_url,
            "hub_url": self.hosts.hub_url(hub.name),
            "portal_internal_url": self.frontdoor.portal_internal_url + "/portal",
            "demo_mode": self.demo_mode,
            "service_token_file": str(hp.service_token),
            "cookie_secret_file": str(hp.cookie_secret),
            "proxy_token_file": str(hp.proxy_token),
            "members": str(hp.members),
            "start_proxy": not self.own_proxy,
            # Students' Unix accounts (root mode) are per fleet: naming.unix_account(account_prefix, username).
            "fleet": self.loaded.catalog.fleet.name,
            "account_prefix": naming.account_prefix(self.loaded.catalog.fleet.name, self.loaded.catalog.fleet.account_prefix),
        }

    def _owner_pids(self, hp: HubPaths) -> set[int]:
        """The hub's and its proxy's processes (with children): a port one of them holds is this hub's, not taken."""
        pids: set[int] = set()
        for pidfile in (hp.hub_pidfile, hp.proxy_pidfile):
            record = process.read_alive(pidfile)
            proc = record.process() if record else None
            if proc is not None:
                pids |= {proc.pid, *(c.pid for c in proc.children(recursive=True))}
        return pids


def _hub_side() -> Any:
    """The hub-side module (config writer), imported late so ``observe``-only uses need no JupyterHub import."""
    from hubfleet.backends.local import hubconfig

    return hubconfig


def _restart_needed(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Does the running hub need a restart to see ``new``? The hub side may say (``restart_needed``); otherwise
    only presentation phases and enrolment sources count as live (HubContext re-reads hub.json and members.json;
    roles, services and admins are loaded at startup), so a phase or roster change does not log anyone out."""
    decide = getattr(_hub_side(), "restart_needed", None)
    if decide is not None:
        return bool(decide(old, new))
    if old is None:
        return True

    def startup_view(doc: dict[str, Any]) -> dict[str, Any]:
        spec = dict(doc.get("spec", {}))
        spec["presentations"] = [{**p, "phase": None, "enrolment": None} for p in spec.get("presentations", [])]
        return {**doc, "spec": spec}

    return startup_view(old) != startup_view(new)
