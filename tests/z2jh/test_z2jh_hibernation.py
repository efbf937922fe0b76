"""Hibernation on Kubernetes, on the chart tier: one real z2jh 4.4.0 hub (the chart's own hub and proxy pods run by
the process kubelet, unpatched KubeSpawner, the fake API server over HTTPS).

* the controller loop's hook (``controller_hooks(backend).rest``, what runs after every step) leaves a hub with a
  running server alone, and hibernates it once idle: its ``hub`` and ``proxy`` Deployments at 0 (release,
  database claim, secrets kept), their pods' processes gone, observed as ``hibernated`` so nothing plans a start;
* a request for the hub's host, routed as ingress-nginx routes it (``proxy-public`` has no endpoints, so the
  Ingress's ``default-backend`` annotation names the ``hubfleet-waker`` Service), reaches the portal's waker with
  its Kubernetes hooks: it scales the hub up, then the proxy once the hub's readiness probe passes, and the page
  it answers reloads the same URL until JupyterHub itself answers it;
* the waker Service's EndpointSlice follows the portal's pods (the controller's ``before`` hook copies them).

A background thread plays the Deployment controller (``kubelet.reconcile_deployments``) while waking, as a
cluster's controller manager would.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import uvicorn
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from conftest import free_port, wait_until
from z2jh_hubs import ChartHub, Student

from hubfleet.backends.kubernetes.controller import controller_hooks
from hubfleet.backends.kubernetes.hibernation import ANNOTATION
from hubfleet.backends.kubernetes.portal import NAME as PORTAL, WAKER_SERVICE
from hubfleet.backends.local.fleetstate import write_json_atomic
from hubfleet.backends.loopstats import LoopCollector, LoopStats
from hubfleet.plan import diff
from hubfleet.web.catalog_state import CatalogState
from hubfleet.web.metrics import metrics_token
from hubfleet.web.portal import PortalSource, create_app
from hubfleet.web.waking import kubernetes_waking

HUB = "m269-2026j"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    running = ChartHub(tmp_path_factory.mktemp("z2jh-sleep"), HUB)
    yield running
    running.stop()


def _replicas(hub: ChartHub) -> dict[str, int]:
    return {d["metadata"]["name"]: d["spec"]["replicas"] for d in hub.fleet.cluster.list("apps/v1", "Deployment", HUB)}


def _short(hub: ChartHub, seconds: int = 1):
    """The applied spec with this hub's hibernate_after shortened (the catalog's default is 30 minutes)."""
    spec = hub.fleet.spec
    return spec.model_copy(update={"hubs": [h.model_copy(update={"hibernate_after": seconds}) if h.name == HUB else h
                                            for h in spec.hubs]})


def _kept(hub: ChartHub) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for kind in (("v1", "Secret"), ("v1", "PersistentVolumeClaim"),
            ("v1", "ConfigMap"), ("v1", "Service")) for o in hub.fleet.cluster.list(*kind, HUB)}  # fmt: skip


def _hub_and_proxy_pids(hub: ChartHub) -> list[int]:
    runs = [r for (ns, _), r in hub.fleet.kubelet.pods.items()
            if ns == HUB and r.pod["metadata"]["labels"].get("component") in ("hub", "proxy")]
    return [r.process.pid for r in runs if r.process is not None]


def test_a_hub_with_a_running_server_is_never_hibernated(hub: ChartHub) -> None:
    backend, rest = hub.fleet.backend, controller_hooks(hub.fleet.backend).rest
    name = sorted(hub.api("GET", f"groups/{HUB}").json()["users"])[0]
    student = Student(hub, name)
    try:
        assert student.sign_in().status_code == 200
        student.start()
        assert student.open_lab().status_code == 200
        spec = _short(hub)
        wait_until(lambda: backend.hub_activity(HUB) is not None and backend.hub_activity(HUB).servers == 1,
                   what="the hub to list the server")
        for _ in range(3):  # several checks past its (1 s) idle time: a running server keeps it awake
            backend._next_idle_check.clear()
            assert rest(spec) == []
        assert {"hub": 1, "proxy": 1}.items() <= _replicas(hub).items()
    finally:
        hub.stop_server(name)
        student.close()


def test_an_idle_hub_is_hibernated_by_the_controller_loop_and_its_processes_end(hub: ChartHub, tmp_path: Path) -> None:
    backend, rest = hub.fleet.backend, controller_hooks(hub.fleet.backend).rest
    backend.stats = LoopStats(tmp_path)  # as the controller's runner sets it: its /metrics count hibernations
    kept = _kept(hub)
    pids = _hub_and_proxy_pids(hub)
    assert len(pids) == 2 and all(psutil.pid_exists(p) for p in pids)
    assert rest(hub.fleet.spec) == []  # the catalog's own hibernate_after (30 min): not yet
    spec = _short(hub)
    notes: list[str] = []
    wait_until(lambda: bool(notes.extend(rest(spec)) or notes), what="the idle hub to hibernate", every=0.3)
    assert notes == [f"{HUB} hibernated (idle for 1s, no servers)"]
    assert {"hub": 0, "proxy": 0}.items() <= _replicas(hub).items()
    hub.fleet.kubelet.reconcile_deployments({HUB})  # the ReplicaSets' turn: their pods stop
    assert not [p for p in hub.fleet.pods(HUB) if p["metadata"]["labels"].get("component") in ("hub", "proxy")]
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert _kept(hub) == kept  # release objects, database claim, secrets: all still there
    seen = backend.observe().hubs[HUB]
    assert (seen.running, seen.hibernated) == (False, True)
    assert [a for a in diff(hub.fleet.spec, backend.observe()).actions if a.hub == HUB] == []  # not down: no start
    [row] = [r for r in backend.status(spec, query_api=False) if r.name == HUB]
    assert (row.up, row.hibernated) == (False, True)
    assert rest(spec) == [] and backend.hibernate(HUB) == []  # asleep already: nothing written twice
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LoopCollector(backend.stats))
    samples = {s.name: s.value for f in text_string_to_metric_families(generate_latest(registry).decode())
               for s in f.samples}
    assert samples["hubfleet_hibernations_total"] == 1
    backend.stats = None


class IngressNginx(httpx.HTTPTransport):
    """How ingress-nginx routes a hub's host, read from the cluster's objects on every request: to proxy-public
    while it has a ready pod, else to the Service the Ingress's ``default-backend`` annotation names (the
    waker's, whose endpoint is the portal: here the portal app served on ``waker_url``); and an answer whose code
    the ``custom-http-errors`` annotation lists goes to that backend too, with X-Code, X-Namespace and
    X-Original-URI (ingress-nginx's custom errors)."""

    def __init__(self, hub: ChartHub, waker_url: str):
        super().__init__()
        self.hub, self.waker = hub, httpx.URL(waker_url)

    def _send(self, request: httpx.Request, target: httpx.URL, extra: dict | None = None) -> httpx.Response:
        headers = httpx.Headers(request.headers)
        headers.update(extra or {})
        return super().handle_request(httpx.Request(
            request.method, request.url.copy_with(scheme="http", host=target.host, port=target.port),
            headers=headers, stream=request.stream, extensions=request.extensions))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not request.url.host.endswith(self.hub.host):
            return super().handle_request(request)
        cluster = self.hub.fleet.cluster
        (ingress,) = cluster.list("networking.k8s.io/v1", "Ingress", HUB)
        notes = ingress["metadata"]["annotations"]
        fallback = notes["nginx.ingress.kubernetes.io/default-backend"]
        assert fallback == WAKER_SERVICE and cluster.get("v1", "Service", HUB, fallback)  # in the Ingress's namespace
        ready = [p for p in self.hub.fleet.pods(HUB, "proxy")
                 if any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (p.get("status") or {}).get("conditions") or [])]
        if not ready:
            return self._send(request, self.waker)
        answer = self._send(request, httpx.URL(self.hub.url))
        if str(answer.status_code) not in notes.get("nginx.ingress.kubernetes.io/custom-http-errors", "").split(","):
            return answer
        answer.read()
        answer.close()
        self.intercepted += 1
        return self._send(request, self.waker, {"X-Code": str(answer.status_code), "X-Namespace": HUB,
                                                "X-Original-URI": request.url.raw_path.decode()})

    intercepted = 0


@pytest.fixture(scope="module")
def portal_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("portal-state")


@pytest.fixture(scope="module")
def waker(hub: ChartHub, portal_state: Path):
    """The portal app with the Kubernetes waker hooks (as ``hubfleet portal serve --wake`` builds it), its fleet
    document written from the catalog, its API calls through the fake API server's store."""
    state = portal_state
    public = f"https://portal.{hub.domain}"
    write_json_atomic(state / "fleet.json",
                      CatalogState(hub.fleet.catalog_root, state, public).fleet_document(hub.fleet.loaded, hub.fleet.spec))
    source = PortalSource(state)
    backend = hub.fleet.backend
    app = create_app(source, waking=kubernetes_waking(source.fleet, hub.fleet.cluster, backend.ready_url, state=state))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="the portal to serve")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _state(hub: ChartHub) -> str:
    """What a failed wake leaves to look at: the Deployments, the pods, the hub's log."""
    cluster = hub.fleet.cluster
    deployments = {d["metadata"]["name"]: (d["spec"].get("replicas"), d.get("status"))
                   for d in cluster.list("apps/v1", "Deployment", HUB)}
    pods = {p["metadata"]["name"]: ((p.get("status") or {}).get("phase"), (p.get("status") or {}).get("conditions"))
            for p in hub.fleet.pods(HUB)}
    return f"deployments: {deployments}\npods: {pods}\nhub log:\n{hub.hub_log()[-3000:]}"


def _waker_page(resp: httpx.Response) -> bool:
    return 'id="waker-heading"' in resp.text


@contextlib.contextmanager
def deployment_controller(hub: ChartHub) -> Iterator[None]:
    """What a cluster's Deployment controller keeps doing while the block runs: pods for the Deployments scaled
    up, stopped for those at 0, and the Deployments' status (started only now: the first request must find the
    hub asleep)."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(0.3):
            hub.fleet.kubelet.reconcile_deployments({HUB})

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(10)


def portal_metrics(waker: str, state: Path) -> dict:
    """The portal's /metrics (with the fleet's bearer token), parsed: {(name, labels): value}."""
    resp = httpx.get(f"{waker}/metrics", headers={"Authorization": f"Bearer {metrics_token(state)}"})
    assert resp.status_code == 200, resp.text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def _hubs_in(metrics: dict, state: str) -> float:
    return sum(v for (name, labels), v in metrics.items() if name == "hubfleet_hubs" and ("state", state) in labels)


def test_a_request_wakes_it_through_the_waker_and_lands_on_the_page_asked(hub: ChartHub, waker: str,
                                                                          portal_state: Path) -> None:
    assert hub.fleet.backend.observe().hubs[HUB].hibernated  # (the previous test put it to sleep)
    # The portal's /metrics sees the cluster as the waker does: this hub asleep, no wake yet.
    before = portal_metrics(waker, portal_state)
    assert _hubs_in(before, "hibernated") == 1 and _hubs_in(before, "running") == 0
    woken = ("hubfleet_wakes_total", (("outcome", "ok"), ("reason", "request")))
    assert before[woken] == 0
    asked = f"https://{hub.host}/hub/login?next=%2Fhub%2Fhome"
    seen: list[int] = []
    with httpx.Client(transport=IngressNginx(hub, waker), timeout=30) as browser:
        first = browser.get(asked)
        with deployment_controller(hub):
            assert first.status_code == 200 and _waker_page(first), first.text[:500]
            assert "Starting Algorithms, data structures and computability" in first.text
            assert '<meta http-equiv="refresh" content="1">' in first.text

            def reload() -> bool:  # the page's meta refresh: the same URL again
                resp = browser.get(asked)
                seen.append(resp.status_code)
                return not _waker_page(resp)

            try:
                wait_until(reload, timeout=180, what="the hub to wake", every=0.5)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{_state(hub)}") from None
            landed = browser.get(asked)
    assert all(code == 200 for code in seen), seen  # no error while waking, not even the proxy's own 503s
    assert landed.headers.get("x-jupyterhub-version") and str(landed.url) == asked and landed.status_code == 200
    assert _replicas(hub)["hub"] == 1 and _replicas(hub)["proxy"] == 1
    deploy = hub.fleet.cluster.get("apps/v1", "Deployment", HUB, "hub")
    assert ANNOTATION not in (deploy["metadata"].get("annotations") or {})
    assert hub.fleet.backend.observe().hubs[HUB].running
    # Running once the Deployments say both are ready (their status, which the Deployment controller writes), and
    # the wake counted once the waker's own wait for the hub is over (it may end just after the browser lands).
    def counted() -> bool:
        now = portal_metrics(waker, portal_state)
        return _hubs_in(now, "running") == 1 and now[woken] == 1

    with deployment_controller(hub):
        wait_until(counted, what="the hub counted running and its wake counted")
    after = portal_metrics(waker, portal_state)
    assert _hubs_in(after, "hibernated") == 0 and after[("hubfleet_wake_duration_seconds_count", ())] == 1


def test_the_waker_service_follows_the_portal_pods(hub: ChartHub) -> None:
    cluster, backend = hub.fleet.cluster, hub.fleet.backend
    slice_of = lambda: cluster.get("discovery.k8s.io/v1", "EndpointSlice", HUB, WAKER_SERVICE)  # noqa: E731
    assert slice_of()["endpoints"] == []  # rendered with the hub; no portal pod yet
    # What the cluster's EndpointSlice controller writes for the portal's Service once its pod is ready.
    cluster.create({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                    "metadata": {"name": f"{PORTAL}-abcde", "namespace": "hubfleet-system",
                                 "labels": {"kubernetes.io/service-name": PORTAL}},
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                    "endpoints": [{"addresses": ["10.42.0.17"], "conditions": {"ready": True}}]})
    before = controller_hooks(backend).before
    assert before(hub.fleet.spec)  # it wrote the hubs' slices
    assert slice_of()["endpoints"] == [{"addresses": ["10.42.0.17"], "conditions": {"ready": True}}]
    assert slice_of()["metadata"]["labels"]["kubernetes.io/service-name"] == WAKER_SERVICE
    assert before(hub.fleet.spec) == []  # nothing moved: nothing written



def test_the_portals_own_link_wakes_a_sleeping_hub_on_any_ingress(hub: ChartHub, waker: str) -> None:
    """``/portal/wake/<hub>/<path>`` on the portal's host (what "your courses" links a sleeping hub to) needs no
    ingress feature: the same wake, then a redirect to the hub once its Deployments are ready."""
    backend = hub.fleet.backend
    assert backend.hibernate(HUB) == ["hub", "proxy"]
    hub.fleet.kubelet.reconcile_deployments({HUB})
    link = f"{waker}/portal/wake/{HUB}/hub/home"
    portal_host = {"Host": f"portal.{hub.domain}"}
    with httpx.Client(timeout=30, headers=portal_host) as browser:
        first = browser.get(link)
        with deployment_controller(hub):
            assert first.status_code == 200 and _waker_page(first), first.text[:300]
            answers: list[httpx.Response] = []
            wait_until(lambda: answers.append(browser.get(link)) or answers[-1].status_code != 200, timeout=180,
                       what="the hub to wake from the portal's link", every=0.5)
    assert answers[-1].status_code == 303 and answers[-1].headers["location"] == f"https://{hub.host}/hub/home"
    assert all(_waker_page(a) for a in answers[:-1])
    assert backend.observe().hubs[HUB].running
    assert httpx.get(backend.ready_url(HUB), timeout=10).status_code == 200  # what the redirect reaches
