"""One KubernetesCluster shared by threads, as `apply` shares it when it creates hubs in parallel.

The official client's discovery (kubernetes.dynamic, LazyDiscoverer) is not thread-safe: a lookup of a kind the
server does not serve empties its cache and rediscovers, and a thread loading a group's kinds meanwhile fails with
``KeyError: 'resources'``. Seen in CI as two of three hub creates failing with that message. Real fake API server
over HTTPS, unpatched client.
"""

from __future__ import annotations

import threading

import pytest

from hubfleet.backends.kubernetes.cluster import KubernetesCluster, NotFound, UnsupportedKind
from hubfleet.testing.kubeapi import KubeApiServer, ServedCluster

KINDS = [("v1", "Namespace"), ("rbac.authorization.k8s.io/v1", "RoleBinding"), ("networking.k8s.io/v1", "Ingress"),
         ("apps/v1", "Deployment"), ("coordination.k8s.io/v1", "Lease"), ("policy/v1", "PodDisruptionBudget")]


@pytest.fixture
def api(tmp_path):
    server = KubeApiServer(ServedCluster(), tmp_path / "ca").start()
    server.kubeconfig(tmp_path / "kubeconfig")
    yield server
    server.stop()


def test_threads_sharing_one_cluster_look_up_kinds_while_another_probes_a_missing_kind(api, tmp_path):
    cluster = KubernetesCluster(kubeconfig=str(tmp_path / "kubeconfig"))
    failures: list[str] = []
    answered: list[str] = []

    def probe_missing() -> None:
        for _ in range(10):  # e.g. retirement's look for a kind the cluster does not serve
            try:
                cluster.get("example.com/v1", "Nope", None, "x")
            except UnsupportedKind:
                answered.append("unsupported")

    def look_up() -> None:
        for _ in range(10):
            for api_version, kind in KINDS:
                try:
                    cluster.get(api_version, kind, None if kind == "Namespace" else "default", "absent")
                except UnsupportedKind as exc:  # served kinds: never "not served"
                    failures.append(repr(exc))
                except NotFound:
                    answered.append(kind)  # the kind was found; the object is not there
                except Exception as exc:  # noqa: BLE001 - the race's KeyError is the finding
                    failures.append(repr(exc))

    threads = [threading.Thread(target=probe_missing)] + [threading.Thread(target=look_up) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert answered.count("unsupported") == 10
    assert len(answered) == 10 + 3 * 10 * len(KINDS)
