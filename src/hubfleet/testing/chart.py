"""Zero-to-JupyterHub hubs on the fake cluster: real ``helm template``, the chart's own hub and proxy pods.

`TemplateHelm` is a `Helm` for `KubernetesBackend`: ``upgrade_install`` runs the real helm binary's
``helm template`` on the chart folder (``shared/reference/z2jh-4.4.0/chart``) with the values hubfleet
rendered, and writes every object into the cluster as ``helm upgrade --install`` would (no hooks, no
``--wait``; releases are remembered in memory, like FakeHelm's).

`ChartCluster` puts the pieces together: a `ServedCluster` behind `KubeApiServer`, a `ProcessKubelet`
whose runtimes stand in for the hub image (a venv with ``hub-image-requirements.txt``), the CHP image (node
configurable-http-proxy) and every singleuser image (a venv with jupyterhub-singleuser and JupyterLab), and
a real `KubernetesBackend` that applies hubfleet's plan. ``start_hub`` starts the release's Deployments as
pods: the hub runs the chart's ``jupyterhub_config.py`` unchanged from the rendered ``hub`` ConfigMap and
Secret mounted at ``/usr/local/etc/jupyterhub``; KubeSpawner in it talks to the fake API server with the
mounted service-account token. Nothing hubfleet renders is changed; ``extra_values`` (the backend's own
site-values hook) may add to them, and the tests say what they add and why.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from ruamel.yaml import YAML

from hubfleet.backends.kubernetes.backend import KubernetesBackend
from hubfleet.backends.kubernetes.cluster import apply_object
from hubfleet.backends.kubernetes.helm import HelmError, ReleaseStatus
from hubfleet.backends.kubernetes.validation import reference_dir
from hubfleet.catalog import load_catalog
from hubfleet.hubapi.tls import tls_context
from hubfleet.plan import FleetSpec, diff
from hubfleet.plan import plan as make_plan

from . import toolchain
from .kubeapi import KubeApiServer, ServedCluster
from .kubelet import ProcessKubelet, Runtime

HUB_IMAGE = "quay.io/jupyterhub/k8s-hub"
CHP_IMAGE = "quay.io/jupyterhub/configurable-http-proxy"
HUBFLEET_IMAGE = "ghcr.io/hubfleet/hubfleet"  # RenderOptions.controller_image, without its tag
HUB_PORT, PROXY_PORT = 8081, 8000


def chart_dir() -> Path:
    return reference_dir() / "chart"


class TemplateHelm:
    """`Helm` that renders with ``helm template`` and writes the objects into a ServedCluster."""

    def __init__(self, cluster: ServedCluster, helm: Path | None = None):
        self.cluster = cluster
        self.helm = str(helm or toolchain.helm_binary())
        self.releases: dict[tuple[str, str], tuple[ReleaseStatus, dict]] = {}
        self.rendered: dict[tuple[str, str], list[dict]] = {}

    def status(self, release: str, namespace: str) -> ReleaseStatus | None:
        found = self.releases.get((namespace, release))
        return found[0] if found else None

    def get_values(self, release: str, namespace: str) -> dict | None:
        found = self.releases.get((namespace, release))
        return copy.deepcopy(found[1]) if found else None

    def template(self, release: str, namespace: str, chart: str, values: dict) -> list[dict]:
        yaml = YAML(typ="safe", pure=True)
        # JSON, as HelmCli passes values: YAML 1.2 writes "yes" bare, which helm's YAML 1.1 reads as true.
        with tempfile.NamedTemporaryFile("w", suffix=".json") as handle:
            json.dump(values, handle)
            handle.flush()
            done = subprocess.run([self.helm, "template", release, chart, "--namespace", namespace,
                                   "--values", handle.name], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise HelmError(f"helm template {release}", done.stderr, done.returncode)
        return [doc for doc in yaml.load_all(done.stdout) if doc]

    def upgrade_install(self, release: str, namespace: str, chart: str, version: str, values: dict,
                        create_namespace: bool = True, timeout: float = 600) -> ReleaseStatus:
        objects = self.template(release, namespace, chart, values)
        for obj in objects:
            obj["metadata"].setdefault("namespace", namespace)
            labels = obj["metadata"].setdefault("labels", {})
            labels.setdefault("app.kubernetes.io/managed-by", "Helm")
            apply_object(self.cluster, obj)
        previous = self.status(release, namespace)
        status = ReleaseStatus(release, namespace, (previous.revision + 1) if previous else 1, "deployed",
                               "jupyterhub", version, version)
        self.releases[(namespace, release)] = (status, copy.deepcopy(values))
        self.rendered[(namespace, release)] = objects
        return status

    def uninstall(self, release: str, namespace: str) -> None:
        for obj in self.rendered.pop((namespace, release), []):
            try:
                self.cluster.delete(obj["apiVersion"], obj["kind"], namespace, obj["metadata"]["name"])
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.releases.pop((namespace, release), None)


class ChartCluster:
    """A fake cluster running real z2jh hubs for a catalog (see the module docstring). Use as a context manager."""

    def __init__(self, catalog_root: Path, workdir: Path, extra_values: dict | Callable | None = None):
        self.catalog_root, self.workdir = Path(catalog_root), Path(workdir)
        self.cluster = ServedCluster()
        self.api = KubeApiServer(self.cluster, self.workdir / "apiserver")
        self.extra_values = extra_values
        self.helm: TemplateHelm | None = None
        self.kubelet: ProcessKubelet | None = None
        self.backend: KubernetesBackend | None = None
        self.spec: FleetSpec | None = None

    def __enter__(self) -> ChartCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ChartCluster:
        self.api.start()
        repo = toolchain.REPO
        notebook = Runtime("notebook", [str(repo / ".venv" / "bin")], docker_stacks=True,
                           env={"HOME": "/home/jovyan", "NB_USER": "jovyan", "NB_UID": "1000", "NB_GID": "100",
                                "SHELL": "/bin/bash", "LANG": "C.UTF-8"})
        runtimes = {
            HUB_IMAGE: Runtime("hub", [str(toolchain.hub_venv() / "bin")], env={"LANG": "C.UTF-8"},
                                 workdir="/srv/jupyterhub"),
            CHP_IMAGE: Runtime("proxy", [str(repo / "node_modules" / ".bin")]),
            # hubfleet's own image (the portal and controller Deployments in _fleet/): this checkout's venv.
            HUBFLEET_IMAGE: Runtime("hubfleet", [str(repo / ".venv" / "bin")], env={"LANG": "C.UTF-8"}),
        }
        self.kubelet = ProcessKubelet(self.api, self.workdir / "kubelet", runtimes, notebook)
        self.helm = TemplateHelm(self.cluster)
        self.backend = KubernetesBackend(self.cluster, self.helm, chart=str(chart_dir()),
                                         catalog_root=self.catalog_root, extra_values=self.extra_values)
        return self

    def apply(self, at) -> FleetSpec:  # noqa: ANN001 - a datetime.date
        """Plan the catalog on ``at`` and apply it (namespaces, Secrets, material, helm releases)."""
        loaded = load_catalog(self.catalog_root)
        catalog = loaded.catalog.model_copy(update={"fleet": loaded.catalog.fleet.model_copy(
            update={"backend": "kubernetes"})})
        self.loaded = loaded
        self.spec = make_plan(catalog, at)
        self.backend.apply_fleet_objects(self.spec)
        report = self.backend.apply(diff(self.spec, self.backend.observe()), self.spec)
        failed = [r for r in report.results if not r.ok]
        if failed:
            raise RuntimeError("apply failed: " + "; ".join(f"{r.action.hub}: {r.message}" for r in failed))
        return self.spec

    def start_hub(self, hub: str, timeout: float = 120) -> str:
        """Start the release's hub and proxy pods; return the proxy's public URL once the hub answers."""
        self.kubelet.start_deployments(hub)
        deadline = time.monotonic() + timeout
        url = None
        with httpx.Client(timeout=2, verify=tls_context()) as client:  # one client, not one per try
            while time.monotonic() < deadline:
                pods = {p["metadata"]["labels"].get("component"): p for p in self.cluster.list("v1", "Pod", hub)}
                proxy = pods.get("proxy")
                for name, pod in pods.items():
                    if name in ("hub", "proxy") and pod["status"].get("phase") in ("Failed", "Succeeded"):
                        raise RuntimeError(f"{name} pod of {hub} stopped:\n" + self.logs(hub, name))
                if proxy and proxy["status"].get("podIP"):
                    url = f"http://{proxy['status']['podIP']}:{PROXY_PORT}"
                    try:
                        if client.get(f"{url}/hub/api/").status_code == 200:
                            return url
                    except httpx.HTTPError:
                        pass
                time.sleep(0.3)
        raise TimeoutError(f"hub {hub} did not answer through its proxy ({url}):\n" + self.logs(hub, "hub"))

    def pods(self, namespace: str, component: str | None = None) -> list[dict]:
        return [p for p in self.cluster.list("v1", "Pod", namespace)
                if component is None or p["metadata"]["labels"].get("component") == component]

    def logs(self, namespace: str, component: str) -> str:
        return "\n".join(self.kubelet.logs(namespace, p["metadata"]["name"])
                         for p in self.pods(namespace, component))

    def endpoint(self, hub: str, proxy_url: str) -> tuple[str, str]:
        """(api_url, hubfleet's service token) of a started hub, through its proxy."""
        self.backend.hub_url = lambda name: proxy_url
        ep = self.backend.endpoint(hub)
        return ep.api_url, ep.token

    def stop(self) -> None:
        if self.kubelet is not None:
            self.kubelet.stop_all()
        self.api.stop()


def clean(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
