"""Helpers for the hub-side tests: a hub dir built by hand the way the fleet side builds it, a browser, a kernel.

Named test_local_hub_fixture.py so it sits with the tests it serves; it holds no tests itself.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import subprocess
import sys
import sysconfig
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import portal_sign_in
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from hubfleet.backends.local import process
from hubfleet.backends.local.members import hash_password
from hubfleet.backends.local.hubconfig import write_config_file
from hubfleet.backends.local.labconfig import world_executable
from hubfleet.hubapi.tls import tls_context
from hubfleet.backends.local.ports import PortBook
from hubfleet.backends.local.proxy import find_chp
from hubfleet.backends.local.secrets import ensure_secret
from hubfleet.catalog import load_catalog, naming
from hubfleet.plan import plan

HOST = "127.0.0.1"
VENV_BIN = Path(sys.executable).parent


@dataclass
class LocalHub:
    name: str
    hub_dir: Path
    state: Path
    storage_root: Path
    catalog_root: Path
    raw: dict
    token: str

    @property
    def base(self) -> str:
        return self.raw["spec"]["base_path"]

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.raw['proxy_port']}"

    @property
    def pidfile(self) -> Path:
        return self.hub_dir / "hub.pid.json"

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.origin}{self.base}hub/api/", headers={"Authorization": f"token {self.token}"}, timeout=30)

    @property
    def portal_pidfile(self) -> Path:
        return self.hub_dir / "portal.pid.json"

    def start(self, timeout: float = 90) -> None:
        # The hubs sign in through the portal (the fleet's OpenID Connect provider), so the hub tests run one too.
        if process.read_alive(self.portal_pidfile) is None:
            argv = [sys.executable, "-m", "hubfleet.web.portal", "--state", str(self.state), "--port", str(self.raw["portal_port"])]
            process.start_detached(argv, self.hub_dir, None, self.hub_dir / "logs" / "portal.log", self.portal_pidfile)
        config = write_config_file(self.hub_dir)
        env = dict(os.environ, PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        process.start_detached([str(VENV_BIN / "jupyterhub"), "-f", str(config)], self.hub_dir, env,
                               self.hub_dir / "logs" / "hub.log", self.pidfile)  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if process.read_alive(self.pidfile) is None:
                raise RuntimeError("hub exited:\n" + self.log_tail())
            try:
                if httpx.get(f"{self.origin}{self.base}hub/api/", verify=tls_context()).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("hub not ready:\n" + self.log_tail())
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop every server through the API (they outlive the hub by design), then the hub (which stops CHP)."""
        if process.read_alive(self.pidfile) is not None:
            with self.api() as api:
                for user in api.get("users").json():
                    if user.get("servers"):
                        api.delete(f"users/{user['name']}/server")
                for _ in range(300):
                    if not any(u.get("servers") for u in api.get("users").json()):
                        break
                    time.sleep(0.2)
        process.stop(self.pidfile, timeout=30)
        process.stop(self.portal_pidfile)

    def log_tail(self, n: int = 6000) -> str:
        try:
            return (self.hub_dir / "logs" / "hub.log").read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def leftovers(self) -> list[psutil.Process]:
        """Processes that belong to this hub: its hub/CHP/culler (cmdline names the hub dir or its ports) or a
        server/kernel (cwd under the storage root)."""
        marks = [str(self.hub_dir), f"--port {self.raw['proxy_port']}", str(self.raw["proxy_api_port"])]
        found = []
        for proc in psutil.process_iter(["cmdline", "cwd", "status"]):
            try:
                cmd = " ".join(proc.info["cmdline"] or [])
                cwd = proc.info["cwd"] or ""
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:  # exited (a zombie): not running
                continue
            if any(m in cmd for m in marks) or cwd.startswith(str(self.storage_root)) or cwd.startswith(str(self.hub_dir)):
                found.append(proc)
        return found


def make_hub_dir(root: Path, catalog: Path, hub: str, *, today: dt.date, members: dict, demo: bool,
                 passwords: dict[str, str] | None = None, singleuser_python: str | None = None,
                 account_prefix: str | None = None) -> LocalHub:  # fmt: skip
    """Lay out <root>/state/hubs/<hub>/ exactly as the fleet side does, from a real plan of ``catalog``.

    ``account_prefix`` stands in for the catalog's ``fleet.account_prefix``: a test whose teardown removes its
    students' accounts names its own, so no other test file running at the same time uses those accounts."""
    loaded = load_catalog(catalog)
    spec = plan(loaded.catalog, today).hub(hub)
    state = root / "state"
    hub_dir = state / "hubs" / hub
    hub_dir.mkdir(parents=True, exist_ok=True)
    storage = root / "storage"
    storage.mkdir(exist_ok=True)
    ports = PortBook(state / "ports.json").ports_for(hub)
    portal_port = PortBook(state / "ports.json").ports_for("_portal").hub_port
    secrets = {name: hub_dir / name for name in ("cookie_secret", "proxy_token", "hubfleet_api_token")}
    for path in secrets.values():
        ensure_secret(path)
    (hub_dir / "members.json").write_text(json.dumps(members))
    if demo:
        (state / "demo-password").write_text("demo-pass\n")
        (state / "demo-password").chmod(0o600)
    pw = state / "passwords.json"
    pw.write_text(json.dumps({u: hash_password(p) for u, p in (passwords or {}).items()}))
    pw.chmod(0o600)
    raw = {
        "spec": spec.model_dump(mode="json"),
        "hub_dir": str(hub_dir),
        "storage_root": str(storage),
        "catalog_root": str(loaded.root),
        "hub_port": ports.hub_port,
        "proxy_port": ports.proxy_port,
        "proxy_api_port": ports.proxy_api_port,
        "chp": str(find_chp()),
        # The hub's own proxy stands in for the front door (the OAuth callback comes back through it); the portal
        # listens on its own port.
        "front_door": f"http://{HOST}:{ports.proxy_port}",
        "portal_url": f"http://{HOST}:{portal_port}/portal",
        "portal_port": portal_port,
        "demo_mode": demo,
        "service_token_file": str(secrets["hubfleet_api_token"]),
        "cookie_secret_file": str(secrets["cookie_secret"]),
        "proxy_token_file": str(secrets["proxy_token"]),
        "members": str(hub_dir / "members.json"),
        "fleet": loaded.catalog.fleet.name,
        "account_prefix": account_prefix or naming.account_prefix(loaded.catalog.fleet.name,
                                                                  loaded.catalog.fleet.account_prefix),
    }
    if singleuser_python:
        raw["singleuser_python"] = singleuser_python
    (hub_dir / "hub.json").write_text(json.dumps(raw, indent=2))
    token = secrets["hubfleet_api_token"].read_text().strip()
    return LocalHub(hub, hub_dir, state, storage, loaded.root, raw, token)


def student_python(root: Path) -> str | None:
    """An interpreter the students' accounts can run, or None if the dev one already is.

    The dev venv's python links into /root/.pyenv (0700). Build a venv from Debian's python3 (same minor) whose
    site-packages add the dev venv's through ``site.addsitedir`` (so its .pth files are honoured too)."""
    if world_executable(sys.executable):
        return None
    system = Path("/usr/bin/python3")
    probe = f"import sys; sys.exit(sys.version_info[:2] != {tuple(sys.version_info[:2])})"
    if not system.exists() or subprocess.run([system, "-c", probe]).returncode:
        pytest.skip("needs a world-executable python with the dev venv's minor version")
    venv = root / "student-venv"
    subprocess.run([system, "-m", "venv", "--without-pip", venv], check=True)
    site_dir = next((venv / "lib").glob("python3.*/site-packages"))
    (site_dir / "hubfleet-dev.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    return str(venv / "bin" / "python")


# -- a student's browser ---------------------------------------------------------------------------------------


def account(hub: LocalHub, username: str) -> str:
    """The student's Unix account on this hub's fleet (root mode)."""
    return naming.unix_account(hub.raw["account_prefix"], username)


def browser(hub: LocalHub) -> httpx.Client:
    return httpx.Client(base_url=hub.origin, follow_redirects=False, timeout=60)


def login(hub: LocalHub, username: str, password: str) -> tuple[httpx.Client, httpx.Response]:
    """Sign in like a browser: at the portal, then the hub's OAuth hop, followed up to the hub's answer to the
    callback (302 home when admitted, the 403 page when not). A wrong password returns the portal's 401 form."""
    b = browser(hub)
    portal = hub.raw["portal_url"]
    resp = portal_sign_in(b, username, password, portal=portal)
    if resp.status_code != 303:
        return b, resp
    resp = b.get(f"{hub.base}hub/oauth_login", params={"next": f"{hub.base}hub/home"})
    while resp.status_code in (302, 303) and "/hub/oauth_callback" not in str(resp.request.url):
        resp = b.get(resp.headers["location"])
    return b, resp


def hub_api_as(b: httpx.Client, hub: LocalHub, method: str, path: str, **kw) -> httpx.Response:
    """A hub API call with the browser's cookie; cookie-authenticated API calls need the X-XSRFToken header.
    ref: https://jupyterhub.readthedocs.io/en/stable/reference/websecurity.html#cross-site-request-forgery"""
    xsrf = next((c.value for c in b.cookies.jar if c.name == "_xsrf"), "")
    return b.request(method, f"{hub.base}hub/api/{path}", headers={"X-XSRFToken": xsrf}, **kw)


def user_token(b: httpx.Client, hub: LocalHub, username: str) -> str:
    resp = hub_api_as(b, hub, "POST", f"users/{username}/tokens", json={"note": "test", "expires_in": 3600})
    assert resp.status_code == 201, resp.text[-300:] + hub.log_tail(3000)
    return resp.json()["token"]


def wait_ready(hub: LocalHub, username: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    with hub.api() as api:
        while True:
            user = api.get(f"users/{username}").json()
            server = user.get("servers", {}).get("")
            if server and server.get("ready"):
                return server
            if time.monotonic() > deadline:
                raise RuntimeError(f"{username}'s server not ready:\n" + hub.log_tail())
            time.sleep(0.3)


def run_in_kernel(hub: LocalHub, username: str, token: str, code: str, *, path: str | None = None) -> str:
    """Start a kernel over REST (optionally with a path), run ``code``, return its stdout, shut it down."""
    server = f"{hub.origin}{hub.base}user/{username}/"
    headers = {"Authorization": f"token {token}"}
    body = {"name": "python3"} | ({"path": path} if path is not None else {})
    kernel = httpx.post(server + "api/kernels", json=body, headers=headers, timeout=60)
    assert kernel.status_code == 201, kernel.text
    kid = kernel.json()["id"]
    try:
        return asyncio.run(_execute(server.replace("http://", "ws://") + f"api/kernels/{kid}/channels", headers, code))
    finally:
        httpx.delete(server + f"api/kernels/{kid}", headers=headers, timeout=60)


async def _execute(url: str, headers: dict, code: str) -> str:
    conn = await websocket_connect(HTTPRequest(url, headers=headers, request_timeout=60))
    msg_id = uuid.uuid4().hex
    conn.write_message(json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex, "msg_type": "execute_request",
                   "version": "5.3", "date": dt.datetime.now(dt.timezone.utc).isoformat()},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False},
    }))  # fmt: skip
    out: list[str] = []
    try:
        while True:
            raw = await asyncio.wait_for(conn.read_message(), 120)
            if raw is None:
                raise RuntimeError("kernel websocket closed")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                out.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
    finally:
        conn.close()
