"""Stable TCP ports for local hubs, persisted in the state dir.

Every local hub needs three ports: the hub's own HTTP server, its proxy's public port (what the front door
routes ``/hubs/{hub}/`` to) and its proxy's REST API. They are picked once from ports the OS says are free and
written to a JSON file, so a hub gets the same ports on every restart: the front door's routes, running
single-user servers (which call back to the hub's URL) and any bookmarked proxy API URL stay valid.

A recorded port is given up only when, at the moment a hub is about to (re)start, it is held by a *foreign*
process: something that is not one of ``owner_pids`` (the processes hubfleet recorded for this hub). Then the
hub gets a fresh port, the book is updated and the change is visible to the caller through ``HubPorts.moved``.
A port held by the hub's own processes (it is simply running) is kept.

The book is shared by concurrent hubfleet invocations: reads-modify-writes hold an ``flock`` on a sibling lock
file, and the file itself is replaced atomically (write temp, fsync, rename).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import fcntl
import json
import os
import socket
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = ["HubPorts", "PortBook"]

_ROLES = ("hub", "proxy", "proxy_api")


@dataclass(frozen=True)
class HubPorts:
    hub_port: int
    proxy_port: int
    proxy_api_port: int
    moved: tuple[str, ...] = ()  # roles re-allocated by this call because a foreign process held the old port

    def __iter__(self) -> Iterator[int]:  # so `hub, proxy, api = book.ports_for(name)` works
        return iter((self.hub_port, self.proxy_port, self.proxy_api_port))


class PortBook:
    """``PortBook(state_dir / "ports.json").ports_for("tm351-2026j")`` -> ``HubPorts(hub, proxy, proxy_api)``."""

    def __init__(self, path: str | os.PathLike[str], *, host: str = "127.0.0.1") -> None:
        self.path = Path(path)
        self.host = host  # the address hubs bind; "free" is judged by binding exactly this address

    def recorded(self, hub: str) -> HubPorts | None:
        """The ports on record for ``hub`` without checking or allocating anything (for observe/status)."""
        entry = self._load().get(hub)
        return HubPorts(*(int(entry[r]) for r in _ROLES)) if entry else None

    def all(self) -> dict[str, HubPorts]:
        return {hub: HubPorts(*(int(e[r]) for r in _ROLES)) for hub, e in self._load().items()}

    def ports_for(self, hub: str, *, owner_pids: Collection[int] = ()) -> HubPorts:
        """Return the hub's ports, allocating them on first use and replacing any held by a foreign process.

        ``owner_pids``: pids of the hub's own live processes (hub, proxy, their children). Pass them when the
        hub may be running, otherwise its own listening sockets look foreign and its ports would be moved.
        """
        owners = set(owner_pids)
        owned = functools.cache(lambda: listening_ports(owners))  # read once per call, only if a port is in use
        with self._locked():
            book = self._load()
            entry = dict(book.get(hub, {}))
            taken = {int(p) for name, e in book.items() if name != hub for p in e.values()}
            moved: list[str] = []
            for role in _ROLES:
                port = entry.get(role)
                if port is not None and int(port) not in taken and self._usable(int(port), owners, owned):
                    continue
                if port is not None:
                    moved.append(role)
                new = self._free_port(exclude=taken | {int(p) for p in entry.values()})
                entry[role] = new
                taken.add(new)
            if entry != book.get(hub):
                book[hub] = entry
                self._save(book)
        return HubPorts(*(int(entry[r]) for r in _ROLES), moved=tuple(moved))

    def release(self, hub: str) -> None:
        """Forget a hub's ports (after the hub is archived), so they may be handed to another hub."""
        with self._locked():
            book = self._load()
            if book.pop(hub, None) is not None:
                self._save(book)

    # -- checks -------------------------------------------------------------------------------------------

    def _usable(self, port: int, owners: set[int], owned: Callable[[], set[int]]) -> bool:
        if self._bindable(port):
            return True
        if owners and port in owned():
            return True  # the hub's own listener (the usual case for a running hub): no machine-wide scan needed
        holders = self._listeners(port)
        # Unknown holder (pid None: another user's socket seen without root) counts as foreign.
        return bool(holders) and all(pid in owners for pid in holders)

    def _bindable(self, port: int) -> bool:
        # SO_REUSEADDR like tornado and node do: a port left in TIME_WAIT by the hub's last run is reusable,
        # only a live listener (or a live bound socket) makes it unusable.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, port))
            except OSError as exc:
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    return False
                raise
        return True

    def _listeners(self, port: int) -> set[int | None]:
        try:
            conns = psutil.net_connections(kind="tcp")
        except psutil.AccessDenied:
            return {None}
        return {
            c.pid
            for c in conns
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
            and c.laddr.ip in (self.host, "0.0.0.0", "::", "::ffff:" + self.host)
        }

    def _free_port(self, exclude: set[int]) -> int:
        # Ask the OS for a free port; retry if it hands back one already promised to another hub (a stopped hub
        # keeps its ports on record even though the OS sees them as free).
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((self.host, 0))
                port = sock.getsockname()[1]
            if port not in exclude:
                return port
        raise RuntimeError(f"could not find a free port on {self.host} outside {len(exclude)} recorded ones")

    # -- storage --------------------------------------------------------------------------------------------

    def _load(self) -> dict[str, dict[str, int]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise ValueError(f"{self.path}: not valid JSON ({exc}); fix or delete it (hubs will get new ports)") from exc
        hubs = data.get("hubs", {}) if isinstance(data, dict) else {}
        return {str(k): {r: int(v[r]) for r in _ROLES if r in v} for k, v in hubs.items()}

    def _save(self, book: dict[str, dict[str, int]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with tmp.open("w") as fh:
            json.dump({"version": 1, "host": self.host, "hubs": dict(sorted(book.items()))}, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def listening_ports(pids: Collection[int]) -> set[int]:
    """TCP ports these processes listen on. Per process, so it reads only their own sockets: a machine-wide
    ``psutil.net_connections`` walks every process's descriptors (about 0.35 s here, on every reconcile step)."""
    ports = set()
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.Error:
            continue
        ports |= {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN and c.laddr}
    return ports
