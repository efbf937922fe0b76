"""Processes of a fleet that no record names any more, found and ended so that ``down`` leaves nothing running.

Records (pidfiles) are how hubfleet finds its processes, but a record can be lost or overwritten (a crash between
writes, two writers before the state lock existed) and a hub killed with -9 leaves its cullers and students'
servers behind. So after the recorded processes are stopped, ``stop_fleet`` ends whatever ``fleet_processes`` still
finds:

* what hubfleet started (hubs, their proxies, the front door, the portal), recognised by ``process.MARKER_ENV``,
  the pidfile each carries in its environment;
* what the hubs started (idle cullers, students' servers), recognised by the hub API port they talk to
  (``JUPYTERHUB_API_URL``) *and* a working dir in this fleet's state dir or storage root. The port alone is not
  enough: a stopped fleet keeps its ports on record, and another fleet may be using one of them by now.

Nothing else is touched: an operator's shell sitting in the state dir carries neither mark.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import psutil

from hubfleet.backends.local import process
from hubfleet.backends.local.fleetstate import FleetPaths, read_json

__all__ = ["end_strays", "fleet_processes"]


def fleet_processes(state_dir: Path) -> list[psutil.Process]:
    """Every live process of the fleet in ``state_dir``, recorded or not."""
    paths = FleetPaths(Path(state_dir).resolve())
    found = {p.pid: p for p in process.marked(paths.state)}
    hub_ports: set[int] = set()
    roots = {str(paths.state)}
    for name in paths.hub_names():
        raw = read_json(paths.hub(name).hub_json) or {}
        if raw.get("hub_port"):
            hub_ports.add(int(raw["hub_port"]))
        if raw.get("storage_root"):
            roots.add(str(raw["storage_root"]))
    if hub_ports:
        for proc in psutil.process_iter():
            if proc.pid in found:
                continue
            try:
                port = urlsplit(proc.environ().get("JUPYTERHUB_API_URL", "")).port
                if port in hub_ports and any(_within(proc.cwd(), root) for root in roots):
                    found[proc.pid] = proc
            except (psutil.Error, ValueError):
                pass
    return [p for p in found.values() if _alive(p)]


def end_strays(state_dir: Path, timeout: float = 10.0) -> None:
    """SIGTERM every process ``fleet_processes`` finds, SIGKILL what is left after ``timeout`` seconds."""
    strays = fleet_processes(state_dir)
    for proc in strays:
        _send(proc.terminate)
    _, alive = psutil.wait_procs(strays, timeout=timeout)
    for proc in alive:
        _send(proc.kill)
    psutil.wait_procs(alive, timeout=5)


def _send(signal_it) -> None:  # noqa: ANN001 - a bound psutil.Process method
    try:
        signal_it()
    except psutil.Error:
        pass


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
