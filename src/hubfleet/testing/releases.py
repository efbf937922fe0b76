"""A `Helm` whose releases live in the cluster, as real helm keeps them (a Secret per release revision there).

`FakeHelm` remembers releases in memory, so a second process (a controller restarted after ``kill -9``, a
standby replica) would not see what the first installed, and a benchmark "through the API server" would answer
helm's questions from memory. `ClusterHelm` keeps each release's status and values in a ConfigMap
``release-<name>`` in its namespace, written and read through whatever `Cluster` it is given (the kubernetes
client on the fake API server, over HTTPS): ``status`` and ``get_values`` cost one GET each, like
``helm status``/``helm get values`` reading the release Secret; an install is one write. It renders nothing: the
chart's own objects are `TemplateHelm`'s job (chart.py) and are not needed where only the loop is measured.
"""

from __future__ import annotations

import json
import time

from hubfleet.backends.kubernetes.cluster import Cluster, NotFound
from hubfleet.backends.kubernetes.helm import ReleaseNotFound, ReleaseStatus


class ClusterHelm:
    def __init__(self, cluster: Cluster, install_delay: float = 0.0):
        """``install_delay``: seconds an install takes before it is recorded (the window a kill -9 lands in)."""
        self.cluster = cluster
        self.install_delay = install_delay

    def read(self, release: str, namespace: str) -> dict | None:
        try:
            return self.cluster.get("v1", "ConfigMap", namespace, f"release-{release}").get("data") or {}
        except NotFound:
            return None

    def status(self, release: str, namespace: str) -> ReleaseStatus | None:
        data = self.read(release, namespace)
        return None if data is None else ReleaseStatus(release, namespace, int(data["revision"]), "deployed",
                                                       "jupyterhub", data["version"], data["version"])

    def get_values(self, release: str, namespace: str) -> dict | None:
        data = self.read(release, namespace)
        return None if data is None else json.loads(data["values"])

    def upgrade_install(self, release: str, namespace: str, chart: str, version: str, values: dict,
                        create_namespace: bool = True, timeout: float = 600, extra: dict | None = None) -> ReleaseStatus:
        time.sleep(self.install_delay)
        previous = self.read(release, namespace)
        revision = int(previous["revision"]) + 1 if previous else 1
        data = {**(previous or {}), "revision": str(revision), "version": version, "values": json.dumps(values),
                **(extra or {})}
        self.cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "data": data,
                            "metadata": {"name": f"release-{release}", "namespace": namespace}})
        return ReleaseStatus(release, namespace, revision, "deployed", "jupyterhub", version, version)

    def uninstall(self, release: str, namespace: str) -> None:
        try:
            self.cluster.delete("v1", "ConfigMap", namespace, f"release-{release}")
        except NotFound:
            raise ReleaseNotFound(f"helm uninstall {release}", f"Error: uninstall: Release not loaded: {release}") from None
