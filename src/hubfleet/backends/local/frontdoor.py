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
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

from hubfleet.backends.local import process
from hubfleet.backends.local.fleetstate import FleetPaths, read_json, write_json_atomic
from hubfleet.backends.local.hosts import FleetHosts
from hubfleet.backends.local.ports import PortBook
from hubfleet.backends.local.proxy import ProxyCommand
from hubfleet.backends.local.secrets import ensure_secret

__all__ = ["FrontDoor", "FrontDoorError"]

HOST = "127.0.0.1"
HOST_STORE = Path(__file__).with_name("hoststore.cjs")
# Name in the PortBook for the front door's private ports (API, portal). Not a valid hub name, so no clash.
_BOOK_NAME = "_frontdoor"


class FrontDoorError(RuntimeError):
    pass


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
        """The portal's private address, for the hubs' server-to-server OAuth calls (no name to resolve)."""
        return f"http://{HOST}:{self._ports()[1]}"

    proxy_pidfile = property(lambda self: self.dir / "proxy.pid.json")
    portal_pidfile = property(lambda self: self.dir / "portal.pid.json")
    settings_file = property(lambda self: self.dir / "frontdoor.json")

    def _token(self) -> str:
        return ensure_secret(self.dir / "api_token")

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
        api_port, portal_port = self._ports()
        wanted = {"port": self.port, "api_port": api_port, "portal_port": portal_port, "routing": "host"}
        if read_json(self.settings_file) != wanted:
            # Ports moved (another --port, or a foreign process took one): old processes listen in the wrong place.
            process.stop(self.proxy_pidfile)
            process.stop(self.portal_pidfile)
            write_json_atomic(self.settings_file, wanted)
        if process.read_alive(self.portal_pidfile) is None:
            argv = [sys.executable, "-m", "hubfleet.web.portal", "--state", str(self.paths.state), "--port", str(portal_port)]
            process.start_detached(argv, self.paths.state, None, self.dir / "portal.log", self.portal_pidfile)
        if process.read_alive(self.proxy_pidfile) is None:
            if self.chp is None:
                raise FrontDoorError("no configurable-http-proxy given to start the front door with")
            cmd = ProxyCommand(
                executable=self.chp, ip=HOST, port=self.port, api_ip=HOST, api_port=api_port, auth_token=token,
                log_level="warn",
            )
            argv = cmd.argv + ["--default-target", f"http://{HOST}:{portal_port}", "--host-routing",
                               "--storage-backend", str(HOST_STORE)]  # fmt: skip
            try:
                process.start_detached(argv, self.paths.state, cmd.env(), self.dir / "proxy.log", self.proxy_pidfile)
            except process.StartFailed as exc:
                raise FrontDoorError(f"front door could not start on {HOST}:{self.port} (port taken?): {exc}") from None
        self._wait(f"http://{HOST}:{portal_port}/healthz", self.portal_pidfile, timeout, "portal")
        self._wait(f"http://{HOST}:{api_port}/api/routes", self.proxy_pidfile, timeout, "front-door proxy", token)

    def _wait(self, url: str, pidfile: Path, timeout: float, what: str, token: str | None = None) -> None:
        headers = {"Authorization": f"token {token}"} if token else {}
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
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
        portal_port = (read_json(self.settings_file) or {}).get("portal_port") or self._ports()[1]
        wanted = {f"/{self.hosts.portal_host}": {"target": f"http://{HOST}:{portal_port}"}}
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
