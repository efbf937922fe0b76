"""Shared pieces of the z2jh tier: a running chart hub for a catalog, and what a student does through its proxy.

Sign-in: the example fleet uses ``auth: embedded``, whose Kubernetes rendering is GenericOAuthenticator against
the portal at ``https://portal.<domain>``; that needs DNS and TLS for a made-up domain and the portal serving
OAuth clients from Kubernetes Secrets, which it does not do (it reads the local backend's state). So the tier
adds, through the backend's own site-values hook (``extra_values``), the chart's ``dummy`` authenticator with
a shared password. Nothing else is added, and nothing hubfleet rendered is changed: ``allow_all: False`` and
``allow_existing_users: True`` stay, so only users created by hubfleet's enrolment sync may sign in, as in
production.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

import httpx

from hubfleet.enrol.sync import sync_spec
from hubfleet.testing.chart import ChartCluster

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "university"
PASSWORD = "z2jh-tier"
SIGN_IN = {"hub": {"config": {"JupyterHub": {"authenticator_class": "dummy"},
                              "DummyAuthenticator": {"password": PASSWORD}}}}
OPEN = dt.date(2026, 11, 1)  # A233-2026J (seeded, personal-subfolder) is open


class ChartHub:
    """One running hub of the example catalog: its proxy URL, service token and enrolled users."""

    def __init__(self, workdir: Path, hub: str, at: dt.date = OPEN, catalog: Path = EXAMPLE):
        self.hub = hub
        root = workdir / "catalog"
        shutil.copytree(catalog, root)
        self.fleet = ChartCluster(root, workdir, extra_values=SIGN_IN).start()
        try:
            spec = self.fleet.apply(at)
            self.url = self.fleet.start_hub(hub)
            self.api_url, self.token = self.fleet.endpoint(hub, self.url)
            self.changes = sync_spec(self.fleet.loaded, spec, lambda name: (self.api_url, self.token), hubs={hub})
        except BaseException:
            self.fleet.stop()
            raise

    def stop(self) -> None:
        self.fleet.stop()

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, f"{self.api_url}/{path}", headers={"Authorization": f"token {self.token}"},
                             timeout=60, **kwargs)

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

    def __init__(self, hub: ChartHub, username: str):
        self.hub, self.name = hub, username
        self.http = httpx.Client(base_url=hub.url, follow_redirects=True, timeout=60)

    def close(self) -> None:
        self.http.close()

    def sign_in(self) -> httpx.Response:
        self.http.get("/hub/login")
        return self.http.post("/hub/login", data={"username": self.name, "password": PASSWORD,
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
        return self.http.get(f"/user/{self.name}/lab")

    def pod_logs(self) -> str:
        pod = self.hub.user_pod(self.name)
        logs = self.hub.fleet.kubelet.logs(self.hub.hub, pod["metadata"]["name"]) if pod else "(no pod)"
        return logs[-4000:] + "\n--- hub ---\n" + self.hub.hub_log()[-3000:]

    def contents(self, method: str, path: str, **kwargs) -> httpx.Response:
        """The Jupyter server's contents API, as JupyterLab calls it (session cookie + XSRF header)."""
        xsrf = self.http.cookies.get("_xsrf", path=f"/user/{self.name}/")
        return self.http.request(method, f"/user/{self.name}/api/contents/{path}",
                                 headers={"X-XSRFToken": xsrf or ""}, **kwargs)

    def token(self) -> str:
        """An API token of their own, made on the hub's token page (scopes of the user)."""
        resp = self.http.post(f"/hub/api/users/{self.name}/tokens", json={"note": "z2jh tier", "expires_in": 3600},
                              headers={"X-XSRFToken": self.hub_xsrf()})
        assert resp.status_code == 201, resp.text
        return resp.json()["token"]
