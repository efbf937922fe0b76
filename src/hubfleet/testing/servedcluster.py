"""The store the fake API server (kubeapi.py) serves: `FakeCluster` plus what a served cluster adds.

Pods, Events and PodDisruptionBudgets are served kinds; every write is kept in a history (watches replay it from a
resourceVersion) and told to listeners (the process kubelet); with a kubelet attached, deleting a Pod only marks it
(``deletionTimestamp``) and the Pod stays until the kubelet has stopped it, as on a real node; the kubelet writes
Pods' status and Events through it.
"""

from __future__ import annotations

import copy
import secrets
import threading
from collections.abc import Callable
from datetime import datetime, timezone

from hubfleet.backends.kubernetes.cluster import Invalid, KindInfo, NotFound
from hubfleet.backends.kubernetes.fake import FakeCluster


POD = KindInfo("v1", "Pod", "pods", True)
EVENT = KindInfo("v1", "Event", "events", True)
SERVED_KINDS = (
    POD,
    EVENT,
    KindInfo("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", True),
)

Listener = Callable[[str, dict], None]


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class ServedCluster(FakeCluster):
    """FakeCluster plus what an HTTP API server needs: a history of watch events, listeners (the kubelet),
    pod status written by the server and kubelet, and graceful pod deletion. Thread-safe: the API server's
    loop, the kubelet and the test thread all call it."""

    def __init__(self, validate: bool = True):
        super().__init__(extra_kinds=SERVED_KINDS, validate=validate)
        self.lock = threading.RLock()
        self.history: list[tuple[int, str, dict]] = []  # (resourceVersion, type, object)
        self.listeners: list[Listener] = []
        self.graceful_pods = False  # set by a kubelet: pods then stop before they go

    @property
    def revision(self) -> int:
        return self._revision

    def _emit(self, kind: str, obj: dict) -> None:
        self.history.append((int(obj["metadata"]["resourceVersion"]), kind, copy.deepcopy(obj)))
        for listener in list(self.listeners):
            listener(kind, copy.deepcopy(obj))

    def create(self, obj: dict) -> dict:
        with self.lock:
            new = super().create(obj)
            if new["kind"] == "Pod":
                key = self._key(POD, new["metadata"]["namespace"], new["metadata"]["name"])
                self._objects[key]["status"] = new["status"] = {"phase": "Pending", "conditions": []}
            self._emit("ADDED", new)
            return new

    def replace(self, obj: dict) -> dict:
        with self.lock:
            new = super().replace(obj)
            self._emit("MODIFIED", new)
            return new

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None:
        with self.lock:
            old = self.get(api_version, kind, namespace, name)
            if kind == "Pod" and self.graceful_pods:
                if "deletionTimestamp" not in old["metadata"]:
                    self._update(old, lambda o: o["metadata"].__setitem__("deletionTimestamp", now()))
                return
            super().delete(api_version, kind, namespace, name)
            old["metadata"]["resourceVersion"] = str(self._revision)
            self._emit("DELETED", old)

    def remove_pod(self, namespace: str, name: str) -> None:
        """The kubelet's last word on a pod it stopped: it is gone."""
        with self.lock:
            graceful, self.graceful_pods = self.graceful_pods, False
            try:
                self.delete("v1", "Pod", namespace, name)
            except NotFound:
                pass
            finally:
                self.graceful_pods = graceful

    def set_status(self, namespace: str, name: str, status: dict) -> dict | None:
        """Write a pod's status (the kubelet's job); None if the pod is gone."""
        with self.lock:
            try:
                pod = self.get("v1", "Pod", namespace, name)
            except NotFound:
                return None
            return self._update(pod, lambda o: o.__setitem__("status", status))

    def set_deployment_status(self, namespace: str, name: str, status: dict) -> None:
        """Write a Deployment's status (the Deployment controller's job), only if it changed."""
        with self.lock:
            try:
                deploy = self.get("apps/v1", "Deployment", namespace, name)
            except NotFound:
                return
            if deploy.get("status") != status:
                self._update(deploy, lambda o: o.__setitem__("status", status))

    def _update(self, obj: dict, change: Callable[[dict], None]) -> dict:
        key = self._key(self._kind(obj["apiVersion"], obj["kind"]), obj["metadata"].get("namespace"),
                        obj["metadata"]["name"])
        stored = self._objects[key]
        change(stored)
        stored["metadata"]["resourceVersion"] = self._bump()
        self._emit("MODIFIED", stored)
        return copy.deepcopy(stored)

    def record_event(self, pod: dict, reason: str, message: str, kind: str = "Normal") -> None:
        """An Event about a pod, as the kubelet and scheduler write them (KubeSpawner shows them while spawning)."""
        meta = pod["metadata"]
        stamp = now()
        try:
            self.create({
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": meta["namespace"]},
                "involvedObject": {"kind": "Pod", "name": meta["name"], "namespace": meta["namespace"],
                                   "uid": meta.get("uid"), "apiVersion": "v1"},
                "reason": reason, "message": message, "type": kind, "count": 1,
                "firstTimestamp": stamp, "lastTimestamp": stamp, "source": {"component": "kubelet"},
            })
        except (NotFound, Invalid):
            pass  # the namespace went away meanwhile
