"""Shared pieces of the z2jh tier: a running chart hub for a catalog, and what a student does through its proxy.

Sign-in: the example fleet uses ``auth: embedded``, whose Kubernetes rendering is GenericOAuthenticator against
the portal at ``https://portal.<domain>``; that needs DNS and TLS for a made-up domain and the portal serving
OAuth clients from Kubernetes Secrets, which it does not do (it reads the local backend's state). So the tier
adds, through the backend's own site-values hook (``extra_values``), one last ``hub.extraConfig`` snippet that
swaps the authenticator for JupyterHub's ``dummy`` one with a shared password. That is the only change to what
hubfleet renders, and it leaves the Authenticator settings alone: ``allow_all: False`` and
``allow_existing_users: True`` stay, so only users created by hubfleet's enrolment sync may sign in, as in
production. The OAuth sign-in itself, through the portal Deployment hubfleet renders, is covered by
test_z2jh_portal.py (two hubs, no SIGN_IN override).
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

import httpx

from hubfleet.enrol.sync import sync_spec
from hubfleet.hubapi.tls import tls_context
from hubfleet.testing.chart import ChartCluster

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "university"
PASSWORD = "z2jh-tier"
# Last of the extraConfig snippets (sorted by key), so it replaces the rendered HubfleetOAuthenticator; the
# idp-groups post_auth_hook reads OAuth tokens, which a dummy sign-in has not.
SIGN_IN = {"hub": {"extraConfig": {"99-z2jh-tier-sign-in": (
    "c.JupyterHub.authenticator_class = 'dummy'\n"
    f"c.DummyAuthenticator.password = {PASSWORD!r}\n"
    "c.DummyAuthenticator.post_auth_hook = None\n")}}}
OPEN = dt.date(2026, 11, 1)  # A233-2026J (seeded, personal-subfolder) is open


class Ingress(httpx.HTTPTransport):
    """What the cluster's ingress does for a browser: every host under the fleet's domain (the hub's host and,
    with ``subdomain_host``, each user's server host) reaches the chart's proxy, Host header unchanged; TLS is
    not modelled (the hub's public URLs say https, the hop to the proxy is plain HTTP as behind an ingress)."""

    def __init__(self, proxy_url: str, domain: str):
        super().__init__(verify=tls_context())
        self.proxy, self.domain = httpx.URL(proxy_url), domain

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        if host == self.domain or host.endswith("." + self.domain):
            # A new request: the client keeps the original (its URL decides which cookies apply).
            request = httpx.Request(request.method, request.url.copy_with(scheme="http", host=self.proxy.host,
                                                                          port=self.proxy.port),
                                    headers=request.headers, stream=request.stream, extensions=request.extensions)
        return super().handle_request(request)


class ChartHub:
    """One running hub of the example catalog: its proxy URL, service token and enrolled users."""

    def __init__(self, workdir: Path, hub: str, at: dt.date = OPEN, catalog: Path = EXAMPLE,
                 extra_students: list[tuple[str, str]] = ()):
        """``extra_students`` ((enrolment CSV, username) pairs) are appended to the copied catalog's rosters."""
        self.hub = hub
        root = workdir / "catalog"
        shutil.copytree(catalog, root)
        for csv_name, username in extra_students:
            with open(root / "enrolments" / csv_name, "a", encoding="utf-8") as roster:
                roster.write(f"Test,Student,{username},{username.split('@')[0]}@students.example.ac.uk,Student,\n")
        self.fleet = ChartCluster(root, workdir, extra_values=SIGN_IN).start()
        try:
            spec = self.fleet.apply(at)
            self.url = self.fleet.start_hub(hub)  # the proxy pod, as the ingress reaches it
            self.host = f"{hub}.{spec.domain}"  # the hub's public host (hub.config.JupyterHub.subdomain_host)
            self.domain = spec.domain
            self.api_url, self.token = self.fleet.endpoint(hub, self.url)
            self.changes = sync_spec(self.fleet.loaded, spec, lambda name: (self.api_url, self.token), hubs={hub})
        except BaseException:
            self.fleet.stop()
            raise

    def stop(self) -> None:
        if getattr(self, "_api", None) is not None:
            self._api.close()
        self.fleet.stop()

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        # One client for the hub's life: the waits poll this every 0.3-0.5 s, and a client per request spent
        # more CPU on TLS contexts than the hub on its answers (hubfleet.hubapi.tls).
        if getattr(self, "_api", None) is None:
            self._api = httpx.Client(timeout=60, verify=tls_context())
        return self._api.request(method, f"{self.api_url}/{path}", headers={"Authorization": f"token {self.token}"},
                                 **kwargs)

    def hub_log(self) -> str:
        return self.fleet.logs(self.hub, "hub")

    def hub_running(self) -> bool:
        pods = self.fleet.pods(self.hub, "hub")
        return bool(pods) and all(p["status"].get("phase") == "Running" for p in pods)

    def user_pod(self, username: str) -> dict | None:
        pods = [p for p in self.fleet.pods(self.hub, "singleuser-server")
                if p["metadata"].get("annotations", {}).get("hub.jupyter.org/username") == username]
        return pods[0] if pods else None

    def stop_server(self, username: str, timeout: float = 60) -> None:
        resp = self.api("DELETE", f"users/{username}/server")
        assert resp.status_code in (202, 204), resp.text
        deadline = time.monotonic() + timeout
        # The hub answers 202 and stops in the background: done when it lists no server and the pod is gone.
        while self.api("GET", f"users/{username}").json().get("servers") or self.user_pod(username):
            assert time.monotonic() < deadline, f"{username}'s server did not stop"
            time.sleep(0.3)


class Student:
    """A browser-like client: signs in through the hub's form and uses its server through the chart's proxy."""

    def __init__(self, hub: ChartHub, username: str, login: str | None = None):
        """``username`` as the hub stores it; ``login`` what they type at sign-in (default: the same)."""
        self.hub, self.name, self.login = hub, username, login or username
        self.http = httpx.Client(base_url=f"https://{hub.host}", follow_redirects=True, timeout=60,
                                 transport=Ingress(hub.url, hub.domain))
        self.server = ""  # https://<user host>/user/<name>/ once JupyterLab has loaded

    def close(self) -> None:
        self.http.close()

    def sign_in(self) -> httpx.Response:
        self.http.get("/hub/login")
        return self.http.post("/hub/login", data={"username": self.login, "password": PASSWORD,
                                                  "_xsrf": self.http.cookies.get("_xsrf", path="/hub/")})

    def hub_xsrf(self) -> str:
        return self.http.cookies.get("_xsrf", path="/hub/")

    def start(self, profile: str | None = None) -> httpx.Response:
        """Press Start on the spawn form (with ``profile`` chosen, if given); returns the form's answer."""
        self.http.get("/hub/spawn")
        data = {"_xsrf": self.hub_xsrf()} | ({"profile": profile} if profile else {})
        return self.http.post("/hub/spawn", data=data)

    def open_lab(self, timeout: float = 180) -> httpx.Response:
        """Wait for the server as the spawn page does, then load JupyterLab through the proxy."""
        deadline = time.monotonic() + timeout
        while True:
            server = self.hub.api("GET", f"users/{self.name}").json().get("servers", {}).get("")
            if server and server.get("ready"):
                break
            assert time.monotonic() < deadline, f"{self.name}'s server never became ready:\n" + self.pod_logs()
            time.sleep(0.5)
        lab = self.http.get(f"/user/{self.name}/lab")  # the hub redirects to the user's own host
        self.server = str(lab.url.copy_with(path=f"/user/{self.name}/", query=None))
        return lab

    def pod_logs(self) -> str:
        pod = self.hub.user_pod(self.name)
        logs = self.hub.fleet.kubelet.logs(self.hub.hub, pod["metadata"]["name"]) if pod else "(no pod)"
        return logs[-4000:] + "\n--- hub ---\n" + self.hub.hub_log()[-3000:]

    def contents(self, method: str, path: str, **kwargs) -> httpx.Response:
        """The Jupyter server's contents API, as JupyterLab calls it (session cookie + XSRF header)."""
        xsrf = self.http.cookies.get("_xsrf", path=httpx.URL(self.server).raw_path.decode())  # %-encoded, as set
        return self.http.request(method, f"{self.server}api/contents/{path}",
                                 headers={"X-XSRFToken": xsrf or ""}, **kwargs)

    def token(self) -> str:
        """An API token of their own, made on the hub's token page (scopes of the user)."""
        resp = self.http.post(f"/hub/api/users/{self.name}/tokens", json={"note": "z2jh tier", "expires_in": 3600},
                              headers={"X-XSRFToken": self.hub_xsrf()})
        assert resp.status_code == 201, resp.text
        return resp.json()["token"]


async def run_code(url: str, headers: dict, code: str) -> str:
    """Run ``code`` in a kernel over its websocket (the JSON kernel protocol); return stdout and errors."""
    import asyncio
    import json
    import uuid

    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    conn = await websocket_connect(HTTPRequest(url, headers=headers, request_timeout=60))
    msg_id = uuid.uuid4().hex
    conn.write_message(json.dumps({
        "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex, "msg_type": "execute_request",
                   "version": "5.3", "date": dt.datetime.now(dt.timezone.utc).isoformat()},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False},
    }))
    out: list[str] = []
    try:
        while True:
            raw = await asyncio.wait_for(conn.read_message(), 120)
            assert raw is not None, "kernel websocket closed"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
    finally:
        conn.close()
