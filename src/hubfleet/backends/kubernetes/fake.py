"""An in-memory `Cluster` that answers like an API server, for tests of the kubernetes backend.

What it models, because the backend's correctness depends on it:
- 404 for a missing object, for an unserved kind, and for a namespaced object whose namespace is missing;
- 409 for creating an existing object and for a replace carrying a stale (or no) resourceVersion;
- one cluster-wide resourceVersion counter bumped on every write (as etcd's revision is);
- fields the server fills in (uid, creationTimestamp, the namespace's kubernetes.io/metadata.name label,
  a bound PVC's volumeName) and the immutability rules that make a naive PUT fail (PVC spec, Job template,
  DaemonSet selector, immutable ConfigMaps/Secrets);
- strict field validation: an object that fails `kubernetes-validate --strict` is refused with 422, as the
  real client's `fieldValidation=Strict` makes the server do;
- deleting a Namespace removes everything in it. The real server does this asynchronously (the namespace
  sits in Terminating first); the fake does it at once, which is what a caller observes after waiting.

`writes` counts create/replace/delete calls so a test can assert that a second apply wrote nothing.
"""

from __future__ import annotations

import copy
import functools
import re
import threading
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timezone

from .cluster import (
    BUILTIN_KINDS,
    Conflict,
    Invalid,
    KindInfo,
    NotFound,
    UnsupportedKind,
    apply_object,
)
from .validation import SchemaNotFound, validate_manifest

Key = tuple[str, str, str, str]  # (apiVersion, kind, namespace or "", name)


def _atomic(method):
    """One write at a time, as the API server does per object: a replace's resourceVersion check and its write
    must not interleave with another thread's (the backend converges hubs in parallel; some share an object)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._write_lock:
            return method(self, *args, **kwargs)
    return wrapper


class FakeCluster:
    def __init__(self, extra_kinds: Iterable[KindInfo] = (), validate: bool = True, k8s_version: str = "1.32.0"):
        self._kinds = {(k.api_version, k.kind): k for k in (*BUILTIN_KINDS, *extra_kinds)}
        self._objects: dict[Key, dict] = {}
        self._write_lock = threading.RLock()
        self._revision = 0
        self._validate = validate
        self._k8s_version = k8s_version
        self.writes: Counter[str] = Counter()
        self.reads: Counter[str] = Counter()

    # ---------------------------------------------------------------------------------------- test aids

    def register_kind(self, info: KindInfo) -> None:
        """Serve another kind, as installing a CRD (Argo CD Application, Flux HelmRelease) would."""
        self._kinds[(info.api_version, info.kind)] = info

    @property
    def write_count(self) -> int:
        return sum(self.writes.values())

    def reset_counters(self) -> None:
        self.writes.clear()
        self.reads.clear()

    def objects(self) -> list[dict]:
        """Every stored object, in a stable order, for assertions and debugging."""
        return [copy.deepcopy(self._objects[k]) for k in sorted(self._objects)]

    # ------------------------------------------------------------------------------------------- verbs

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict:
        self.reads["get"] += 1
        info = self._kind(api_version, kind)
        key = self._key(info, namespace, name)
        if key not in self._objects:
            raise NotFound(f'{_resource(info)} "{name}" not found')
        return copy.deepcopy(self._objects[key])

    @_atomic
    def create(self, obj: dict) -> dict:
        info = self._kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        new = copy.deepcopy(obj)
        meta = new.setdefault("metadata", {})
        name, namespace = self._identity(info, meta)
        if meta.get("resourceVersion"):
            raise Invalid(f"{info.kind} {name}: resourceVersion should not be set on objects to be created")
        self._check_schema(new)
        key = self._key(info, namespace, name)
        if key in self._objects:
            raise Conflict(f'{_resource(info)} "{name}" already exists')
        self.writes["create"] += 1
        new.pop("status", None)  # status is the server's to write
        meta.update(
            uid=str(uuid.uuid4()),
            creationTimestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            generation=1,
            resourceVersion=self._bump(),
        )
        _server_defaults(new)
        _bind(new)
        self._objects[key] = new
        return copy.deepcopy(new)

    @_atomic
    def replace(self, obj: dict) -> dict:
        info = self._kind(obj.get("apiVersion", ""), obj.get("kind", ""))
        new = copy.deepcopy(obj)
        meta = new.setdefault("metadata", {})
        name, namespace = self._identity(info, meta)
        key = self._key(info, namespace, name)
        if key not in self._objects:
            raise NotFound(f'{_resource(info)} "{name}" not found')
        old = self._objects[key]
        if meta.get("resourceVersion") != old["metadata"]["resourceVersion"]:
            raise Conflict(
                f'Operation cannot be fulfilled on {_resource(info)} "{name}": the object has been modified; '
                "please apply your changes to the latest version and try again"
            )
        self._check_schema(new)
        _server_defaults(new)  # the server defaults before it validates, so an omitted default is no change
        _check_immutable(info, old, new)
        self.writes["replace"] += 1
        for kept in ("uid", "creationTimestamp"):
            meta[kept] = old["metadata"][kept]
        changed = {k: v for k, v in new.items() if k not in ("metadata", "status")} != {
            k: v for k, v in old.items() if k not in ("metadata", "status")
        }
        meta["generation"] = old["metadata"]["generation"] + (1 if changed else 0)
        meta["resourceVersion"] = self._bump()
        new.pop("status", None)
        if "status" in old:
            new["status"] = old["status"]
        self._objects[key] = new
        return copy.deepcopy(new)

    def apply(self, obj: dict) -> bool:
        return apply_object(self, obj)

    @_atomic
    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None:
        info = self._kind(api_version, kind)
        key = self._key(info, namespace, name)
        if key not in self._objects:
            raise NotFound(f'{_resource(info)} "{name}" not found')
        self.writes["delete"] += 1
        del self._objects[key]
        self._bump()
        if info.kind == "Namespace" and info.api_version == "v1":
            for other in [k for k in self._objects if k[2] == name]:
                del self._objects[other]

    def list(
        self, api_version: str, kind: str, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict]:
        self.reads["list"] += 1
        info = self._kind(api_version, kind)
        match = parse_label_selector(label_selector or "")
        found = []
        for key in sorted(self._objects):
            if key[:2] != (info.api_version, info.kind):
                continue
            if info.namespaced and namespace is not None and key[2] != namespace:
                continue
            obj = self._objects[key]
            if match(obj.get("metadata", {}).get("labels") or {}):
                found.append(copy.deepcopy(obj))
        return found

    # ----------------------------------------------------------------------------------------- helpers

    def _kind(self, api_version: str, kind: str) -> KindInfo:
        try:
            return self._kinds[(api_version, kind)]
        except KeyError:
            raise UnsupportedKind(
                f"the server could not find the requested resource ({api_version} {kind})"
            ) from None

    def _identity(self, info: KindInfo, meta: dict) -> tuple[str, str | None]:
        name = meta.get("name")
        if not name:
            raise Invalid(f"{info.kind}: metadata.name: Required value")
        if not info.namespaced:
            meta.pop("namespace", None)  # the server ignores a namespace on cluster-scoped objects
            return name, None
        namespace = meta.get("namespace")
        if not namespace:
            raise Invalid(f"{info.kind} {name}: metadata.namespace: Required value")
        if ("v1", "Namespace", "", namespace) not in self._objects:
            raise NotFound(f'namespaces "{namespace}" not found')
        return name, namespace

    def _key(self, info: KindInfo, namespace: str | None, name: str) -> Key:
        return (info.api_version, info.kind, (namespace or "") if info.namespaced else "", name)

    def _bump(self) -> str:
        self._revision += 1
        return str(self._revision)

    def _check_schema(self, obj: dict) -> None:
        if not self._validate:
            return
        try:
            problems = validate_manifest(obj, self._k8s_version)
        except SchemaNotFound:
            return  # a registered custom resource: the fake has no CRD schema to check it against
        if problems:
            raise Invalid("; ".join(problems))


def _resource(info: KindInfo) -> str:
    group = info.api_version.rpartition("/")[0]
    return f"{info.plural}.{group}" if group else info.plural


def _server_defaults(obj: dict) -> None:
    """Fill in the fields a real server adds, so callers that compare naively would notice."""
    meta = obj["metadata"]
    if obj["kind"] == "Namespace":
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        obj["status"] = {"phase": "Active"}
    elif obj["kind"] == "PersistentVolumeClaim":
        obj.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")


def _bind(obj: dict) -> None:
    """Pretend a dynamic provisioner bound a new PVC at once: volumeName is then set, and immutable."""
    if obj["kind"] == "PersistentVolumeClaim":
        obj["spec"].setdefault("volumeName", f"pvc-{obj['metadata']['uid']}")
        obj["status"] = {"phase": "Bound"}


def _check_immutable(info: KindInfo, old: dict, new: dict) -> None:
    name = new["metadata"]["name"]

    def refuse(field: str) -> None:
        raise Invalid(f'{info.kind} "{name}" is invalid: {field}: field is immutable')

    if info.kind in ("ConfigMap", "Secret") and old.get("immutable"):
        for field in ("data", "binaryData", "immutable"):
            if old.get(field) != new.get(field):
                refuse(field)
    if info.kind == "PersistentVolumeClaim":
        old_spec, new_spec = dict(old.get("spec", {})), dict(new.get("spec", {}))
        old_req = old_spec.pop("resources", {}).get("requests", {})
        new_req = new_spec.pop("resources", {}).get("requests", {})
        if old_spec != new_spec:
            refuse("spec (except resources.requests)")
        if _storage_bytes(new_req.get("storage")) < _storage_bytes(old_req.get("storage")):
            raise Invalid(f'PersistentVolumeClaim "{name}" is invalid: spec.resources.requests.storage: '
                          "Forbidden: field can not be less than previous value")
    if info.kind == "PersistentVolume":  # the volume source (nfs server and path...) is fixed at creation
        sources = ("nfs", "hostPath", "csi", "local")
        if {k: old.get("spec", {}).get(k) for k in sources} != {k: new.get("spec", {}).get(k) for k in sources}:
            refuse("spec.persistentvolumesource")
    if info.kind == "Job":
        for field in ("template", "selector", "completions"):
            if old.get("spec", {}).get(field) != new.get("spec", {}).get(field):
                refuse(f"spec.{field}")
    if info.kind == "DaemonSet" and old.get("spec", {}).get("selector") != new.get("spec", {}).get("selector"):
        refuse("spec.selector")


_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _storage_bytes(quantity: object) -> float:
    match = re.fullmatch(r"([0-9.]+)([KMGT]i?|k)?", str(quantity or "0"))
    if not match:
        return 0.0
    return float(match.group(1)) * _UNITS[match.group(2) or ""]


# ------------------------------------------------------------------------------------ label selectors

_TERM = re.compile(
    r"""^\s*(?:
        (?P<neg>!)\s*(?P<absent>[\w./-]+)                                   # !key
      | (?P<setkey>[\w./-]+)\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)     # key in (a,b)
      | (?P<eqkey>[\w./-]+)\s*(?P<eq>==|=|!=)\s*(?P<value>[\w./-]*)         # key=value
      | (?P<exists>[\w./-]+)                                                 # key
    )\s*$""",
    re.VERBOSE,
)


def parse_label_selector(selector: str):
    """Compile a label selector (`a=b,c!=d,e,!f,g in (x,y)`) into a predicate over a labels dict.

    Raises Invalid (the server's 400) for syntax it would refuse.
    """
    tests = []
    # Split on commas outside parentheses: "env in (a,b),tier=web" has two terms.
    for term in re.split(r",(?![^()]*\))", selector):
        if not term.strip():
            continue
        m = _TERM.match(term)
        if not m:
            raise Invalid(f"unable to parse requirement: {term.strip()!r}")
        if m["absent"]:
            tests.append(lambda labels, k=m["absent"]: k not in labels)
        elif m["setkey"]:
            values = {v.strip() for v in m["values"].split(",") if v.strip()}
            if m["op"] == "in":
                tests.append(lambda labels, k=m["setkey"], vs=values: labels.get(k) in vs)
            else:
                tests.append(lambda labels, k=m["setkey"], vs=values: labels.get(k) not in vs)
        elif m["eqkey"]:
            if m["eq"] == "!=":
                tests.append(lambda labels, k=m["eqkey"], v=m["value"]: labels.get(k) != v)
            else:
                tests.append(lambda labels, k=m["eqkey"], v=m["value"]: labels.get(k) == v)
        else:
            tests.append(lambda labels, k=m["exists"]: k in labels)
    return lambda labels: all(test(labels) for test in tests)
