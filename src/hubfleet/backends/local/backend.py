"""LocalBackend: the Backend contract carried out with real processes on this machine.

Each hub is a JupyterHub 6 process (plus its node proxy) under ``<state>/hubs/<hub>/``; a front door on
127.0.0.1:<port> routes by host: ``<hub>.<domain>`` and its students' ``<user>.<hub>.<domain>`` to the hub,
``portal.<domain>`` to the portal (``hosts.py``). The file layout is in
``fleetstate.py``; the hub side (config, authenticator, spawner) reads ``hub.json`` and ``members.json``.

The work is in three modules beside this one: one hub's converge (``convergence.py``), the fleet-wide upkeep of
every apply and reconcile tick (``upkeep.py``), and stopping hubs for good (``shutdown.py``). Rules this module keeps:

* One hub's failure is reported in the ApplyReport and does not stop the others; hubs are applied in parallel.
* Student storage is only deleted by the lifecycle (``archiving.py``), after a verified archive; deleting a hub
  moves its dir (with the sqlite db) to ``<state>/retired/`` and is refused while a presentation of it still
  holds students' folders without a complete archive phase.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
from pathlib import Path
from typing import Any

from hubfleet.backends.base import (
    ApplyReport, FleetUnavailable, HubEndpoint, HubStatus, Progress, Say, removal_summary,
)
from hubfleet.backends.executor import ApplyCancelled, run_plan
from hubfleet.backends.local import process
from hubfleet.backends.local.convergence import HubConvergence
from hubfleet.backends.local.fleetstate import FleetPaths, HubPaths, lock_down, observe_state, read_json
from hubfleet.backends.local.frontdoor import HOST, FrontDoor, FrontDoorError, PortTaken
from hubfleet.backends.local.hibernation import is_hibernated
from hubfleet.backends.local.hosts import FleetHosts
from hubfleet.backends.local.ports import PortBook
from hubfleet.backends.local.proxy import ProxyNotFound, find_chp
from hubfleet.backends.local.secrets import read_secret
from hubfleet.backends.local.shutdown import stop_fleet, stop_hub
from hubfleet.backends.local.statelock import StateLock
from hubfleet.backends.local.strays import fleet_processes
from hubfleet.backends.local.upkeep import FleetUpkeep
from hubfleet.catalog.loader import LoadedCatalog
from hubfleet.hubapi import HubClient
from hubfleet.plan.diff import Action, FleetState, Kind, Plan, diff
from hubfleet.plan.spec import FleetSpec, HubSpec

__all__ = ["ApplyCancelled", "LifecycleNotAvailable", "LocalBackend", "default_demo_mode", "fleet_processes", "stop_fleet"]

DEMO_ENV = "HUBFLEET_DEMO_MODE"


class LifecycleNotAvailable(NotImplementedError):
    """Kept for callers that catch it; the local backend carries out archive and purge now (archiving.py)."""


def default_demo_mode() -> bool:
    """Demo mode (one account, shared password) unless running as root; HUBFLEET_DEMO_MODE=1 forces it."""
    return os.environ.get(DEMO_ENV, "") in ("1", "true", "yes") or os.geteuid() != 0


class LocalBackend(HubConvergence, FleetUpkeep):
    name = "local"

    def __init__(
        self,
        state_dir: Path,
        storage_root: Path,
        loaded: LoadedCatalog,
        port: int = 8000,
        demo_mode: bool | None = None,
        *,
        hub_timeout: float = 120.0,
        parallel: int = 8,
    ) -> None:
        self.paths = FleetPaths(Path(state_dir).resolve())
        self.storage_root = Path(storage_root).resolve()
        self.loaded = loaded
        self.port = port
        self.hosts = FleetHosts(loaded.catalog.fleet.domain, port)
        self.demo_mode = default_demo_mode() if demo_mode is None else demo_mode
        self.hub_timeout = hub_timeout
        self.parallel = parallel
        self._chp: Path | None = None
        self.ports = PortBook(self.paths.ports)
        # hubfleet starts each hub's CHP itself (hub.json start_proxy=false -> should_start=False): the proxy is a
        # tracked process with a pid+create-time record, keeps serving running servers while the hub restarts, and
        # a kill -9'd hub leaves no orphan proxy for JupyterHub's bare-pid cleanup to hunt down.
        # ref: https://jupyterhub.readthedocs.io/en/stable/howto/separate-proxy.html
        self.own_proxy = True
        self.archive_store: str | None = None  # a directory or URL; None = remembered in the state dir, or default
        self._spec: FleetSpec | None = None  # the spec apply() runs against, for the lifecycle actions
        # Set when the caller is interrupted mid-apply: the worker threads stop at their next step instead of starting
        # more hubs behind the back of the `down` that interrupted them.
        self.cancelled = threading.Event()
        self._next_idle_check: dict[str, float] = {}  # hub -> monotonic time of its next hibernation check
        # Local wall-clock time, naive, as the timetable is written (tests move it).
        self.wall_clock = dt.datetime.now

    # -- small helpers -------------------------------------------------------------------------------------------

    @property
    def chp(self) -> Path:
        if self._chp is None:
            self._chp = find_chp()
        return self._chp

    @property
    def frontdoor(self) -> FrontDoor:
        return FrontDoor(self.paths, self.port, self.chp, self.hosts.domain)

    def hub_url(self, hub: str) -> str:
        return self.hosts.hub_url(hub)

    @property
    def archiving(self) -> Any:
        """The lifecycle's local side (archiving.py): freezing, archive/teardown, purge, audit, restore."""
        from hubfleet.backends.local.archiving import LocalArchiving

        # One per backend (per store): the CLI hangs its `say` on it and reads back the outcomes of what apply did.
        cached = self.__dict__.get("_archiving")
        if cached is None or cached.store_spec != self.archive_store:
            cached = self.__dict__["_archiving"] = LocalArchiving(
                self.paths, self.storage_root, self.loaded, demo_mode=self.demo_mode,
                portal_url=f"{self.hosts.portal_url}/portal/archives/", store=self.archive_store)
        return cached

    def plan(self, spec: FleetSpec, state: FleetState) -> Plan:
        # Everything a local hub depends on is in its spec, except the contents of a profile's requirements file
        # (the planner reads no files): an edited file is an update of the hubs whose environment it changes.
        return self._with_environment_changes(spec, diff(spec, state))

    def prepare(self, spec: FleetSpec) -> None:
        """The front door's public port must be free or ours, before anything is started."""
        try:
            self.frontdoor.check_port()
        except FrontDoorError as exc:
            raise FleetUnavailable(f"{exc}\nNothing was changed. Free the port or pass another --port.", 2) from exc
        except ProxyNotFound as exc:
            raise FleetUnavailable(str(exc)) from exc

    def access(self, spec: FleetSpec) -> list[str]:
        # One sign-in for every hub: the portal is the fleet's identity provider, so that is where people log in.
        url = self.frontdoor.url
        lines = [f"\n[bold]Portal:[/] {url}/  (sign in at {url}/portal/login)"]
        lines += [f"  {hub.name}: {self.hub_url(hub.name)}" for hub in spec.hubs]
        # Browsers resolve *.localhost themselves; other clients need the host named (README "Hosts").
        lines.append(f"  (each on a host of its own; a client that cannot resolve them connects to 127.0.0.1:"
                     f"{self.port} and names the host, e.g. curl --resolve, or `hubfleet hosts`)")
        if self.demo_mode:
            password = self.paths.demo_password.read_text().strip()
            lines.append("\n[bold black on yellow] DEMO MODE [/] (not root, or HUBFLEET_DEMO_MODE=1): every server runs "
                         "as this account, students are not isolated from each other. Do not use this for real students.")
            lines.append(f"Log in as any enrolled user with the demo password: [bold]{password}[/]")
        else:
            lines.append("Log in with your username and the password the operator gives you; per-user passwords "
                         f"(hand them out; mode 0600): [bold]{self.paths.passwords_txt}[/]")
        return lines

    def writer_lock(self) -> StateLock:
        """The state dir's lock: one writer per state dir (up, apply, lifecycle run, ...)."""
        return StateLock(self.paths.state)

    def runner(self, catalog: Path, loaded: LoadedCatalog, at: dt.date | None, *, allow_mass_stop: bool = False):
        """`up` on this machine: the shared loop with the local hooks, under the state dir's lock; a second `up`
        exits 2 naming this one; Ctrl-C/SIGTERM stop every process of the fleet (no data is deleted)."""
        from hubfleet.backends.local.reconciler import Reconciler
        from hubfleet.backends.reconcile import FleetRunner

        self.loaded = loaded

        def stop() -> str:
            stopped = stop_fleet(self.paths.state)
            return f"Stopped {len(stopped)} hub(s), the front door and the portal."

        loop = Reconciler(catalog, self, at=at, allow_mass_stop=allow_mass_stop)
        return FleetRunner(loop=loop, lock=self.writer_lock(), stop=stop)

    def configure_archive(self, store: str | None, say: Say | None) -> None:
        if store is not None:
            self.archive_store = store
        self.archiving.say = say

    def archive_problems(self, deep: bool = False) -> list[str]:
        return self.archiving.problems(deep=deep)

    def archive_removals(self) -> str:
        """From the engine's outcomes: each folder in them was removed right after its archive was re-verified
        (sha256 against the ledger and a full read-back), and only then; nothing else deletes."""
        outcomes = self.archiving.outcomes
        return removal_summary(sum(len(o.removed) for o in outcomes), sum(len(o.kept) for o in outcomes))

    def _service_token(self, hub: str) -> str:
        return read_secret(self.paths.hub(hub).service_token)

    # -- Backend contract ----------------------------------------------------------------------------------------

    def observe(self) -> FleetState:
        return observe_state(self.paths, self.storage_root, own_proxy=self.own_proxy)

    def endpoint(self, hub: str) -> HubEndpoint:
        # The hub's own proxy rather than the front door: enrolment sync keeps working if the front door is down.
        ports = self.ports.recorded(hub)
        if ports is None:
            raise KeyError(f"hub {hub} has never been created here")
        return HubEndpoint(api_url=f"http://{HOST}:{ports.proxy_port}/hub/api", token=self._service_token(hub))

    def apply(self, plan: Plan, spec: FleetSpec, progress: Progress | None = None) -> ApplyReport:
        say: Progress = progress or (lambda action, message: None)
        self.lock_down()
        self._spec = spec
        self.sync_logins(spec)
        wanted = {h.name: h for h in spec.hubs}
        # Hubs start in parallel (a hub takes seconds to boot); within a hub the plan's order holds. An interrupt
        # sets self.cancelled, so the workers stop at their next step too.
        report = run_plan(plan, lambda a: self._do(a, wanted.get(a.hub), say), concurrency=self.parallel, say=say,
                          cancelled=self.cancelled)
        self._prune_environments()
        try:
            self.refresh(spec)
        except (FrontDoorError, ProxyNotFound) as exc:  # fleet-wide: the front door's port taken, no node proxy
            raise FleetUnavailable(str(exc), 2 if isinstance(exc, PortTaken) else 1) from exc
        self.lock_down()  # whatever this apply created (logs, sqlite -wal/-shm, archives) is private now
        return report

    def lock_down(self) -> None:
        """The state dir and a local archive store elsewhere: private to hubfleet (fleetstate.lock_down)."""
        store = None
        remembered = self.paths.state / "archive-store"
        location = self.archive_store or (remembered.read_text().strip() if remembered.is_file() else "")
        if location and ("://" not in location or location.startswith("file://")):
            store = Path(location.removeprefix("file://"))
        lock_down(self.paths.state, self.storage_root, store)

    def status(self, spec: FleetSpec) -> list[HubStatus]:
        out = []
        # Said on every hub's row: a server without a memory limit can take memory from every other hub.
        limits_note = "" if self.demo_mode else _limits_note()
        for hub in spec.hubs:
            hp = self.paths.hub(hub.name)
            url = self.hub_url(hub.name)
            running = (read_json(hp.applied) is not None) and process.read_alive(hp.hub_pidfile) is not None
            if not running and is_hibernated(hp):
                out.append(HubStatus(hub.name, url, up=False, hibernated=True, detail="hibernated: wakes on its first request"))
                continue
            if not running:
                out.append(HubStatus(hub.name, url, up=False, detail="not running"))
                continue
            try:
                ep = self.endpoint(hub.name)
                with HubClient(ep.api_url, ep.token, timeout=5) as client:
                    users = client.users()
                servers = sum(1 for u in users for s in (u.get("servers") or {}).values() if s.get("ready"))
                out.append(HubStatus(hub.name, url, up=True, users=len(users), running_servers=servers, detail=limits_note))
            except Exception as exc:  # noqa: BLE001 - status reports, it does not fail
                out.append(HubStatus(hub.name, url, up=False, detail=f"process up, API not answering: {exc}"))
        return out

    def down(self) -> list[str]:
        return stop_fleet(self.paths.state)

    # -- per-hub actions ---------------------------------------------------------------------------------------------

    def _do(self, action: Action, hub: HubSpec | None, say: Progress) -> str:
        self._check_cancelled()  # a `down` during this apply: start nothing more
        hp = self.paths.hub(action.hub)
        if action.kind in (Kind.create, Kind.update, Kind.start):
            assert hub is not None, f"{action.kind.value} of a hub the spec does not have"
            return self._converge(hub, lambda m: say(action, m))
        if action.kind == Kind.stop:
            stop_hub(hp)
            return "stopped"
        if action.kind == Kind.delete:
            return self._delete(hp)
        return self._lifecycle(action, hub, hp, say)

    def _lifecycle(self, action: Action, hub: HubSpec | None, hp: HubPaths, say: Progress) -> str:
        """archive and purge of one retired presentation (the work: archiving.py and hubfleet.lifecycle)."""
        if action.kind == Kind.archive and hub is None:
            say(action, "stopping the hub first, so nobody writes mid-archive")
            stop_hub(hp)
        say(action, f"{action.kind.value}: running")
        return self.archiving.carry_out(action.kind.value, action.presentation or "", self._spec)

    def _delete(self, hp: HubPaths) -> str:
        if not hp.dir.exists():
            return "already gone"
        # Defence in depth beside run_plan's "archive failed" rule (backends/executor.py), whatever plan asked for the delete.
        self.archiving.guard_delete(read_json(hp.applied) or {}, self._spec)
        stop_hub(hp)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = self.paths.retired / f"{hp.name}-{stamp}"
        self.paths.retired.mkdir(parents=True, exist_ok=True)
        # A move, not a delete: the sqlite db (users, tokens, server state) stays as a backup. Student files live
        # under the storage root and are not touched at all.
        shutil.move(str(hp.dir), target)
        self.ports.release(hp.name)
        return f"retired to {target}"


def _limits_note() -> str:
    from hubfleet.backends.local.cgroups import availability

    ok, how = availability()
    return "" if ok else how
