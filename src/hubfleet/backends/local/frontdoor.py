"""The front door: one node configurable-http-proxy on 127.0.0.1:<port> in front of the whole local fleet.

It routes by host (``--host-routing``, see ``hosts.py`` for the layout): ``portal.<domain>`` to the portal, a small
FastAPI app run by uvicorn; ``<hub>.<domain>`` and every host below it (that hub's students' servers) to the hub's
own proxy, which routes each student's host to their server; anything else (the bare ``<domain>``, an unknown
host) to the portal, which redirects it to the portal's own host. The wildcard needs a route store of our own
(``hoststore.cjs``): CHP's trie matches whole host names only. Proxy and portal are detached, tracked processes
(pidfile + create time) under ``<state>/frontdoor/``, so they outlive ``hubfleet apply`` and are found again by the
next command.

CHP keeps routes in memory only, so a restarted front door has none: ``sync_routes`` is called on every
reconcile and makes the route table equal to the running hubs (one GET when nothing changed).
ref: https://github.com/jupyterhub/configurable-http-proxy#using-the-rest-api

The portal listens on a unix socket in a 0700 directory, not on a TCP port: then every request it gets came through
the front door, which appends the real client address to ``X-Forwarded-For``, so the portal can trust that one
entry (and only that one) for its sign-in throttle. On loopback TCP any local process (a student's server
included) could reach the portal directly with a made-up header. CHP proxies to ``unix+http://`` targets.

Up means up for users: the public port answers ``/healthz`` with *this* fleet's id (``fleet_id``, generated once),
so a port held by another fleet or program is never taken for our front door; ``check_port`` names a port's
holder before anything is started.
"""

from __future__ import annotations

import errno
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import psutil

from hubfleet.backends.local import process
from hubfleet.backends.local.fleetstate import FleetPaths, read_json, write_json_atomic
from hubfleet.backends.local.hosts import FleetHosts
from hubfleet.backends.local.ports import PortBook
from hubfleet.backends.local.proxy import ProxyCommand
from hubfleet.backends.local.secrets import ensure_secret

__all__ = ["FrontDoor", "FrontDoorError", "PortTaken"]

HOST = "127.0.0.1"
HOST_STORE = Path(__file__).with_name("hoststore.cjs")
UPSTREAM_AGENT = Path(__file__).with_name("upstream_agent.mjs")  # keep-alive to the portal; the file says why
# Name in the PortBook for the front door's private ports (API, portal). Not a valid hub name, so no clash.
_BOOK_NAME = "_frontdoor"


class FrontDoorError(RuntimeError):
    pass


class PortTaken(FrontDoorError):
    """The public port is held by something that is not this fleet's front door (the CLI exits 2)."""

    def __init__(self, port: int, holder: str) -> None:
        self.port, self.holder = port, holder
        super().__init__(f"port {port} on {HOST} is taken by {holder}; the front door of this fleet cannot use it")


# Socket paths are limited to 108 bytes (sun_path); a deep state dir gets a private temporary directory instead.
_SUN_PATH_MAX = 100


class FrontDoor:
    def __init__(self, paths: FleetPaths, port: int, chp: Path | None = None, domain: str = "localhost") -> None:
        self.paths = paths
        self.port = port
        self.chp = chp
        self.dir = paths.frontdoor
        self.hosts = FleetHosts(domain, port)

    # -- files and addresses -----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Where people start: the portal's own host."""
        return self.hosts.portal_url

    @property
    def portal_internal_url(self) -> str:
        """Where the hubs make their server-to-server OAuth calls: the front door by address (no name to resolve;
        an unknown host reaches its default target, the portal, which answers machine paths on any host). The
        portal itself listens on a unix socket only the front door can reach."""
        return f"http://{HOST}:{self.port}"

    proxy_pidfile = property(lambda self: self.dir / "proxy.pid.json")
    portal_pidfile = property(lambda self: self.dir / "portal.pid.json")
    settings_file = property(lambda self: self.dir / "frontdoor.json")

    def _token(self) -> str:
        return ensure_secret(self.dir / "api_token")

    def fleet_id(self) -> str:
        """This fleet's identity, generated once; the portal serves it at ``/healthz`` (not a secret)."""
        return ensure_secret(self.dir / "fleet_id")

    def _portal_socket(self, settings: dict) -> Path:
        """Where the portal listens: ``<frontdoor>/run/portal.sock`` in a 0700 dir only the front door's account
        can enter (uvicorn makes the socket itself 0666)."""
        run = self.dir / "run"
        sock = run / "portal.sock"
        if len(str(sock)) > _SUN_PATH_MAX:
            old = Path(settings.get("portal_socket") or "/nonexistent")
            if old.parent.is_dir() and old.parent.stat().st_uid == psutil.Process().uids().effective:
                run, sock = old.parent, old
            else:
                run = Path(tempfile.mkdtemp(prefix="hubfleet-portal-"))
                sock = run / "portal.sock"
        run.mkdir(mode=0o700, parents=True, exist_ok=True)
        run.chmod(0o700)
        return sock

    def _ports(self) -> tuple[int, int]:
        """(proxy API port, portal port), stable across runs; the public port is the operator's choice."""
        owners = set()
        for pidfile in (self.proxy_pidfile, self.portal_pidfile):
            record = process.read_alive(pidfile)
            proc = record.process() if record else None
            if proc is not None:
                owners |= {proc.pid, *(c.pid for c in proc.children(recursive=True))}
        ports = PortBook(self.paths.ports).ports_for(_BOOK_NAME, owner_pids=owners)
        return ports.proxy_api_port, ports.hub_port

    def _api(self) -> httpx.Client:
        settings = read_json(self.settings_file) or {}
        api_port = settings.get("api_port") or self._ports()[0]
        return httpx.Client(
            base_url=f"http://{HOST}:{api_port}/api/", headers={"Authorization": f"token {self._token()}"}, timeout=10
        )

    def running(self) -> bool:
        return process.read_alive(self.proxy_pidfile) is not None and process.read_alive(self.portal_pidfile) is not None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def ensure_running(self, timeout: float = 30.0) -> None:
        """Start whichever of proxy and portal is not running; restart the proxy if the public port changed."""
        self.dir.mkdir(parents=True, exist_ok=True)
        token = self._token()
        fleet_id = self.fleet_id()
        api_port, _unused = self._ports()
        settings = read_json(self.settings_file) or {}
        sock = self._portal_socket(settings)
        wanted = {"port": self.port, "api_port": api_port, "portal_socket": str(sock), "routing": "host"}
        if settings != wanted:
            # Ports moved (another --port, or a foreign process took one): old processes listen in the wrong place.
            process.stop(self.proxy_pidfile)
            process.stop(self.portal_pidfile)
            write_json_atomic(self.settings_file, wanted)
        self.check_port()
        if process.read_alive(self.portal_pidfile) is None:
            argv = [sys.executable, "-m", "hubfleet.web.portal", "--state", str(self.paths.state), "--uds", str(sock)]
            process.start_detached(argv, self.paths.state, None, self.dir / "portal.log", self.portal_pidfile)
        if process.read_alive(self.proxy_pidfile) is None:
            if self.chp is None:
                raise FrontDoorError("no configurable-http-proxy given to start the front door with")
            cmd = ProxyCommand(
                executable=self.chp, ip=HOST, port=self.port, api_ip=HOST, api_port=api_port, auth_token=token,
                log_level="warn",
            )
            node = shutil.which("node")
            if node is None:
                raise FrontDoorError("node is not on PATH; the front door's configurable-http-proxy runs on it")
            chp_script = str(Path(cmd.argv[0]).resolve())  # the real bin/ file, so the preload finds CHP's lib/
            argv = [node, "--import", str(UPSTREAM_AGENT), chp_script, *cmd.argv[1:], "--default-target",
                    f"unix+http://{quote(str(sock), safe='')}", "--host-routing", "--storage-backend", str(HOST_STORE)]
            try:
                process.start_detached(argv, self.paths.state, cmd.env(), self.dir / "proxy.log", self.proxy_pidfile)
            except process.StartFailed as exc:
                raise FrontDoorError(f"front door could not start on {self.url} (port taken?): {exc}") from None
        self._wait("http://portal/healthz", self.portal_pidfile, timeout, "portal", uds=sock)
        self._wait(f"http://{HOST}:{api_port}/api/routes", self.proxy_pidfile, timeout, "front-door proxy", token)
        # What users use: the public port, answering for this fleet (not another fleet that holds the port).
        # By address, not by the portal's name: *.localhost needs no resolver in browsers but may have none here.
        self._wait(f"http://{HOST}:{self.port}/healthz", self.proxy_pidfile, timeout, "front door", fleet_id=fleet_id)

    def check_port(self) -> None:
        """Raise ``PortTaken`` naming the holder if the public port is held by anything but this fleet's front door."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as node does: TIME_WAIT is no obstacle
            try:
                sock.bind((HOST, self.port))
                return
            except OSError as exc:
                if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise
        ours = process.read_alive(self.proxy_pidfile)
        holders = _listeners(self.port)
        if ours is not None and holders and holders <= {ours.pid}:
            return
        raise PortTaken(self.port, _describe(holders))

    def _wait(self, url: str, pidfile: Path, timeout: float, what: str, token: str | None = None, *,
              uds: Path | None = None, fleet_id: str | None = None) -> None:  # fmt: skip
        headers = {"Authorization": f"token {token}"} if token else {}
        deadline = time.monotonic() + timeout
        transport = httpx.HTTPTransport(uds=str(uds)) if uds else None
        while True:
            try:
                with httpx.Client(transport=transport, timeout=2) as client:
                    resp = client.get(url, headers=headers)
                if resp.status_code == 200 and fleet_id is None:
                    return
                if fleet_id is not None and resp.status_code in (200, 404):
                    is_json = resp.headers.get("content-type", "").startswith("application/json")
                    answered = resp.json().get("fleet") if is_json else None
                    if answered == fleet_id:
                        return
                    raise PortTaken(self.port, f"another service (it answers {url} but not as this fleet's front door; "
                                    f"{_describe(_listeners(self.port))})")  # fmt: skip
            except (httpx.TransportError, ValueError):
                pass
            record = process.read_record(pidfile)
            if process.read_alive(pidfile) is None:
                log = Path(record.log_path) if record and record.log_path else None
                tail = log.read_text(errors="replace")[-1500:] if log and log.exists() else "(no log)"
                raise FrontDoorError(f"{what} exited while starting; log tail:\n{tail}")
            if time.monotonic() > deadline:
                raise FrontDoorError(f"{what} did not answer at {url} within {timeout:g}s")
            time.sleep(0.1)

    def stop(self) -> None:
        process.stop(self.proxy_pidfile)
        process.stop(self.portal_pidfile)

    def records(self) -> list[process.ProcessRecord]:
        return [r for r in (process.read_alive(self.proxy_pidfile), process.read_alive(self.portal_pidfile)) if r]

    # -- routes ------------------------------------------------------------------------------------------------

    def sync_routes(self, targets: dict[str, int]) -> list[str]:
        """Make the host routes equal ``portal.<domain>`` plus ``{hub: proxy_port}`` (each hub with its subdomains);
        return what changed (for the progress log)."""
        changed = []
        sock = (read_json(self.settings_file) or {}).get("portal_socket")
        if not sock:
            raise FrontDoorError("the front door is not started (no portal socket on record)")
        wanted = {f"/{self.hosts.portal_host}": {"target": f"unix+http://{quote(sock, safe='')}"}}
        for hub, port in targets.items():
            wanted[f"/{self.hosts.hub_host(hub)}"] = {"target": f"http://{HOST}:{port}", "subdomains": True}
        with self._api() as api:
            resp = api.get("routes")
            resp.raise_for_status()
            # "/" is the default target (the portal, for redirects): CHP's own, never ours to change.
            current = {path: {k: r.get(k) for k in ("target", "subdomains") if r.get(k)}
                       for path, r in resp.json().items() if path != "/"}  # fmt: skip
            for path, route in wanted.items():
                if current.get(path) != route:
                    api.post(f"routes{path}", json=route).raise_for_status()
                    changed.append(f"route {path.lstrip('/')} -> {route['target']}")
            for path in current.keys() - wanted.keys():
                api.delete(f"routes{path}").raise_for_status()
                changed.append(f"route {path.lstrip('/')} removed")
        return changed


def _listeners(port: int) -> set[int | None]:
    try:
        conns = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return {None}
    return {c.pid for c in conns if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
            and c.laddr.ip in (HOST, "0.0.0.0", "::", "::ffff:" + HOST)}  # fmt: skip


def _describe(pids: set[int | None]) -> str:
    """``pid 123 (node configurable-http-proxy ..., the front door of the fleet in /srv/x)`` or what can be told."""
    out = []
    for pid in sorted(p for p in pids if p is not None):
        try:
            proc = psutil.Process(pid)
            cmd = " ".join(proc.cmdline())[:120]
            mark = proc.environ().get(process.MARKER_ENV, "")
        except psutil.Error:
            out.append(f"pid {pid}")
            continue
        owner = ""
        if mark.endswith("/frontdoor/proxy.pid.json"):
            owner = f", the front door of the fleet in {Path(mark).parent.parent}"
        out.append(f"pid {pid} ({cmd}{owner})")
    return "; ".join(out) or "a process this account cannot see (run as root to name it)"
