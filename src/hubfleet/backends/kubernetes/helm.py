"""Helm as the kubernetes backend uses it: one release of the z2jh chart per hub.

`HelmCli` drives the real `helm` binary; `FakeHelm` keeps releases in memory (optionally writing a stand-in
for the chart's objects into a `FakeCluster`) so the backend's apply logic can be tested without a cluster.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .cluster import NotFound
from .fake import FakeCluster
from .validation import Z2JH_VERSION, validate_chart_values

# Where the z2jh chart is published; used when the chart is given by bare name ("jupyterhub").
Z2JH_REPO = "https://hub.jupyter.org/helm-chart/"
KEEP_ANNOTATION = "helm.sh/resource-policy"


class HelmError(Exception):
    """helm failed; `stderr` is helm's own explanation, kept whole for the operator."""

    def __init__(self, message: str, stderr: str = "", returncode: int | None = None):
        self.stderr = stderr.strip()
        self.returncode = returncode
        super().__init__(f"{message}: {self.stderr}" if self.stderr else message)


class HelmMissing(HelmError):
    """No helm binary on PATH."""


class ReleaseNotFound(HelmError):
    """The release does not exist in that namespace."""


@dataclass(frozen=True)
class ReleaseStatus:
    name: str
    namespace: str
    revision: int
    status: str  # deployed | failed | pending-install | pending-upgrade | superseded | uninstalling ...
    chart: str = ""
    chart_version: str = ""
    app_version: str = ""
    description: str = ""

    @property
    def deployed(self) -> bool:
        return self.status == "deployed"


@runtime_checkable
class Helm(Protocol):
    def status(self, release: str, namespace: str) -> ReleaseStatus | None: ...

    def get_values(self, release: str, namespace: str) -> dict | None: ...

    def upgrade_install(
        self,
        release: str,
        namespace: str,
        chart: str,
        version: str,
        values: dict,
        create_namespace: bool = True,
        timeout: float = 600,
    ) -> ReleaseStatus: ...

    def uninstall(self, release: str, namespace: str) -> None: ...


# ---------------------------------------------------------------------------------------------- CLI


class HelmCli:
    """`Helm` over the helm 3 binary. Raises HelmMissing at construction if there is none."""

    def __init__(
        self,
        binary: str = "helm",
        kubeconfig: str | None = None,
        kube_context: str | None = None,
        repo: str | None = Z2JH_REPO,
    ):
        path = shutil.which(binary)
        if path is None:
            raise HelmMissing(
                f"the helm binary ({binary}) is not on PATH; install Helm 3 (https://helm.sh/docs/intro/install/, "
                "e.g. the get-helm-3 script or your distribution's helm package) or pass its path"
            )
        self.binary = path
        self.repo = repo
        self._globals = []
        if kubeconfig:
            self._globals += ["--kubeconfig", kubeconfig]
        if kube_context:
            self._globals += ["--kube-context", kube_context]

    def status(self, release: str, namespace: str) -> ReleaseStatus | None:
        out = self._run(["status", release, "--namespace", namespace, "--output", "json"], missing_ok=True)
        return None if out is None else _parse_release(json.loads(out), release, namespace)

    def get_values(self, release: str, namespace: str) -> dict | None:
        # User-supplied values only (no --all): that is what we rendered, so it is what we compare against.
        out = self._run(["get", "values", release, "--namespace", namespace, "--output", "json"], missing_ok=True)
        if out is None:
            return None
        return json.loads(out) or {}  # helm prints `null` for a release installed with no values

    def upgrade_install(
        self,
        release: str,
        namespace: str,
        chart: str,
        version: str,
        values: dict,
        create_namespace: bool = True,
        timeout: float = 600,
    ) -> ReleaseStatus:
        # Values go through a file, not --set: --set re-parses strings ("true", "1e3") and the values hold
        # secrets that must not appear in the process list. JSON is YAML, so helm reads it as is.
        handle = tempfile.NamedTemporaryFile("w", suffix=".json", prefix="hubfleet-values-", delete=False)
        try:
            with handle:
                os.chmod(handle.name, 0o600)
                json.dump(values, handle)
            args = ["upgrade", "--install", release, chart, "--namespace", namespace, "--version", version,
                    "--values", handle.name, "--wait", "--timeout", f"{int(timeout)}s", "--output", "json"]
            if create_namespace:
                args.append("--create-namespace")
            if self.repo and not _is_chart_reference(chart):
                args += ["--repo", self.repo]
            out = self._run(args, timeout=timeout + 60)
        finally:
            os.unlink(handle.name)
        return _parse_release(json.loads(out), release, namespace)

    def uninstall(self, release: str, namespace: str) -> None:
        if self._run(["uninstall", release, "--namespace", namespace, "--wait"], missing_ok=True) is None:
            raise ReleaseNotFound(f"helm release {release} not found in namespace {namespace}")

    def _run(self, args: list[str], missing_ok: bool = False, timeout: float = 120) -> str | None:
        cmd = [self.binary, *self._globals, *args]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise HelmError(f"helm {args[0]} did not finish within {int(timeout)}s", str(exc.stderr or "")) from None
        if done.returncode != 0:
            if missing_ok and "release: not found" in done.stderr:
                return None
            raise HelmError(f"helm {' '.join(args[:3])} failed", done.stderr, done.returncode)
        return done.stdout


def _is_chart_reference(chart: str) -> bool:
    """A path, repo/chart or oci:// reference needs no --repo; a bare name ("jupyterhub") does."""
    return "/" in chart or chart.endswith(".tgz") or chart.startswith(".")


def _parse_release(data: dict, release: str, namespace: str) -> ReleaseStatus:
    info = data.get("info") or {}
    meta = (data.get("chart") or {}).get("metadata") or {}
    return ReleaseStatus(
        name=data.get("name", release),
        namespace=data.get("namespace", namespace),
        revision=int(data.get("version", 0)),
        status=info.get("status", "unknown"),
        chart=meta.get("name", ""),
        chart_version=meta.get("version", ""),
        app_version=meta.get("appVersion", ""),
        description=info.get("description", ""),
    )


# --------------------------------------------------------------------------------------------- fake


@dataclass
class FakeRelease:
    name: str
    namespace: str
    chart: str
    version: str
    values: dict
    revision: int
    status: str
    description: str
    objects: list[tuple[str, str, str]] = field(default_factory=list)  # (apiVersion, kind, name) we own


class FakeHelm:
    """In-memory `Helm`. With a linked FakeCluster it also stands in for what the chart puts in the cluster.

    How the chart's objects are modelled: each release owns a Secret `hub` (holding the values, as z2jh's
    does) and, when `hub.db.type` is sqlite-pvc (the chart default), the PVC `hub-db-dir` with
    `hub.db.pvc.annotations`. Every owned object carries Helm's ownership label and annotations. Uninstall
    (and an upgrade that stops rendering an object) deletes owned objects except those annotated
    `helm.sh/resource-policy: keep`, which Helm leaves behind; a later install of the same release adopts
    them, while an object owned by anyone else makes the install fail as Helm's ownership check does.
    Users' own PVCs are created by KubeSpawner, not Helm, so they survive an uninstall anyway.

    `fail_on` names releases whose upgrade_install fails as a `--wait` timeout does: the objects are written,
    the new revision is recorded as failed, and HelmError carries helm's message. A mapping gives the stderr.
    """

    def __init__(
        self,
        cluster: FakeCluster | None = None,
        fail_on: Iterable[str] | Mapping[str, str] = (),
        validate_values: bool = True,
    ):
        self.cluster = cluster
        self.fail_on: dict[str, str | None] = (
            dict(fail_on) if isinstance(fail_on, Mapping) else {name: None for name in fail_on}
        )
        self.validate_values = validate_values
        self.releases: dict[tuple[str, str], FakeRelease] = {}
        self.calls: list[tuple[str, str, str]] = []  # (verb, release, namespace), in order
        self.counts: Counter[str] = Counter()

    @property
    def write_count(self) -> int:
        return self.counts["upgrade_install"] + self.counts["uninstall"]

    def status(self, release: str, namespace: str) -> ReleaseStatus | None:
        self._record("status", release, namespace)
        rel = self.releases.get((namespace, release))
        return None if rel is None else _status_of(rel)

    def get_values(self, release: str, namespace: str) -> dict | None:
        self._record("get_values", release, namespace)
        rel = self.releases.get((namespace, release))
        return None if rel is None else copy.deepcopy(rel.values)

    def upgrade_install(
        self,
        release: str,
        namespace: str,
        chart: str,
        version: str,
        values: dict,
        create_namespace: bool = True,
        timeout: float = 600,
    ) -> ReleaseStatus:
        self._record("upgrade_install", release, namespace)
        existing = self.releases.get((namespace, release))
        verb = "UPGRADE" if existing else "INSTALLATION"
        values = copy.deepcopy(values)
        if self.validate_values and chart.rstrip("/").endswith("jupyterhub") and version == Z2JH_VERSION:
            problems = validate_chart_values(values)
            if problems:
                # Helm checks the schema before touching the cluster, so nothing is recorded.
                raise HelmError(f"helm upgrade --install {release} failed", f"Error: {verb} FAILED: values don't "
                                "meet the specifications of the schema(s) in the following chart(s):\njupyterhub:\n"
                                + "\n".join(f"- {p}" for p in problems), 1)
        if self.cluster is not None:
            self._ensure_namespace(namespace, create_namespace, verb)
        rel = FakeRelease(release, namespace, chart, version, values, (existing.revision if existing else 0) + 1,
                          "deployed", "Upgrade complete" if existing else "Install complete")
        if self.cluster is not None:
            rel.objects = self._write_objects(rel, existing, verb)
        if release in self.fail_on:
            rel.status, rel.description = "failed", f"Release \"{release}\" failed: context deadline exceeded"
            self.releases[(namespace, release)] = rel
            stderr = self.fail_on[release] or f"Error: {verb} FAILED: context deadline exceeded"
            raise HelmError(f"helm upgrade --install {release} failed", stderr, 1)
        self.releases[(namespace, release)] = rel
        return _status_of(rel)

    def uninstall(self, release: str, namespace: str) -> None:
        self._record("uninstall", release, namespace)
        rel = self.releases.pop((namespace, release), None)
        if rel is None:
            raise ReleaseNotFound(f"helm uninstall {release} failed",
                                  f"Error: uninstall: Release not loaded: {release}: release: not found", 1)
        if self.cluster is not None:
            self._delete_unkept(namespace, rel.objects)

    # ----------------------------------------------------------------------------------------- helpers

    def _record(self, verb: str, release: str, namespace: str) -> None:
        self.calls.append((verb, release, namespace))
        self.counts[verb] += 1

    def _ensure_namespace(self, namespace: str, create: bool, verb: str) -> None:
        try:
            self.cluster.get("v1", "Namespace", None, namespace)
        except NotFound:
            if not create:
                raise HelmError("helm upgrade --install failed",
                                f'Error: {verb} FAILED: create: failed to create: namespaces "{namespace}" not found',
                                1) from None
            self.cluster.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})

    def _write_objects(self, rel: FakeRelease, existing: FakeRelease | None, verb: str) -> list:
        objects = _chart_objects(rel)
        for obj in objects:  # Helm checks ownership of every object before it writes any
            _check_ownership(self.cluster, obj, rel, verb)
        for obj in objects:
            self.cluster.apply(obj)
        owned = [(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in objects]
        if existing is not None:
            self._delete_unkept(rel.namespace, [o for o in existing.objects if o not in owned])
        return owned

    def _delete_unkept(self, namespace: str, objects: Iterable[tuple[str, str, str]]) -> None:
        for api_version, kind, name in objects:
            try:
                live = self.cluster.get(api_version, kind, namespace, name)
            except NotFound:
                continue
            if (live["metadata"].get("annotations") or {}).get(KEEP_ANNOTATION) == "keep":
                continue
            self.cluster.delete(api_version, kind, namespace, name)


def _status_of(rel: FakeRelease) -> ReleaseStatus:
    return ReleaseStatus(rel.name, rel.namespace, rel.revision, rel.status, chart=rel.chart.rsplit("/", 1)[-1],
                         chart_version=rel.version, app_version="5.5.0" if rel.version == Z2JH_VERSION else "",
                         description=rel.description)


def _chart_objects(rel: FakeRelease) -> list[dict]:
    chart_name = rel.chart.rsplit("/", 1)[-1]
    labels = {"app": "jupyterhub", "component": "hub", "release": rel.name, "heritage": "Helm",
              "chart": f"{chart_name}-{rel.version}", "app.kubernetes.io/managed-by": "Helm"}
    owner = {"meta.helm.sh/release-name": rel.name, "meta.helm.sh/release-namespace": rel.namespace}

    def meta(name: str, extra_annotations: dict | None = None) -> dict:
        return {"name": name, "namespace": rel.namespace, "labels": dict(labels),
                "annotations": {**(extra_annotations or {}), **owner}}

    encoded = base64.b64encode(json.dumps(rel.values, sort_keys=True).encode()).decode()
    objects = [{"apiVersion": "v1", "kind": "Secret", "metadata": meta("hub"), "type": "Opaque",
                "data": {"values.yaml": encoded}}]
    db = (rel.values.get("hub") or {}).get("db") or {}
    if db.get("type", "sqlite-pvc") == "sqlite-pvc":
        pvc = db.get("pvc") or {}
        spec = {"accessModes": pvc.get("accessModes") or ["ReadWriteOnce"],
                "resources": {"requests": {"storage": pvc.get("storage") or "1Gi"}}}
        if pvc.get("storageClassName"):
            spec["storageClassName"] = pvc["storageClassName"]
        if pvc.get("selector"):
            spec["selector"] = pvc["selector"]
        objects.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": meta("hub-db-dir", pvc.get("annotations")), "spec": spec})
    return objects


def _check_ownership(cluster: FakeCluster, obj: dict, rel: FakeRelease, verb: str) -> None:
    name = obj["metadata"]["name"]
    try:
        live = cluster.get(obj["apiVersion"], obj["kind"], rel.namespace, name)
    except NotFound:
        return
    annotations = live["metadata"].get("annotations") or {}
    current = annotations.get("meta.helm.sh/release-name")
    if current != rel.name or annotations.get("meta.helm.sh/release-namespace") != rel.namespace:
        raise HelmError(
            f"helm upgrade --install {rel.name} failed",
            f"Error: {verb} FAILED: Unable to continue with install: {obj['kind']} \"{name}\" in namespace "
            f"\"{rel.namespace}\" exists and cannot be imported into the current release: invalid ownership "
            f"metadata; annotation validation error: key \"meta.helm.sh/release-name\" must equal "
            f"\"{rel.name}\": current value is \"{current or ''}\"",
            1,
        )
