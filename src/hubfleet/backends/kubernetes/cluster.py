"""The Kubernetes API as the backend sees it: a handful of verbs over plain dicts.

The backend talks to a `Cluster`; production uses `KubernetesCluster` (the official client), tests use
`FakeCluster` (fake.py). Both share `apply_object`, so the create-or-update logic the tests exercise is the
code that runs against a real API server.

Objects are plain dicts shaped like `kubectl get -o json` output. Errors are ours (`NotFound`, `Conflict`,
`Invalid`) so callers never import the kubernetes package to catch them.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

# Our record of what we last wrote, like kubectl's last-applied-configuration. It lets `apply` remove a
# label or a field we stopped rendering while keeping fields the server filled in (PVC volumeName, the
# namespace's kubernetes.io/metadata.name label), which a plain PUT of the desired object would fight over.
LAST_APPLIED_ANNOTATION = "hubfleet.io/last-applied"
FIELD_MANAGER = "hubfleet"


class ClusterError(Exception):
    """Base for every error the cluster layer raises."""


class NotFound(ClusterError):
    """HTTP 404: the object (or the namespace it lives in) does not exist."""


class Conflict(ClusterError):
    """HTTP 409: the object already exists, or the resourceVersion sent is stale."""


class Invalid(ClusterError):
    """HTTP 422 (or 400): the server refused the object itself, e.g. an immutable field changed."""


class ClusterUnavailable(ClusterError):
    """No kubeconfig or in-cluster config, or the API server cannot be reached."""


class UnsupportedKind(NotFound):
    """The API server does not serve this apiVersion/kind (e.g. a CRD that is not installed).

    A NotFound, because that is the 404 the server answers with; catch this first to tell the two apart.
    """


@dataclass(frozen=True)
class KindInfo:
    api_version: str
    kind: str
    plural: str
    namespaced: bool


# The kinds the kubernetes backend writes or reads. The fake serves exactly these (plus any registered
# with it); the real client discovers kinds from the server and needs no table.
BUILTIN_KINDS: tuple[KindInfo, ...] = (
    KindInfo("v1", "Namespace", "namespaces", False),
    KindInfo("v1", "PersistentVolume", "persistentvolumes", False),
    KindInfo("v1", "ResourceQuota", "resourcequotas", True),
    KindInfo("v1", "LimitRange", "limitranges", True),
    KindInfo("v1", "PersistentVolumeClaim", "persistentvolumeclaims", True),
    KindInfo("v1", "Secret", "secrets", True),
    KindInfo("v1", "ConfigMap", "configmaps", True),
    KindInfo("v1", "ServiceAccount", "serviceaccounts", True),
    KindInfo("v1", "Service", "services", True),
    KindInfo("apps/v1", "DaemonSet", "daemonsets", True),
    KindInfo("apps/v1", "Deployment", "deployments", True),
    KindInfo("batch/v1", "Job", "jobs", True),
    KindInfo("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", True),
    KindInfo("networking.k8s.io/v1", "Ingress", "ingresses", True),  # the portal's (portal.py)
    KindInfo("rbac.authorization.k8s.io/v1", "Role", "roles", True),
    KindInfo("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", True),
    KindInfo("coordination.k8s.io/v1", "Lease", "leases", True),  # the controller's leader election (lease.py)
    KindInfo("discovery.k8s.io/v1", "EndpointSlice", "endpointslices", True),  # the waker's (portal.waker_endpoints)
)


@runtime_checkable
class Cluster(Protocol):
    """What the kubernetes backend needs from an API server. All objects are dicts, copied in and out."""

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict: ...

    def create(self, obj: dict) -> dict: ...

    def replace(self, obj: dict) -> dict: ...

    def apply(self, obj: dict) -> bool: ...

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None: ...

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict]: ...


# --------------------------------------------------------------------------------------------- apply


def apply_object(cluster: Cluster, obj: dict) -> bool:
    """Create `obj`, or bring the live object in line with it. Returns True if anything was written.

    An object that already matches what we want makes no write at all, so a second apply of the same plan
    leaves every resourceVersion where it was (the idempotency the planner relies on). Another writer between our
    read and our write (409: created meanwhile, or changed since we read it) is met by reading again: two controller
    replicas starting at once both make sure the fleet namespace exists before the Lease decides who acts.
    """
    for _ in range(2):
        try:
            return _apply_once(cluster, obj)
        except Conflict:
            continue
    return _apply_once(cluster, obj)


def _apply_once(cluster: Cluster, obj: dict) -> bool:
    desired = _normalise_secret(copy.deepcopy(obj))
    meta = desired.setdefault("metadata", {})
    fingerprint = _fingerprint(desired)
    meta.setdefault("annotations", {})[LAST_APPLIED_ANNOTATION] = fingerprint
    try:
        live = cluster.get(desired["apiVersion"], desired["kind"], meta.get("namespace"), meta["name"])
    except NotFound:
        cluster.create(desired)
        return True
    previous = _last_applied(live)
    if previous == json.loads(fingerprint) and _is_subset(_body(desired), _body(live)):
        return False
    merged = _three_way(live, desired, previous or {})
    merged["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
    cluster.replace(merged)
    return True


def _normalise_secret(obj: dict) -> dict:
    # The server folds stringData into data and never returns stringData, so comparing it would look like
    # a change on every run. Encode it the way the server does before anything else looks at it.
    if obj.get("kind") == "Secret" and obj.get("stringData"):
        data = obj.setdefault("data", {})
        for key, value in obj.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
    return obj


def _body(obj: dict) -> dict:
    """The parts of an object we own: everything but status and server bookkeeping in metadata."""
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}
    meta = obj.get("metadata", {})
    body["metadata"] = {k: meta[k] for k in ("labels", "annotations") if meta.get(k)}
    return body


def _fingerprint(desired: dict) -> str:
    """JSON of what we are about to write, with Secret values hashed so no secret lands in an annotation."""
    record = _body(desired)
    record["metadata"].get("annotations", {}).pop(LAST_APPLIED_ANNOTATION, None)
    if not record["metadata"].get("annotations"):
        record["metadata"].pop("annotations", None)
    if desired.get("kind") == "Secret" and "data" in record:
        record["data"] = {k: hashlib.sha256(str(v).encode()).hexdigest() for k, v in record["data"].items()}
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


def _last_applied(live: dict) -> dict | None:
    raw = (live.get("metadata", {}).get("annotations") or {}).get(LAST_APPLIED_ANNOTATION)
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None  # someone edited it by hand: treat the object as never applied by us


def _is_subset(want: Any, have: Any) -> bool:
    """Every value we set is present in the live object; extra server-filled fields are fine."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and _is_subset(v, have[k]) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(want) == len(have) and all(map(_is_subset, want, have))
    if isinstance(want, (int, float)) and not isinstance(want, bool) and isinstance(have, str):
        # The server canonicalises quantities: `cpu: 2` comes back as "2".
        return str(want) == have
    return want == have


def _three_way(live: dict, desired: dict, previous: dict) -> dict:
    """Live object with our fields laid over it and fields we used to set (but no longer do) removed."""
    merged = copy.deepcopy(live)
    merged.pop("status", None)
    # Sending managedFields back would overwrite the server's field ownership record; omitted, it is kept.
    merged["metadata"].pop("managedFields", None)
    for key in ("apiVersion", "kind"):
        merged[key] = desired[key]
    body = _body(desired)
    meta_want = body.pop("metadata")
    meta_prev = previous.get("metadata", {})
    for part in ("labels", "annotations"):
        got = merged["metadata"].setdefault(part, {})
        for gone in set(meta_prev.get(part, {})) - set(meta_want.get(part, {})):
            got.pop(gone, None)
        got.update(meta_want.get(part, {}))
    prev_body = {k: v for k, v in previous.items() if k != "metadata"}
    _merge_into(merged, body, prev_body)
    return merged


def _merge_into(target: dict, want: dict, prev: dict) -> None:
    for gone in set(prev) - set(want):
        target.pop(gone, None)
    for key, value in want.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            old = prev.get(key) if isinstance(prev.get(key), dict) else {}
            _merge_into(target[key], value, old)
        else:
            # Lists replace wholesale (as in a JSON merge patch); the server re-defaults list items.
            target[key] = copy.deepcopy(value)


# --------------------------------------------------------------------------------------- real client


class KubernetesCluster:
    """`Cluster` over the official client's dynamic API, so any served kind works without a typed API class."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None):
        # Imported here so `import hubfleet.backends.kubernetes.cluster` works without the optional extra.
        try:
            from kubernetes import client, config
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ClusterUnavailable(
                "the kubernetes Python client is not installed: pip install 'hubfleet[kubernetes]'"
            ) from exc
        configuration = client.Configuration()
        try:
            if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config(client_configuration=configuration)
            else:
                config.load_kube_config(
                    config_file=kubeconfig, context=context, client_configuration=configuration
                )
        except (config.ConfigException, OSError) as exc:
            where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            raise ClusterUnavailable(
                f"no Kubernetes configuration: tried in-cluster config and kubeconfig {where} ({exc}). "
                "Set KUBECONFIG to a cluster's kubeconfig (e.g. /etc/rancher/k3s/k3s.yaml) or run in a pod."
            ) from exc
        self._api_client = client.ApiClient(configuration)
        self._dynamic = None
        # The client's discovery (kubernetes.dynamic's LazyDiscoverer) is not thread-safe, and `apply` creates hubs
        # in parallel over this one object: a lookup of a kind the server does not serve empties the discovery
        # cache and rediscovers, and a thread loading a group meanwhile failed with KeyError: 'resources'
        # (tests/test_k8s_client_threads.py). Lookups are in-memory once discovered; the requests are not locked.
        self._discovery = threading.Lock()

    def _resource(self, api_version: str, kind: str):
        from kubernetes import dynamic
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            with self._discovery:
                if self._dynamic is None:
                    self._dynamic = dynamic.DynamicClient(self._api_client)  # discovery talks to the server
                return self._dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError as exc:
            raise UnsupportedKind(f"the cluster does not serve {api_version} {kind}") from exc
        except Exception as exc:
            _reraise(exc)

    def _call(self, fn, *args, **kwargs) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            _reraise(exc)

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict:
        res = self._resource(api_version, kind)
        return self._call(res.get, name=name, namespace=namespace if res.namespaced else None).to_dict()

    def create(self, obj: dict) -> dict:
        res = self._resource(obj["apiVersion"], obj["kind"])
        ns = obj["metadata"].get("namespace") if res.namespaced else None
        # Strict field validation turns a typo in a rendered manifest into a 422 instead of a silently
        # dropped field (the server's default is only to warn).
        return self._call(res.create, body=obj, namespace=ns, **_write_params()).to_dict()

    def replace(self, obj: dict) -> dict:
        if not obj.get("metadata", {}).get("resourceVersion"):
            # Without it a PUT silently overwrites concurrent changes; we always want the 409.
            raise Conflict(f"replace of {_describe(obj)} needs metadata.resourceVersion")
        res = self._resource(obj["apiVersion"], obj["kind"])
        ns = obj["metadata"].get("namespace") if res.namespaced else None
        return self._call(res.replace, body=obj, namespace=ns, **_write_params()).to_dict()

    def apply(self, obj: dict) -> bool:
        return apply_object(self, obj)

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None:
        res = self._resource(api_version, kind)
        # Background propagation: the API's default for batch/v1 Jobs is to orphan their pods.
        self._call(
            res.delete,
            name=name,
            namespace=namespace if res.namespaced else None,
            body={"propagationPolicy": "Background"},
        )

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict]:
        res = self._resource(api_version, kind)
        result = self._call(
            res.get, namespace=namespace if res.namespaced else None, label_selector=label_selector
        ).to_dict()
        items = result.get("items", [])
        for item in items:  # list items come without apiVersion/kind; callers compare whole objects
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items


def _write_params() -> dict:
    return {
        "field_manager": FIELD_MANAGER,
        "query_params": [("fieldValidation", "Strict")],
    }


def _describe(obj: dict) -> str:
    meta = obj.get("metadata", {})
    where = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


def _reraise(exc: Exception):
    translated = _translate(exc)
    if translated is exc:
        raise exc
    raise translated from exc


def _translate(exc: Exception) -> Exception:
    """Map the client's exceptions onto ours, keeping the server's own message."""
    status = getattr(exc, "status", None)
    if status is None:
        if type(exc).__module__.startswith(("urllib3", "socket")) or isinstance(exc, OSError):
            return ClusterUnavailable(f"cannot reach the Kubernetes API server: {exc}")
        return exc
    message = _server_message(exc)
    if status == 404:
        return NotFound(message)
    if status == 409:
        return Conflict(message)
    if status in (400, 422):
        return Invalid(message)
    return ClusterError(f"HTTP {status}: {message}")


def _server_message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    try:
        return json.loads(body)["message"]
    except (TypeError, ValueError, KeyError):
        return str(body or getattr(exc, "reason", exc))
