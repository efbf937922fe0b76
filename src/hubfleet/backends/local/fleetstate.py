"""The local fleet's state directory: where each file lives, and how ``observe()`` reads it back.

Layout (``<state>`` defaults to ``.hubfleet/`` next to the catalog)::

    <state>/fleet.json                 what the portal shows (written at every apply)
    <state>/ports.json                 stable ports per hub (PortBook) and for the front door
    <state>/demo-password              demo mode: the one shared password (0600, generated once)
    <state>/passwords.txt|.json        system-user mode: per-user passwords (plaintext for the operator, hashes)
    <state>/frontdoor/                 the front-door proxy and the portal: pidfiles, token, logs
    <state>/hubs/<hub>/                one hub: hub.json, members.json, jupyterhub_config.py, secrets, sqlite, logs
    <state>/hubs/<hub>/applied.json    the HubSpec last applied *and verified up*; absent = never came up
    <state>/hubs/<hub>/hibernated.json present while the hub sleeps (``hibernation.py``); its processes are stopped
    <state>/retired/<hub>-<stamp>/     a deleted hub's dir, kept (sqlite included) as a backup
    <state>/archives.sqlite            the archive ledger (hubfleet.lifecycle.ledger): archived/purged facts
    <state>/archives/<KEY>/<user>.*    the default archive store (tar.gz + manifest per student)
    <state>/archive-store              which store this fleet archives to, remembered once chosen
    <state>/lab/<hub>/<KEY>/           a presentation's JupyterLab config, bound read-only into its servers' sandbox

Modes (:func:`lock_down`): the state dir is 0700 and nothing under it is open to group or others, so no student
account can read a database, roster, log, token or archive, or even learn a path exists. Servers need nothing from
here but their lab config, which the sandbox (``sandbox.py``) binds in as root; the storage root, when it lives
inside the state dir (the default ``<state>/storage``), keeps the modes ``workspace.py`` gives it.

Observing is deliberately cheap (a few small file reads and a psutil lookup per hub) because the ``up`` loop does
it every few seconds and a no-op reconcile of 20 hubs must stay well under a second.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubfleet.backends.local import process
from hubfleet.lifecycle.ledger import DEFAULT_NAME as LEDGER_NAME
from hubfleet.lifecycle.ledger import Ledger
from hubfleet.plan.diff import FleetState, ObservedHub, ObservedPresentation

__all__ = ["FleetPaths", "HubPaths", "lock_down", "observe_state", "read_json", "write_json_atomic"]


@dataclass(frozen=True)
class HubPaths:
    """Every file of one hub, in one place, so backend, front door and tests agree on names."""

    dir: Path

    @property
    def name(self) -> str:
        return self.dir.name

    hub_json = property(lambda self: self.dir / "hub.json")
    members = property(lambda self: self.dir / "members.json")
    applied = property(lambda self: self.dir / "applied.json")
    hibernated = property(lambda self: self.dir / "hibernated.json")  # present while it sleeps (hibernation.py)
    config = property(lambda self: self.dir / "jupyterhub_config.py")
    hub_pidfile = property(lambda self: self.dir / "hub.pid.json")
    proxy_pidfile = property(lambda self: self.dir / "proxy.pid.json")
    logs = property(lambda self: self.dir / "logs")
    hub_log = property(lambda self: self.dir / "logs" / "hub.log")
    proxy_log = property(lambda self: self.dir / "logs" / "proxy.log")
    cookie_secret = property(lambda self: self.dir / "cookie_secret")
    proxy_token = property(lambda self: self.dir / "proxy_token")
    service_token = property(lambda self: self.dir / "service_token")
    db = property(lambda self: self.dir / "jupyterhub.sqlite")

    def secrets(self) -> list[Path]:
        return [self.cookie_secret, self.proxy_token, self.service_token]


@dataclass(frozen=True)
class FleetPaths:
    state: Path

    hubs = property(lambda self: self.state / "hubs")
    envs = property(lambda self: self.state / "envs")  # per-profile environments (environments.py)
    retired = property(lambda self: self.state / "retired")
    ports = property(lambda self: self.state / "ports.json")
    fleet_json = property(lambda self: self.state / "fleet.json")
    demo_password = property(lambda self: self.state / "demo-password")
    passwords_txt = property(lambda self: self.state / "passwords.txt")
    passwords_json = property(lambda self: self.state / "passwords.json")
    frontdoor = property(lambda self: self.state / "frontdoor")

    def hub(self, name: str) -> HubPaths:
        return HubPaths(self.hubs / name)

    def hub_names(self) -> list[str]:
        """Hubs that have a dir, whether or not they were ever verified up (a failed create leaves a dir)."""
        if not self.hubs.is_dir():
            return []
        return sorted(p.name for p in self.hubs.iterdir() if p.is_dir())


def read_json(path: Path) -> Any:
    """The JSON in ``path`` or None if it is missing or unreadable (a torn write is treated as absent)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_json_atomic(path: Path, data: Any, *, mode: int = 0o600) -> bool:
    """Write ``data`` as JSON if it differs from what is there; return True if the file changed.

    Only-if-changed matters: hubs re-read members.json when its mtime moves, and an idle reconcile loop must not
    touch anything. Atomic replace, so a hub reading mid-write sees the old or the new file, never half.
    """
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)  # the umask may have narrowed it; secrets-adjacent files need exactly this mode
    os.replace(tmp, path)
    return True


def lock_down(state: Path, storage_root: Path | None = None, store: Path | None = None) -> None:
    """Make the state dir (and a local archive store kept elsewhere) private to hubfleet's own account.

    The state dir becomes 0700 and every file and dir under it loses its group and other bits: a file some library
    created with the default umask (sqlite's ``-wal``/``-shm``, a log, an archive) is private by the next apply even
    if a parent's mode is ever loosened. The archive store's directories are created 0700 here first, so an archive
    written before the next apply lands in a private dir. Symlinks are not followed. Idempotent and cheap.
    """
    state = Path(state)
    state.mkdir(parents=True, exist_ok=True)
    for d in (state / "archives", state / "archive-staging"):
        d.mkdir(mode=0o700, exist_ok=True)
    skip = {Path(storage_root).resolve()} if storage_root is not None else set()
    tops = [state] + ([Path(store)] if store is not None and Path(store).is_dir() else [])
    for top in tops:
        os.chmod(top, 0o700)
        for root, dirs, files in os.walk(top):
            here = Path(root)
            dirs[:] = [d for d in dirs if (here / d).resolve() not in skip and not (here / d).is_symlink()]
            # A presentation's lab dir is bound into its servers as it is (0755/0644); above it, private.
            if here.parent == state / "lab":
                dirs[:] = []
            # Environments likewise (bound read-only into the servers of their profiles); the state dir's 0700 and
            # the envs dir's 0711 keep them out of reach from outside a sandbox.
            if here == state:
                dirs[:] = [d for d in dirs if d != "envs"]
            for name in (*dirs, *files):
                _private(here / name)


def _private(path: Path) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o7077:
        os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)


def hub_running(paths: HubPaths, *, own_proxy: bool) -> bool:
    """The hub process is alive (pid *and* create time match), and so is its proxy when hubfleet runs it."""
    if process.read_alive(paths.hub_pidfile) is None:
        return False
    return not own_proxy or process.read_alive(paths.proxy_pidfile) is not None


def _storage_has_files(storage_root: Path, pres: dict[str, Any]) -> bool:
    """Does any student already have files for this presentation? (guards renames; see plan.diff)

    The volume is a template like ``home/{username}`` or ``presentations/TM351-2026J/{username}``; under the
    personal-subfolder layout the presentation's own files are in ``<volume>/<COURSE-PRES>``.
    """
    storage = pres["storage"]
    if storage["layout"] == "ephemeral" or not storage["volume"]:
        return False
    pattern = storage["volume"].replace("{username}", "*")
    if storage["layout"] == "personal-subfolder":
        pattern += "/" + Path(storage["course_dir"]).name
    return next(storage_root.glob(pattern), None) is not None


def archive_facts(ledger: Ledger | None, key: str) -> tuple[bool, bool]:
    """(archived, purged) for a presentation, from the archive ledger: archived once every student's archive was
    verified and their folders removed (and none has been found bad since), purged once the archives are gone.
    The planner plans archive, delete and purge from these, so each happens once and in that order."""
    if ledger is None:
        return False, False
    return ledger.presentation_state(key)


def _open_ledger(state: Path) -> Ledger | None:
    # Only an existing ledger: observing must not create files in a state dir that never archived anything.
    return Ledger(state) if (state / LEDGER_NAME).exists() else None


def observe_state(paths: FleetPaths, storage_root: Path, *, own_proxy: bool) -> FleetState:
    hubs: dict[str, ObservedHub] = {}
    presentations: dict[str, ObservedPresentation] = {}
    ledger = _open_ledger(paths.state)
    try:
        return _observe(paths, storage_root, own_proxy, ledger, hubs, presentations)
    finally:
        if ledger is not None:
            ledger.close()


def _observe(paths: FleetPaths, storage_root: Path, own_proxy: bool, ledger: Ledger | None,
             hubs: dict[str, ObservedHub], presentations: dict[str, ObservedPresentation]) -> FleetState:
    def note(pres: dict[str, Any]) -> None:
        archived, purged = archive_facts(ledger, pres["key"])
        presentations[pres["key"]] = ObservedPresentation(
            key=pres["key"],
            layout=pres["storage"]["layout"],
            volume=pres["storage"]["volume"],
            has_files=_storage_has_files(storage_root, pres),
            archived=archived,
            purged=purged,
        )

    # Retired hubs first, so a live hub's view of a presentation wins over an old backup's.
    if paths.retired.is_dir():
        for old in sorted(paths.retired.iterdir()):
            applied = read_json(old / "applied.json")
            for pres in (applied or {}).get("presentations", []):
                note(pres)
    for name in paths.hub_names():
        hp = paths.hub(name)
        applied = read_json(hp.applied)
        if applied is None:
            continue  # never verified up: diff will plan a create, which is what retries a failed first start
        hubs[name] = ObservedHub(name=name, running=hub_running(hp, own_proxy=own_proxy), applied=applied,
                                 hibernated=hp.hibernated.exists())
        for pres in applied.get("presentations", []):
            note(pres)
    return FleetState(hubs=hubs, presentations=presentations)
