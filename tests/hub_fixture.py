"""A real JupyterHub 6 + node configurable-http-proxy, started the way the local backend will start them.

Import from a conftest::

    from hub_fixture import real_hub  # noqa: F401  (module-scoped fixture)

or build one by hand with ``RealHub.create(root, name=...)`` / ``.start()`` / ``.stop()``.

Layout under the hub's state dir: ``jupyterhub_config.py``, ``jupyterhub.sqlite``, ``cookie_secret`` (0600),
``proxy_auth_token`` (0600), ``hubfleet_api_token`` (0600), ``ports.json``, ``hub.pid.json`` / ``proxy.pid.json``,
``logs/``, ``home/{username}`` (demo-mode homes).

The proxy is started by us (``ConfigurableHTTPProxy.should_start = False``), not by the hub: see
``hubfleet.backends.local.proxy`` for why.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from hubfleet.backends.local import process
from hubfleet.backends.local.ports import HubPorts, PortBook
from hubfleet.backends.local.proxy import ProxyCommand, find_chp
from hubfleet.backends.local.secrets import ensure_secret
from hubfleet.hubapi.tls import tls_context
from hubfleet.hubapi import HubClient

VENV_BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
PASSWORD = "hubfleet-test-password"

# Scopes of the service hubfleet talks to each hub as. admin:users already implies users -> list:users,
# read:users; they are listed for readability. read:hub is for GET /info. No roles scope: roles are config-only.
# ref: https://jupyterhub.readthedocs.io/en/stable/rbac/scopes.html#available-scopes
HUBFLEET_SCOPES = ["read:hub", "list:users", "read:users", "admin:users", "admin:groups", "servers", "access:servers"]
# What jupyterhub-idle-culler needs when it only culls servers (not users).
# ref: https://github.com/jupyterhub/jupyterhub-idle-culler#permissions
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]

_CONFIG = """\
# Written by hubfleet's test fixture. Secrets are read from 0600 files, never inlined.
from pathlib import Path

state = Path({state!r})

c.JupyterHub.bind_url = {bind_url!r}
c.JupyterHub.hub_bind_url = {hub_bind_url!r}
c.JupyterHub.db_url = "sqlite:///" + str(state / "jupyterhub.sqlite")
# As the local backend tunes its hubs: without it every created user costs three fsyncs, and a few hundred
# users in one POST can outlast a client's 30 s timeout while the rest of the suite loads the disk.
from hubfleet.backends.local.dbtuning import tune_hub
tune_hub()
c.JupyterHub.cookie_secret_file = str(state / "cookie_secret")
c.JupyterHub.log_level = "INFO"

# hubfleet runs the proxy itself (tracked pidfile, persisted token); the hub only talks to its API.
# ref: https://jupyterhub.readthedocs.io/en/stable/howto/separate-proxy.html
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = {proxy_api_url!r}
c.ConfigurableHTTPProxy.auth_token = (state / "proxy_auth_token").read_text().strip()

c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
# JupyterHub >= 5 admits nobody unless allow_all or an allow list is set. ref: DESIGN.md "Known traps"
c.Authenticator.allow_all = True

c.JupyterHub.spawner_class = {spawner_class!r}
c.Spawner.cmd = {spawner_cmd!r}
c.Spawner.args = {spawner_args!r}
c.Spawner.default_url = "/lab"
{spawner_extra}

c.JupyterHub.services = [
    {{"name": "hubfleet", "api_token": (state / "hubfleet_api_token").read_text().strip()}},
    {{"name": "idle-culler", "command": {culler_cmd!r}}},
]
c.JupyterHub.load_roles = [
    {{"name": "hubfleet", "scopes": {hubfleet_scopes!r}, "services": ["hubfleet"]}},
    {{"name": "idle-culler", "scopes": {culler_scopes!r}, "services": ["idle-culler"]}},
]
"""


@dataclass
class RealHub:
    name: str
    state_dir: Path
    ports: HubPorts
    api_token: str
    spawner_class: str = "simple"
    spawner_cmd: list[str] = field(default_factory=lambda: [str(VENV_BIN / "jupyterhub-singleuser")])
    spawner_args: list[str] = field(default_factory=list)
    spawner_extra: str = ""
    start_seconds: float | None = None  # measured by start(): hub process launch -> API answers via the proxy

    # -- construction ------------------------------------------------------------------------------------------

    @classmethod
    def create(cls, root: Path, *, name: str = "test", system_users: bool = False, **kw: Any) -> RealHub:
        state = root / name
        state.mkdir(parents=True, exist_ok=True)
        ensure_secret(state / "cookie_secret")
        ensure_secret(state / "proxy_auth_token")
        token = ensure_secret(state / "hubfleet_api_token")
        ports = PortBook(state / "ports.json").ports_for(name)
        hub = cls(name=name, state_dir=state, ports=ports, api_token=token, **kw)
        if not system_users:
            # Demo mode: every user's server runs as the hub's own account, homes under the state dir.
            hub.spawner_class = "simple"
            hub.spawner_extra = f"c.SimpleLocalProcessSpawner.home_dir_template = {str(state / 'home' / '{username}')!r}"
            if os.geteuid() == 0:
                # jupyter-server refuses to run as root without it. ref: DESIGN.md "Known traps"
                hub.spawner_args = ["--allow-root"]
        hub.write_config()
        return hub

    @property
    def base_path(self) -> str:
        return f"/hubs/{self.name}/"

    @property
    def public_url(self) -> str:
        return f"http://{HOST}:{self.ports.proxy_port}{self.base_path}"

    @property
    def proxy_api_url(self) -> str:
        return f"http://{HOST}:{self.ports.proxy_api_port}"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "jupyterhub_config.py"

    @property
    def hub_pidfile(self) -> Path:
        return self.state_dir / "hub.pid.json"

    @property
    def proxy_pidfile(self) -> Path:
        return self.state_dir / "proxy.pid.json"

    def write_config(self) -> None:
        self.config_path.write_text(
            _CONFIG.format(
                state=str(self.state_dir),
                bind_url=self.public_url,
                hub_bind_url=f"http://{HOST}:{self.ports.hub_port}",
                proxy_api_url=self.proxy_api_url,
                password=PASSWORD,
                spawner_class=self.spawner_class,
                spawner_cmd=self.spawner_cmd,
                spawner_args=self.spawner_args,
                spawner_extra=self.spawner_extra,
                culler_cmd=[sys.executable, "-m", "jupyterhub_idle_culler", "--timeout=3600", "--cull-every=300"],
                hubfleet_scopes=HUBFLEET_SCOPES,
                culler_scopes=CULLER_SCOPES,
            )
        )

    # -- lifecycle ------------------------------------------------------------------------------------------

    def proxy_command(self) -> ProxyCommand:
        return ProxyCommand(
            executable=find_chp(),
            ip=HOST,
            port=self.ports.proxy_port,
            api_ip=HOST,
            api_port=self.ports.proxy_api_port,
            auth_token=(self.state_dir / "proxy_auth_token").read_text().strip(),
            error_target=f"http://{HOST}:{self.ports.hub_port}{self.base_path}hub/error",
        )

    def start(self, timeout: float = 60.0) -> float:
        """Start proxy then hub; return seconds from hub launch until its API answers through the proxy."""
        chp = self.proxy_command()
        process.start_detached(chp.argv, self.state_dir, chp.env(), self.state_dir / "logs" / "proxy.log", self.proxy_pidfile)
        _poll(lambda: httpx.get(chp.api_url + "/api/routes", headers={"Authorization": f"token {chp.auth_token}"},
                                  verify=tls_context()).status_code == 200,
              timeout, "proxy API", self.state_dir / "logs" / "proxy.log")
        env = dict(os.environ)
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
        t0 = time.monotonic()
        process.start_detached([sys.executable, "-m", "jupyterhub", "-f", str(self.config_path)], self.state_dir, env,
                               self.state_dir / "logs" / "hub.log", self.hub_pidfile)
        _poll(self._api_ready, timeout, "hub API via proxy", self.state_dir / "logs" / "hub.log")
        self.start_seconds = time.monotonic() - t0
        return self.start_seconds

    def _api_ready(self) -> bool:
        if process.read_alive(self.hub_pidfile) is None:
            raise RuntimeError("hub process exited")
        r = httpx.get(self.public_url + "hub/api/", verify=tls_context())
        return r.status_code == 200 and "version" in r.json()

    def stop(self) -> None:
        process.stop(self.hub_pidfile, timeout=20)
        process.stop(self.proxy_pidfile, timeout=10)
        # The hub's services (its idle culler) run in a session of their own, so a hub that was killed (a fault
        # test's SIGKILL) leaves them polling an API that is gone; the local backend's reap_leftovers ends them
        # for its own hubs. Without this, every run of such a test left a culler behind for good.
        left = self.services()
        for proc in left:
            proc.terminate()
        psutil.wait_procs(left, timeout=10)

    def services(self) -> list[psutil.Process]:
        """Live JupyterHub services this hub started (they work in its state dir and carry a service name)."""
        found = []
        for proc in psutil.process_iter(["cwd", "status"]):
            try:
                if proc.info["cwd"] == str(self.state_dir) and proc.info["status"] != psutil.STATUS_ZOMBIE \
                        and proc.environ().get("JUPYTERHUB_SERVICE_NAME"):
                    found.append(proc)
            except psutil.Error:
                pass
        return found

    def client(self, **kw: Any) -> HubClient:
        return HubClient(self.public_url, self.api_token, **kw)

    def records(self) -> dict[str, process.ProcessRecord | None]:
        return {"hub": process.read_alive(self.hub_pidfile), "proxy": process.read_alive(self.proxy_pidfile)}

    # -- a student's browser ------------------------------------------------------------------------------------

    def login(self, username: str, password: str = PASSWORD) -> httpx.Client:
        """Log in through the login form like a browser (with the _xsrf token); returns the cookie-carrying client."""
        browser = httpx.Client(base_url=f"http://{HOST}:{self.ports.proxy_port}", follow_redirects=False, timeout=30)
        page = browser.get(f"{self.base_path}hub/login")
        page.raise_for_status()
        # JupyterHub >= 4 checks _xsrf on form posts; it is in the form and in the _xsrf cookie.
        # ref: https://jupyterhub.readthedocs.io/en/stable/reference/websecurity.html#forms
        found = re.search(r'name="_xsrf"\s+value="([^"]+)"', page.text)
        xsrf = found.group(1) if found else browser.cookies.get("_xsrf", "")
        resp = browser.post(f"{self.base_path}hub/login", data={"username": username, "password": password, "_xsrf": xsrf})
        if resp.status_code != 302:
            raise AssertionError(f"login as {username} failed: {resp.status_code} {resp.text[:300]}")
        return browser


def process_tree(record: process.ProcessRecord | None) -> list[psutil.Process]:
    proc = record.process() if record else None
    if proc is None:
        return []
    return [proc, *proc.children(recursive=True)]


def _poll(check: Any, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        except RuntimeError as exc:
            raise RuntimeError(f"{what}: {exc}; log tail:\n{_tail(log)}") from exc
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout}s; log tail:\n{_tail(log)}")
        time.sleep(0.1)


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def world_traversable_dir(prefix: str) -> Path:
    """A temp dir other system users can traverse (pytest's tmp_path is 0700 under root, so a student could not
    reach a home or an interpreter inside it)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def real_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealHub]:
    """A running demo-mode hub at ``hub.public_url`` (``/hubs/test/``); stopped, with no leftovers, at teardown."""
    hub = RealHub.create(tmp_path_factory.mktemp("hubs"), name="test")
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()
