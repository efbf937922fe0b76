"""Hibernation of local hubs: stop an idle hub's processes, and start them again on its first request.

A hibernated hub has ``<hub>/hibernated.json`` and no hub, proxy or culler process; its front-door route points to
the waker (the portal, ``web/waker.py``) instead of its proxy. Everything else stays: the sqlite database (users,
tokens), secrets, ports, members and students' files, so a woken hub is the same hub.

Who does what:

* the ``up`` loop calls ``LocalBackend.hibernate_idle`` every step; it asks each running hub's API for servers,
  pending spawns and last activity (``plan.hibernation`` decides) and calls :func:`hibernate`;
* the portal's waker calls :func:`wake` on the first request for a sleeping hub;
* ``LocalBackend._converge`` (an update or a restart of a hub) holds the same lock and clears the marker.

One lock per hub (``flock`` on ``<hub>/.wake.lock``) serialises the three across processes. Hibernating switches
the route to the waker *first* and then asks the hub again, so a spawn that began between the first look and the
switch is seen and the hub stays up; students' servers are never stopped here (the hub stops with
``descendants=False``, only its own services end with it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from hubfleet.backends.local import process
from hubfleet.backends.local.fleetstate import FleetPaths, HubPaths, read_json, write_json_atomic
from hubfleet.backends.local.proxy import ProxyCommand
from hubfleet.backends.local.secrets import read_secret
from hubfleet.hubapi import HubClient
from hubfleet.hubapi.tls import tls_context
from hubfleet.plan.hibernation import HubActivity, activity_of, awake_reason
from hubfleet.plan.spec import HubSpec

__all__ = ["WakeFailed", "hibernate", "journal", "hub_activity", "hub_lock", "hub_proxy_command", "is_hibernated",
           "start_hub_processes", "wait_hub_api", "wake"]

HOST = "127.0.0.1"


class WakeFailed(RuntimeError):
    pass


@contextlib.contextmanager
def hub_lock(hp: HubPaths) -> Iterator[None]:
    """Exclusive per hub, across processes (the ``up`` loop, ``apply``, the portal's waker)."""
    hp.dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(hp.dir / ".wake.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the flock


def is_hibernated(hp: HubPaths) -> bool:
    return hp.hibernated.exists()


def hub_proxy_command(chp: Path | str, proxy_port: int, proxy_api_port: int, hub_port: int, token: str) -> ProxyCommand:
    return ProxyCommand(
        executable=Path(chp),
        ip=HOST,
        port=proxy_port,
        api_ip=HOST,
        api_port=proxy_api_port,
        auth_token=token,
        error_target=f"http://{HOST}:{hub_port}/hub/error",
        host_routing=True,  # the hub routes each student's host to their server (JupyterHub.subdomain_host)
    )


def start_hub_processes(hp: HubPaths, say: Any = lambda message: None, *, own_proxy: bool = True) -> None:
    """Start the hub's proxy (``own_proxy``: hubfleet runs it) and JupyterHub from its ``hub.json``, whichever is
    not running; returns without waiting for them."""
    raw = read_json(hp.hub_json) or {}
    if own_proxy and process.read_alive(hp.proxy_pidfile) is None:
        say("starting proxy")
        cmd = hub_proxy_command(raw["chp"], raw["proxy_port"], raw["proxy_api_port"], raw["hub_port"],
                                read_secret(hp.proxy_token))
        process.start_detached(cmd.argv, hp.dir, cmd.env(), hp.proxy_log, hp.proxy_pidfile)
    if process.read_alive(hp.hub_pidfile) is None:
        # start_detached also finds a hub of this dir whose record was lost and waits on it instead of starting
        # a second one on the same database: a slow start is not a crash.
        say("starting hub")
        argv = [str(Path(sys.prefix) / "bin" / "jupyterhub"), "-f", str(hp.config)]
        env = dict(os.environ)
        # The hub finds jupyterhub-singleuser and the idle culler next to its own interpreter.
        env["PATH"] = f"{Path(sys.prefix) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        process.start_detached(argv, hp.dir, env, hp.hub_log, hp.hub_pidfile)


def wait_hub_api(hp: HubPaths, timeout: float, cancelled: Any = lambda: None) -> None:
    """Up means: the hub process lives and answers ``/hub/api/user`` through its proxy *with our token*."""
    raw = read_json(hp.hub_json) or {}
    url = f"http://{HOST}:{raw['proxy_port']}/hub/api/user"
    headers = {"Authorization": f"token {read_secret(hp.service_token)}"}
    deadline = time.monotonic() + timeout
    # One client for the whole wait: a client per try cost more CPU than the hub start it polls (hubapi/tls.py).
    with httpx.Client(headers=headers, timeout=5, verify=tls_context()) as client:
        while True:
            cancelled()
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if process.read_alive(hp.hub_pidfile) is None:
                raise WakeFailed(f"hub process exited while starting; see {hp.hub_log}\n{_tail(hp.hub_log)}")
            if time.monotonic() > deadline:
                raise WakeFailed(f"hub API not answering after {timeout:g}s; see {hp.hub_log}")
            time.sleep(0.1)


def hub_activity(hp: HubPaths) -> HubActivity | None:
    """What the running hub says about its users and servers; None if it is not running or not answering."""
    record = process.read_alive(hp.hub_pidfile)
    raw = read_json(hp.hub_json) or {}
    if record is None or "proxy_port" not in raw:
        return None
    up_since = dt.datetime.fromtimestamp(record.create_time, dt.timezone.utc)
    try:
        with HubClient(f"http://{HOST}:{raw['proxy_port']}/hub/api", read_secret(hp.service_token), timeout=10) as api:
            return activity_of(api.users(), up_since)
    except Exception:  # noqa: BLE001 - a hub that does not answer is not known to be idle: leave it alone
        return None


def hibernate(paths: FleetPaths, hub: HubSpec, route: Any, now: dt.datetime | None = None) -> str | None:
    """Hibernate ``hub`` if it is idle; return why it stays awake, or None once it sleeps.

    ``route(hub, proxy_port | None)`` points the hub's front-door route at its proxy, or (None) at the waker."""
    hp = paths.hub(hub.name)
    with hub_lock(hp):
        if is_hibernated(hp):
            return None

        def verdict() -> str | None:
            activity = hub_activity(hp)
            if activity is None:
                return "not answering its API"
            return awake_reason(hub, activity, now or dt.datetime.now(dt.timezone.utc))

        reason = verdict()
        if reason is not None:
            return reason
        stamp = (now or dt.datetime.now(dt.timezone.utc)).isoformat()
        write_json_atomic(hp.hibernated, {"since": stamp})
        route(hub.name, None)  # from here on, new requests reach the waker, not this hub
        reason = verdict()  # a spawn begun before the switch is seen now
        if reason is not None:
            route(hub.name, (read_json(hp.hub_json) or {}).get("proxy_port"))
            hp.hibernated.unlink(missing_ok=True)
            return reason
        _stop_processes(hp)
    record(paths, {"event": "hibernate", "hub": hub.name})
    return None


def _stop_processes(hp: HubPaths) -> None:
    """Stop JupyterHub (keeping any server it may have started: descendants=False), its services, its proxy."""
    record = process.read_alive(hp.hub_pidfile)
    services: list[psutil.Process] = []
    if record is not None and (proc := record.process()) is not None:
        for child in proc.children(recursive=True):
            try:
                env = child.environ()
            except psutil.Error:
                continue
            if env.get("JUPYTERHUB_SERVICE_NAME") and not env.get("JUPYTERHUB_USER"):
                services.append(child)
    process.stop(hp.hub_pidfile, timeout=20, descendants=False)
    for proc in services:  # a clean shutdown ends them itself; a hub that had to be killed would leave them
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _gone, alive = psutil.wait_procs(services, timeout=5)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    process.stop(hp.proxy_pidfile)


def wake(paths: FleetPaths, name: str, route: Any, timeout: float = 120.0, reason: str = "request") -> float | None:
    """Start a hibernated hub, point its route back at its proxy, clear the marker; the seconds it took, or None
    if it was not hibernated (another process woke it first). A failed start leaves it *down* (no marker), so the
    ``up`` loop restarts it with its usual backoff, and raises WakeFailed. Every wake is journaled
    (:func:`journal`) with its ``reason`` (``request``: the waker; ``timetable``: a session is coming)."""
    hp = paths.hub(name)
    with hub_lock(hp):
        if not is_hibernated(hp):
            return None
        t0 = time.monotonic()
        try:
            start_hub_processes(hp)
            wait_hub_api(hp, timeout)
            route(name, (read_json(hp.hub_json) or {})["proxy_port"])
        except Exception as exc:
            hp.hibernated.unlink(missing_ok=True)
            record(paths, {"event": "wake", "hub": name, "reason": reason, "ok": False})
            raise WakeFailed(f"{name} did not wake: {exc}") from exc
        hp.hibernated.unlink(missing_ok=True)
        took = time.monotonic() - t0
        record(paths, {"event": "wake", "hub": name, "reason": reason, "ok": True, "seconds": round(took, 3)})
        return took


def journal_path(paths: FleetPaths) -> Path:
    return paths.state / "hibernation.jsonl"


def record(paths: FleetPaths, entry: dict) -> None:
    """One line per hibernation and wake, appended (O_APPEND: whole lines from several processes); the portal's
    /metrics counts from it, so the figures survive a portal restart and include the ``up`` loop's wakes. The
    portal in a cluster records its own wakes here too (``web/waking.kubernetes_waking``)."""
    entry = {"at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **entry}
    fd = os.open(journal_path(paths), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
    finally:
        os.close(fd)


def journal(paths: FleetPaths) -> list[dict]:
    """Every journaled hibernation and wake, oldest first (a torn last line is skipped)."""
    try:
        lines = journal_path(paths).read_text().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def _tail(path: Path, nbytes: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-nbytes:]
    except OSError:
        return "(no log)"
