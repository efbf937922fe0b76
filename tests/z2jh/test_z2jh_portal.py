"""Sign-in in the cluster: the portal Deployment hubfleet renders into ``_fleet/``, and two chart hubs signing in
through it, as rendered (GenericOAuthenticator, client ids, redirect URIs, the portal's in-cluster Service).

Everything runs from the rendered objects: ``apply`` creates the portal's Secrets once (signing key, session and
token secrets) and mirrors each hub's client secret to it; the process kubelet runs the portal's Deployment (the
``hubfleet portal serve`` command it names, with its Secret, claim and catalog ConfigMap volumes, as uid 65532)
and each hub's chart pods. A browser-like client follows the real OAuth redirects: the ingress is modelled by a
transport sending ``portal.<domain>`` to the portal's Service and ``<hub>.<domain>`` (and hosts below it) to that
hub's proxy; the hub's token and userinfo calls go to ``hubfleet-portal.hubfleet-system.svc.cluster.local``, which
the kubelet's /etc/hosts resolves as cluster DNS would.

The catalog is one file (the controller's ConfigMap mode). Its presentations run 2020-2099, so the portal's own
plan (for today: it takes no --at) and the test's agree on which hubs exist and that they are open.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import httpx
import pytest

from hubfleet.backends.kubernetes import portal as k8s_portal
from hubfleet.enrol.sync import sync_spec
from hubfleet.hubapi.tls import tls_context
from hubfleet.testing.chart import ChartCluster

pytestmark = pytest.mark.slow

DOMAIN = "hubs.example.ac.uk"
CATALOG = f"""\
fleet:
  name: portaltest
  backend: kubernetes
  topology: per-presentation
  domain: {DOMAIN}
  auth: {{type: embedded}}
  platform_team: [platform-admin]
  defaults:
    image: quay.io/jupyter/scipy-notebook:2026-11-24
    storage: {{layout: ephemeral}}
    container_user: jovyan
courses:
  - code: A101
    title: Course A
    presentations:
      - {{id: 2026J, start: 2020-01-01, end: 2099-12-31, expected_students: 5, enrolment: [{{users: [alice, bob]}}]}}
  - code: B202
    title: Course B
    presentations:
      - {{id: 2026J, start: 2020-01-01, end: 2099-12-31, expected_students: 5, enrolment: [{{users: [alice]}}]}}
"""
HUB_A, HUB_B = "a101-2026j", "b202-2026j"
SYSTEM = "hubfleet-system"


class ClusterIngress(httpx.HTTPTransport):
    """The ingress as a browser meets it: each host to the backend its Ingress names (TLS not modelled)."""

    def __init__(self, routes: dict[str, str]):
        super().__init__()
        self.routes = {host: httpx.URL(url) for host, url in routes.items()}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        target = self.routes.get(host) or next((u for h, u in self.routes.items() if host.endswith("." + h)), None)
        if target is not None:
            request = httpx.Request(request.method, request.url.copy_with(scheme="http", host=target.host,
                                                                          port=target.port),
                                    headers=request.headers, stream=request.stream, extensions=request.extensions)
        return super().handle_request(request)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    work = tmp_path_factory.mktemp("z2jh-portal")
    root = work / "catalog"
    root.mkdir()
    (root / "catalog.yaml").write_text(CATALOG)
    cluster = ChartCluster(root / "catalog.yaml", work).start()
    try:
        spec = cluster.apply(dt.date.today())
        assert {h.name for h in spec.hubs} == {HUB_A, HUB_B}
        # The controller's ConfigMap mode: the operator puts the one-file catalog in hubfleet-catalog.
        cluster.cluster.create({"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": "hubfleet-catalog", "namespace": SYSTEM},
                                "data": {"catalog.yaml": CATALOG}})
        hubs = {name: cluster.start_hub(name) for name in (HUB_A, HUB_B)}
        cluster.backend.hub_url = hubs.__getitem__  # hubfleet's API calls reach each hub's proxy, as the ingress
        # The controller's enrolment sync: the hubs admit the users it created (allow_existing_users).
        sync_spec(cluster.loaded, spec, lambda name: (cluster.backend.endpoint(name).api_url,
                                                      cluster.backend.endpoint(name).token))
        portal_url = _start_portal(cluster)
        routes = {f"portal.{DOMAIN}": portal_url, **{f"{name}.{DOMAIN}": url for name, url in hubs.items()}}
        yield cluster, routes
    finally:
        cluster.stop()


def _start_portal(cluster: ChartCluster, timeout: float = 90) -> str:
    import time

    (name,) = cluster.kubelet.start_deployments(SYSTEM)  # the portal is the fleet namespace's one Deployment
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = cluster.cluster.get("v1", "Pod", SYSTEM, name)
        status = pod.get("status") or {}
        if status.get("phase") in ("Failed", "Succeeded"):
            raise RuntimeError("portal pod stopped:\n" + cluster.kubelet.logs(SYSTEM, name))
        if status.get("podIP"):
            url = f"http://{status['podIP']}:{k8s_portal.PORT}"
            try:
                if httpx.get(f"{url}/healthz", timeout=2, verify=tls_context()).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
        time.sleep(0.3)
    raise TimeoutError("portal did not answer:\n" + cluster.kubelet.logs(SYSTEM, name))


def _password(cluster: ChartCluster, user: str) -> str:
    """The operator's copy on the portal's claim (``passwords.txt``, as ``kubectl exec ... cat`` would show)."""
    claim = cluster.cluster.get("v1", "PersistentVolumeClaim", SYSTEM, k8s_portal.NAME)
    claim = cluster.kubelet.root / "_volumes" / claim["spec"]["volumeName"]  # the kubelet's folder per volume
    text = (claim / "passwords.txt").read_text()
    return re.search(rf"^{re.escape(user)} (\S+)$", text, re.M).group(1)


def _browser(routes: dict[str, str]) -> httpx.Client:
    return httpx.Client(follow_redirects=True, timeout=60, transport=ClusterIngress(routes))


def _sign_in_at_portal(browser: httpx.Client, cluster: ChartCluster, user: str) -> None:
    page = browser.get(f"https://portal.{DOMAIN}/portal/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token, page.text
    done = browser.post(f"https://portal.{DOMAIN}/portal/login",
                        data={"username": user, "password": _password(cluster, user), "csrf_token": token.group(1),
                              "next": "/portal/"})
    assert done.status_code == 200 and str(done.url) == f"https://portal.{DOMAIN}/portal/", done.text[:500]


def test_one_sign_in_at_the_portal_opens_both_hubs_and_a_student_of_a_only_is_refused_at_b(fleet):
    cluster, routes = fleet
    with _browser(routes) as alice:
        _sign_in_at_portal(alice, cluster, "alice")
        links = _course_links(alice)
        assert set(links) == {HUB_A, HUB_B}
        for hub in (HUB_A, HUB_B):
            # "Open" on "your courses", then the hub's sign-in button: the hub sends the browser to the portal,
            # which answers from its session (no password form) and back.
            assert links[hub] == f"https://{hub}.{DOMAIN}/hub/"
            home = alice.get(f"{links[hub]}oauth_login?next=/hub/home")
            hops = [str(r.url) for r in home.history]
            assert home.status_code == 200 and home.url.path == "/hub/home", (hops, home.text[:500])
            assert any(h.startswith(f"https://portal.{DOMAIN}/portal/oauth/authorize") for h in hops), hops
            assert not any("/portal/login" in h for h in hops), hops
            assert "alice" in home.text
        # A spawn on hub A reaches JupyterLab (the tier's own spawn path, signed in through the portal).
        xsrf = alice.cookies.get("_xsrf", domain=f"{HUB_A}.{DOMAIN}", path="/hub/")
        alice.post(f"https://{HUB_A}.{DOMAIN}/hub/spawn", data={"_xsrf": xsrf})
        lab = _wait_for_lab(alice, cluster, HUB_A, "alice")
        assert lab.status_code == 200 and "JupyterLab" in lab.text

    with _browser(routes) as bob:
        _sign_in_at_portal(bob, cluster, "bob")
        assert set(_course_links(bob)) == {HUB_A}
        home = bob.get(f"https://{HUB_A}.{DOMAIN}/hub/oauth_login?next=/hub/home")
        assert home.status_code == 200 and home.url.path == "/hub/home"
        refused = bob.get(f"https://{HUB_B}.{DOMAIN}/hub/oauth_login?next=/hub/home")
        assert refused.status_code == 403, (refused.url, refused.text[:500])
        assert refused.url.path == "/hub/oauth_callback"


def _course_links(browser: httpx.Client) -> dict[str, str]:
    page = browser.get(f"https://portal.{DOMAIN}/portal/")
    return {hub: href for href, hub in re.findall(r'class="open" href="([^"]+)" data-hub="([^"]+)"', page.text)}


def test_the_portal_serves_what_the_hubs_were_rendered_with(fleet):
    cluster, routes = fleet
    with _browser(routes) as anon:
        meta = anon.get(f"https://portal.{DOMAIN}/portal/.well-known/openid-configuration").json()
        # A client id the portal does not know, or a redirect URI other than the rendered one, is refused.
        bad = anon.get(meta["authorization_endpoint"], params={
            "client_id": HUB_A, "redirect_uri": f"https://evil.{DOMAIN}/hub/oauth_callback", "response_type": "code"})
        assert bad.status_code == 400 and "/portal/login" not in str(bad.url)
    values = cluster.backend.values_for(next(h for h in cluster.spec.hubs if h.name == HUB_A), cluster.spec)
    oauth = values["hub"]["config"]["GenericOAuthenticator"]
    assert meta["issuer"] == f"https://portal.{DOMAIN}/portal"
    assert oauth["authorize_url"] == meta["authorization_endpoint"]
    assert oauth["client_id"] == HUB_A


def _wait_for_lab(browser: httpx.Client, cluster: ChartCluster, hub: str, user: str, timeout: float = 180):
    import time

    endpoint = cluster.backend.endpoint(hub)
    deadline = time.monotonic() + timeout
    while True:
        got = httpx.get(f"{endpoint.api_url}/users/{user}", headers={"Authorization": f"token {endpoint.token}"},
                        timeout=30)
        server = got.json().get("servers", {}).get("")
        if server and server.get("ready"):
            break
        assert time.monotonic() < deadline, cluster.logs(hub, "hub")[-3000:]
        time.sleep(0.5)
    return browser.get(f"https://{hub}.{DOMAIN}/user/{user}/lab")
