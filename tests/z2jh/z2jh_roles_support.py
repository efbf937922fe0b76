"""The example university on one chart hub that moves through its calendar (for ``test_z2jh_roles.py``).

`CalendarHub` plans the example catalog with ``topology: central`` (every presentation whose phase wants a hub
is a profile set of one hub, ``example-university``), applies it on a date with real helm, starts the chart's
hub and proxy, and runs hubfleet's enrolment sync. ``at(date)`` applies the same fleet on another date, as a
platform team's daily ``hubfleet apply`` does: the release is upgraded with the new values, the hub pod is
replaced (the chart's hub Deployment carries checksums of its ConfigMap and Secret, so a real cluster rolls it;
the process kubelet runs no controller loop, so we delete the old pod and create the new one), and the sync
brings the groups up to date. The hub database (``hub-db-dir`` claim) and the students' storage
(``personal-store`` and the per-presentation claims) are directories that survive every step, so what a
student wrote while their presentation was open is still there in its read-only phase.

One hub for the whole calendar keeps the tier lean (one hub start per date instead of one per presentation);
each presentation's servers are built from its own profile exactly as on its per-presentation hub.
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

import httpx
from ruamel.yaml import YAML

from z2jh_hubs import EXAMPLE, SIGN_IN, ChartHub, Student, run_code  # noqa: F401 - the tests import it from here

from hubfleet.enrol.sync import sync_spec
from hubfleet.plan.spec import Phase, PresentationSpec
from hubfleet.backends.kubernetes.cluster import NotFound
from hubfleet.testing.chart import ChartCluster, TemplateHelm

HUB = "example-university"  # the central topology's hub: the fleet's name


# What the chart generates when values leave it unset (templates/hub/_helpers-passwords.tpl), and the values
# that would set it instead.
GENERATED = {
    "hub.config.ConfigurableHTTPProxy.auth_token": (("hub", "config", "ConfigurableHTTPProxy", "auth_token"),
                                                    ("proxy", "secretToken")),
    "hub.config.JupyterHub.cookie_secret": (("hub", "config", "JupyterHub", "cookie_secret"), ("hub", "cookieSecret")),
    "hub.config.CryptKeeper.keys": (("hub", "config", "CryptKeeper", "keys"),),
}


class LookupHelm(TemplateHelm):
    """`TemplateHelm` plus what ``helm upgrade`` does with the chart's ``lookup``: a generated secret (the proxy's
    auth token, the cookie secret, the auth-state keys) keeps the value the release's ``hub`` Secret already
    holds. ``helm template`` cannot look anything up, so without this every upgrade would hand the new hub a
    proxy token the running proxy does not know (on a cluster the proxy pod is not restarted by an upgrade).
    # ref: https://helm.sh/docs/chart_template_guide/functions_and_pipelines/#using-the-lookup-function
    """

    def upgrade_install(self, release, namespace, chart, version, values, create_namespace=True, timeout=600):
        try:
            before = self.cluster.get("v1", "Secret", namespace, "hub").get("data") or {}
        except NotFound:
            before = {}
        status = super().upgrade_install(release, namespace, chart, version, values, create_namespace, timeout)
        keep = {k: v for k, v in before.items()
                if k in GENERATED and not any(_dig(values, path) for path in GENERATED[k])}
        if keep:
            secret = self.cluster.get("v1", "Secret", namespace, "hub")
            secret["data"] = {**secret.get("data", {}), **keep}
            self.cluster.replace(secret)
        return status


def _dig(values: dict, path: tuple[str, ...]) -> object:
    for part in path:
        values = values.get(part) if isinstance(values, dict) else None
    return values


class CalendarHub(ChartHub):
    """A `ChartHub` (same attributes, so `Student` works with it) for the central render of the example."""

    def __init__(self, workdir: Path, catalog: Path = EXAMPLE):  # noqa: D107 - ChartHub's __init__ is not used
        self.hub = HUB
        root = workdir / "catalog"
        shutil.copytree(catalog, root)
        yaml = YAML()
        fleet_file = root / "fleet.yaml"
        doc = yaml.load(fleet_file)
        doc["fleet"]["topology"] = "central"
        yaml.dump(doc, fleet_file)
        self.fleet = ChartCluster(root, workdir, extra_values=SIGN_IN).start()
        self.fleet.helm = self.fleet.backend.helm = LookupHelm(self.fleet.cluster)
        self.date: dt.date | None = None
        self.url = ""
        self.spawned: set[tuple[str, str]] = set()  # (presentation key, username) that had a server

    def at(self, date: dt.date) -> None:
        """The fleet as ``hubfleet apply`` leaves it on ``date``: values, a fresh hub pod, the sync done."""
        if date == self.date:
            return
        if self.url:
            self.stop_all_servers()
        spec = self.fleet.apply(date)
        assert HUB in {h.name for h in spec.hubs}, f"no presentation of the example wants a hub on {date}"
        if not self.url:
            self.url = self.fleet.start_hub(HUB)
        else:
            self.restart_hub()
        self.host, self.domain = f"{HUB}.{spec.domain}", spec.domain
        self.api_url, self.token = self.fleet.endpoint(HUB, self.url)
        self.changes = sync_spec(self.fleet.loaded, spec, lambda name: (self.api_url, self.token), hubs={HUB})
        assert not self.changes[0].error, self.changes[0].error
        self.date = date

    def restart_hub(self, timeout: float = 120) -> None:
        """Replace the hub pod with one from the upgraded Deployment, as the rollout would."""
        cluster = self.fleet.cluster
        old = {p["metadata"]["name"] for p in self.fleet.pods(HUB, "hub")}
        for name in old:
            cluster.delete("v1", "Pod", HUB, name)
        deadline = time.monotonic() + timeout
        while {p["metadata"]["name"] for p in self.fleet.pods(HUB, "hub")} & old:
            assert time.monotonic() < deadline, "the old hub pod did not stop"
            time.sleep(0.2)
        deploy = cluster.get("apps/v1", "Deployment", HUB, "hub")
        template = deploy["spec"]["template"]
        cluster.create({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {**template.get("metadata", {}), "name": f"hub-{int(time.time() * 1000)}",
                                     "namespace": HUB},
                        "spec": template["spec"]})
        while True:
            try:
                if self.api("GET", "", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            pods = self.fleet.pods(HUB, "hub")
            assert not any(p["status"].get("phase") in ("Failed", "Succeeded") for p in pods), self.hub_log()
            assert time.monotonic() < deadline, "the new hub pod never answered:\n" + self.hub_log()[-4000:]
            time.sleep(0.3)

    def stop_all_servers(self) -> None:
        users = self.api("GET", "users", params={"state": "active"}).json()
        for user in users:
            if user.get("servers"):
                self.stop_server(user["name"])

    # ------------------------------------------------------------------------------------ the spec

    def presentation(self, key: str) -> PresentationSpec:
        return next(p for p in self.fleet.spec.hub(HUB).presentations if p.key == key)

    def phases(self) -> dict[str, Phase]:
        return {p.key: p.phase for p in self.fleet.spec.hub(HUB).presentations}

    def profile(self, key: str) -> str:
        """The slug of the presentation's default profile on this hub."""
        return next(p.name for p in self.fleet.spec.hub(HUB).profiles if p.presentation == key and p.default)

    def members(self, group: str) -> list[str]:
        resp = self.api("GET", f"groups/{group}")
        assert resp.status_code == 200, resp.text
        return sorted(resp.json()["users"])

    def course_dir(self, key: str, username: str) -> str:
        from hubfleet.backends.kubernetes.values import course_dir
        from hubfleet.catalog.naming import account_prefix, unix_account

        spec = self.fleet.spec
        account = unix_account(spec.account_prefix or account_prefix(spec.fleet), username)
        return course_dir(self.presentation(key)).replace("{hubfleet_account}", account)


class Browser(Student):
    """A signed-in person in a browser: `Student`'s sign-in and contents API, plus opening someone's server."""

    def open_server_of(self, owner: str) -> httpx.Response:
        """Go to ``owner``'s JupyterLab as a browser does: the server sends the visitor to the hub's OAuth page,
        the hub asks the visitor to authorize access to a server that is not theirs, the visitor presses
        Authorize and lands in JupyterLab (or is refused on the way). Then list the server's root folder, as
        JupyterLab's file browser does; returns that answer (or the refusal)."""
        resp = self.http.get(f"/user/{owner}/lab")
        if resp.status_code == 200 and "oauth2/authorize" in resp.url.path:
            # JupyterHub's confirmation page for someone else's server: submit its form as the button does.
            form = {"_xsrf": self.hub_xsrf(), "scopes": _hidden_scopes(resp.text)}
            resp = self.http.post(str(resp.url), data=form)
        if resp.status_code != 200 or "JupyterLab" not in resp.text:
            return resp
        self.server = str(resp.url.copy_with(path=f"/user/{owner}/", query=None))
        return self.contents_of(owner, "GET", "")

    def contents_of(self, owner: str, method: str, path: str, **kwargs) -> httpx.Response:
        xsrf = self.http.cookies.get("_xsrf", path=f"/user/{owner}/")
        return self.http.request(method, f"{self.server}api/contents/{path}", headers={"X-XSRFToken": xsrf or ""},
                                 **kwargs)


def _hidden_scopes(page: str) -> list[str]:
    import re

    return re.findall(r'<input type="hidden" name="scopes" value="([^"]*)"', page)


def storage_path(hub: CalendarHub, username: str, path: str) -> Path:
    """Where ``path`` (absolute, inside the user's notebook container) lives on the cluster's storage: the host
    directory behind the container's volumeMount that holds it (a claim's volume, or the pod's emptyDir)."""
    import posixpath

    pod = hub.user_pod(username)
    kubelet = hub.fleet.kubelet
    container = pod["spec"]["containers"][0]
    mounts = sorted(container.get("volumeMounts") or [], key=lambda m: len(m["mountPath"]), reverse=True)
    mount = next(m for m in mounts if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/"))
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
    if "persistentVolumeClaim" in volume:
        claim = hub.fleet.cluster.get("v1", "PersistentVolumeClaim", HUB, volume["persistentVolumeClaim"]["claimName"])
        base = kubelet.root / "_volumes" / (claim["spec"].get("volumeName") or f"{HUB}-{claim['metadata']['name']}")
    else:
        run = kubelet.pods[(HUB, pod["metadata"]["name"])]
        base = run.root / "volumes" / mount["name"]
    rel = posixpath.relpath(path, mount["mountPath"])
    return base / (mount.get("subPath") or "") / ("" if rel == "." else rel)
