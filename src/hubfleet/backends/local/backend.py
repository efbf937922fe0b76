"""LocalBackend: the Backend contract carried out with real processes on this machine.

Each hub is a JupyterHub 6 process (plus its node proxy) under ``<state>/hubs/<hub>/``; a front door on
127.0.0.1:<port> routes by host: ``<hub>.<domain>`` and its students' ``<user>.<hub>.<domain>`` to the hub,
``portal.<domain>`` to the portal (``hosts.py``). The file layout is in
``fleetstate.py``; the hub side (config, authenticator, spawner) reads ``hub.json`` and ``members.json``.

Rules this module keeps:

* ``applied.json`` is written only after the hub answers its API with the service token, so a hub that failed to
  come up is planned again (create) at the next reconcile instead of being recorded as done.
* A hub is restarted only when something it reads at startup changed; members.json and the fields the hub
  re-reads at runtime are rewritten in place, so students are not logged out by a roster edit.
* Secrets are generated once (``ensure_secret``) and never rewritten; ports are stable (``PortBook``).
* Student storage is only deleted by the lifecycle (``archiving.py``), after a verified archive; deleting a hub
  moves its dir (with the sqlite db) to ``<state>/retired/`` and is refused while a presentation of it still
  holds students' folders without a complete archive phase.
* One hub's failure is reported in the ApplyReport and does not stop the others; hubs are applied in parallel.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

from hubfleet.backends.base import (
    ApplyReport, FleetUnavailable, HubEndpoint, HubStatus, Progress, Say, removal_summary,
)
from hubfleet.backends.executor import ApplyCancelled, run_plan
from hubfleet.backends.local import process
from hubfleet.backends.local.fleetstate import FleetPaths, HubPaths, lock_down, observe_state, read_json, write_json_atomic
from hubfleet.backends.local.frontdoor import HOST, FrontDoor, FrontDoorError, PortTaken
from hubfleet.backends.local.hibernation import (
    hibernate, hub_lock, is_hibernated, start_hub_processes, wait_hub_api, wake,
)
from hubfleet.backends.local.hosts import FleetHosts
from hubfleet.backends.local.members import PasswordBook, demo_password, hub_members
from hubfleet.backends.local.ports import HubPorts, PortBook
from hubfleet.backends.local.proxy import ProxyNotFound, find_chp
from hubfleet.backends.local.secrets import ensure_secret, read_secret
from hubfleet.backends.local.statelock import StateLock
from hubfleet.backends.local.strays import end_strays, fleet_processes
from hubfleet.catalog import naming
from hubfleet.catalog.loader import LoadedCatalog
from hubfleet.hubapi import HubClient
from hubfleet.plan.diff import Action, Change, FleetState, Kind, Plan, diff
from hubfleet.plan.spec import FleetSpec, HubSpec
from hubfleet.plan.timetable import active_windows, warmup_schedule

__all__ = ["ApplyCancelled", "LifecycleNotAvailable", "LocalBackend", "default_demo_mode", "fleet_processes", "stop_fleet"]

DEMO_ENV = "HUBFLEET_DEMO_MODE"


class LifecycleNotAvailable(NotImplementedError):
    """Kept for callers that catch it; the local backend carries out archive and purge now (archiving.py)."""


def default_demo_mode() -> bool:
    """Demo mode (one account, shared password) unless running as root; HUBFLEET_DEMO_MODE=1 forces it."""
    return os.environ.get(DEMO_ENV, "") in ("1", "true", "yes") or os.geteuid() != 0


class LocalBackend:
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

    def _owner_pids(self, hp: HubPaths) -> set[int]:
        pids: set[int] = set()
        for pidfile in (hp.hub_pidfile, hp.proxy_pidfile):
            record = process.read_alive(pidfile)
            proc = record.process() if record else None
            if proc is not None:
                pids |= {proc.pid, *(c.pid for c in proc.children(recursive=True))}
        return pids

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

    def _with_environment_changes(self, spec: FleetSpec, planned: Plan) -> Plan:
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

    def prepare(self, spec: FleetSpec) -> None:
        """The front door's public port must be free or ours, before anything is started."""
        from hubfleet.backends.local.frontdoor import FrontDoorError

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

    # -- fleet-wide files and the front door (every apply and every reconcile tick) -------------------------------

    def sync_logins(self, spec: FleetSpec) -> list[str]:
        """members.json for every wanted hub and the passwords; return hubs whose members changed.

        Outside the plan on purpose: rosters are data, not hub config, and a hub re-reads members.json live.
        """
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
        asleep = [h.name for h in spec.hubs if is_hibernated(self.paths.hub(h.name))]
        up = {h.name: h.name not in asleep and self._alive(h.name) for h in spec.hubs}
        write_json_atomic(self.paths.fleet_json, self._fleet_document(spec, up, asleep))
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
            asleep = [h.name for h in spec.hubs if is_hibernated(self.paths.hub(h.name))]
            up = {h.name: h.name not in asleep and self._alive(h.name) for h in spec.hubs}
            write_json_atomic(self.paths.fleet_json, self._fleet_document(spec, up, asleep))
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
                    "url": self.hub_url(h.name),
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
            self._stop_hub(hp)
            return "stopped"
        if action.kind == Kind.delete:
            return self._delete(hp)
        return self._lifecycle(action, hub, hp, say)

    def _lifecycle(self, action: Action, hub: HubSpec | None, hp: HubPaths, say: Progress) -> str:
        """archive and purge of one retired presentation (the work: archiving.py and hubfleet.lifecycle)."""
        if action.kind == Kind.archive and hub is None:
            say(action, "stopping the hub first, so nobody writes mid-archive")
            self._stop_hub(hp)
        say(action, f"{action.kind.value}: running")
        return self.archiving.carry_out(action.kind.value, action.presentation or "", self._spec)

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
        _reap_leftovers(hp)
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
            "hub_url": self.hub_url(hub.name),
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

    def _stop_hub(self, hp: HubPaths) -> bool:
        return _stop_hub(hp)

    def _delete(self, hp: HubPaths) -> str:
        if not hp.dir.exists():
            return "already gone"
        # Defence in depth beside run_plan's "archive failed" rule (backends/executor.py), whatever plan asked for the delete.
        self.archiving.guard_delete(read_json(hp.applied) or {}, self._spec)
        self._stop_hub(hp)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        target = self.paths.retired / f"{hp.name}-{stamp}"
        self.paths.retired.mkdir(parents=True, exist_ok=True)
        # A move, not a delete: the sqlite db (users, tokens, server state) stays as a backup. Student files live
        # under the storage root and are not touched at all.
        shutil.move(str(hp.dir), target)
        self.ports.release(hp.name)
        return f"retired to {target}"


def _stop_servers(hp: HubPaths, timeout: float = 30.0) -> None:
    """Stop students' servers through the hub's API. Hubs run with cleanup_servers=False (a hub *restart* must not
    kill kernels), so stopping a hub for good has to ask it to stop the servers first. Best effort."""
    raw = read_json(hp.hub_json) or {}
    if process.read_alive(hp.hub_pidfile) is None or "proxy_port" not in raw:
        return
    try:
        token = read_secret(hp.service_token)
        with HubClient(f"http://{HOST}:{raw['proxy_port']}/hub/api", token, timeout=10) as api:
            users = api.users()
            running = [(u["name"], name) for u in users for name in (u.get("servers") or {})]
            for user, name in running:
                api.stop_server(user, server_name=name)
            deadline = time.monotonic() + timeout
            while running and time.monotonic() < deadline:
                time.sleep(0.3)
                running = [(u["name"], n) for u in api.users() for n in (u.get("servers") or {})]
    except Exception:  # noqa: BLE001 - the hub may be unhealthy; stopping it must still go ahead
        pass


def _stop_hub(hp: HubPaths) -> bool:
    _stop_servers(hp)
    _reap_leftovers(hp)  # before stop() forgets the dead hub's record
    stopped = process.stop(hp.hub_pidfile, timeout=20)
    stopped |= process.stop(hp.proxy_pidfile)
    return stopped


def _reap_leftovers(hp: HubPaths) -> None:
    """End the hub-managed services (idle culler) a *crashed* hub left behind.

    JupyterHub starts services in their own session, so they are not in the hub's process group and outlive a
    kill -9'd hub, holding a token and polling an API that is gone. ``process.stop`` cannot see them once the
    recorded leader is dead. They are recognised precisely: a process working in this hub's dir whose environment
    names it as a JupyterHub service of this hub, started after the dead hub. Students' servers (JUPYTERHUB_USER,
    no service name, cwd in their course folder) are never touched: the restarted hub adopts them.
    """
    record = process.read_record(hp.hub_pidfile)
    if record is None or record.process() is not None:
        return
    prefix = ((read_json(hp.hub_json) or {}).get("spec") or {}).get("base_path", "/")
    leftovers = []
    for proc in psutil.process_iter(["create_time", "cwd"]):
        try:
            if proc.info["cwd"] != str(hp.dir) or not record.started_before(proc):
                continue
            env = proc.environ()
            if env.get("JUPYTERHUB_SERVICE_NAME") and env.get("JUPYTERHUB_BASE_URL") == prefix:
                leftovers.append(proc)
        except psutil.Error:
            pass
    for proc in leftovers:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(leftovers, timeout=5)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass


def stop_fleet(state_dir: Path) -> list[str]:
    """Stop every hub, hub proxy, the front door and the portal of a state dir; return the hubs stopped.

    Needs no catalog (``hubfleet down`` must work even when the catalog is broken). No file is deleted: the next
    apply starts the same hubs with the same secrets, ports and student files. After the recorded processes, every
    process of the fleet that no record names any more (``fleet_processes``) is stopped too, so what is left running
    afterwards is nothing. The caller holds the state lock (``statelock``), or a writer could start hubs again.
    """
    paths = FleetPaths(Path(state_dir).resolve())
    names = paths.hub_names()
    with ThreadPoolExecutor(max_workers=8) as pool:
        stopped = [n for n, s in zip(names, pool.map(lambda n: _stop_hub(paths.hub(n)), names)) if s]
    FrontDoor(paths, 0).stop()
    end_strays(paths.state)
    return stopped


def _limits_note() -> str:
    from hubfleet.backends.local.cgroups import availability

    ok, how = availability()
    return "" if ok else how


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


def _tail(path: Path, nbytes: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-nbytes:]
    except OSError:
        return "(no log)"
