"""Stopping local hubs for good: the students' servers first, then the hub and its proxy, and whatever a crashed
hub left behind; and ``stop_fleet``, which stops every process of a state dir (``hubfleet down``).

Stopping for good is not a restart: hubs run with ``cleanup_servers=False`` so that a *restart* keeps students'
kernels, and a hub hibernates with its servers' processes left alone (``hibernation.py``). Only here are the servers
asked to stop. Nothing here deletes a file: the next apply starts the same hubs with the same secrets, ports and
student files.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from hubfleet.backends.local import process
from hubfleet.backends.local.fleetstate import FleetPaths, HubPaths, read_json
from hubfleet.backends.local.frontdoor import HOST, FrontDoor
from hubfleet.backends.local.secrets import read_secret
from hubfleet.backends.local.strays import end_strays
from hubfleet.hubapi import HubClient

__all__ = ["reap_leftovers", "stop_fleet", "stop_hub", "stop_servers"]


def stop_servers(hp: HubPaths, timeout: float = 30.0) -> None:
    """Stop students' servers through the hub's API. Hubs run with cleanup_servers=False (a hub *restart* must not
    kill kernels), so stopping a hub for good has to ask it to stop the servers first. Best effort."""
    raw = read_json(hp.hub_json) or {}
    if process.read_alive(hp.hub_pidfile) is None or "proxy_port" not in raw:
        return
    try:
        token = read_secret(hp.service_token)
        with HubClient(f"http://{HOST}:{raw['proxy_port']}/hub/api", token, timeout=10) as api:
            running = _servers(api.users())
            for user, name in running:
                api.stop_server(user, server_name=name)
            deadline = time.monotonic() + timeout
            while running and time.monotonic() < deadline:
                time.sleep(0.3)
                running = _servers(api.users())
    except Exception:  # noqa: BLE001 - the hub may be unhealthy; stopping it must still go ahead
        pass


def _servers(users: list[dict]) -> list[tuple[str, str]]:
    """(user, server name) of every server the hub lists in its users (what is left to stop)."""
    return [(u["name"], name) for u in users for name in (u.get("servers") or {})]


def stop_hub(hp: HubPaths) -> bool:
    stop_servers(hp)
    reap_leftovers(hp)  # before stop() forgets the dead hub's record
    stopped = process.stop(hp.hub_pidfile, timeout=20)
    stopped |= process.stop(hp.proxy_pidfile)
    return stopped


def reap_leftovers(hp: HubPaths) -> None:
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
        stopped = [n for n, s in zip(names, pool.map(lambda n: stop_hub(paths.hub(n)), names)) if s]
    FrontDoor(paths, 0).stop()
    end_strays(paths.state)
    return stopped
