"""What hubfleet remembers in the cluster itself: the spec each hub was last applied with, the verified-archive
markers, and which claims hold student files. The cluster is the state store; there is no local state file, so
two operators (or a CI job) planning against the same cluster see the same thing.

Applied spec: a ConfigMap `hubfleet-applied` in the hub's namespace, key `spec.json`. Why not an annotation on the
Namespace: all annotations of an object share one 256 KiB budget with whatever else annotates namespaces (policy
engines, Argo CD, Rancher), while a ConfigMap has 1 MiB to itself and is readable with `kubectl get cm -o yaml`.
It is written after the release succeeded, so a failed install leaves the previous record (and the next plan
retries). It is written with plain create/replace, not `apply_object`, which would copy the whole spec into its
last-applied annotation. Observe lists them cluster-wide by label: one API call for the whole fleet.

Verified-archive marker (until the lifecycle issue adds the archive Job's own records): a ConfigMap
`hubfleet-archive-<presentation, dns label>` labelled `hubfleet.io/archive-marker=true`, with data
`presentation` (the key, e.g. TM351-2026J), `verified: "true"` once every student's archive was checked against
its sha256 manifest, and optionally `purged: "true"`, `layout`, `volume`. The archive Job writes it in the fleet
namespace (`hubfleet-system`) so it outlives the hub's namespace; observe accepts it in any namespace.

Student claims: the PVCs KubeSpawner creates (label `component=singleuser-storage`), attributed to a
presentation by the `hubfleet.io/presentation` label the renderer puts on them (`storage_extra_labels`), and the
hub's `personal-store` claim, which covers every personal-subfolder presentation of the hub. The hub database is
not student files and never holds a delete back (course material is not a claim at all: see material.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hubfleet.catalog.naming import dns_label
from hubfleet.plan.diff import ObservedPresentation

from .cluster import Cluster, NotFound
from .fleet import MANAGED_BY

RECORD_NAME = "hubfleet-applied"
RECORD_KEY = "spec.json"
RECORD_LABEL = "hubfleet.io/record"
MARKER_LABEL = "hubfleet.io/archive-marker"
MARKER_PREFIX = "hubfleet-archive-"
PRESENTATION_LABEL = "hubfleet.io/presentation"
STUDENT_CLAIM_SELECTOR = "component=singleuser-storage"  # KubeSpawner's label on every claim it makes
PERSONAL_STORE_CLAIM = "personal-store"


# -------------------------------------------------------------------------------------------- applied spec


def record_object(namespace: str, hub: str, applied: dict, chart_version: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": RECORD_NAME,
            "namespace": namespace,
            "labels": {**MANAGED_BY, RECORD_LABEL: "applied-spec", "hubfleet.io/hub": hub},
        },
        # sort_keys: the same spec is the same bytes, so re-recording an unchanged spec is no write.
        "data": {RECORD_KEY: json.dumps(applied, sort_keys=True, separators=(",", ":")), "chart-version": chart_version},
    }


def write_record(cluster: Cluster, namespace: str, hub: str, applied: dict, chart_version: str) -> bool:
    """Store the applied spec; True if anything was written."""
    want = record_object(namespace, hub, applied, chart_version)
    try:
        live = cluster.get("v1", "ConfigMap", namespace, RECORD_NAME)
    except NotFound:
        cluster.create(want)
        return True
    if live.get("data") == want["data"] and all(
        (live["metadata"].get("labels") or {}).get(k) == v for k, v in want["metadata"]["labels"].items()
    ):
        return False
    live["data"] = want["data"]
    live["metadata"].setdefault("labels", {}).update(want["metadata"]["labels"])
    live["metadata"].pop("managedFields", None)
    cluster.replace(live)
    return True


def read_records(cluster: Cluster) -> dict[str, dict]:
    """Namespace -> applied spec (JSON dict), for every hub namespace in the cluster, in one list call."""
    out = {}
    for cm in cluster.list("v1", "ConfigMap", None, f"{RECORD_LABEL}=applied-spec"):
        if cm["metadata"].get("name") != RECORD_NAME:
            continue
        try:
            out[cm["metadata"]["namespace"]] = json.loads((cm.get("data") or {})[RECORD_KEY])
        except (KeyError, ValueError):
            continue  # a damaged record counts as "never applied": the next plan re-creates the hub
    return out


def read_record(cluster: Cluster, namespace: str) -> dict | None:
    try:
        cm = cluster.get("v1", "ConfigMap", namespace, RECORD_NAME)
        return json.loads(cm["data"][RECORD_KEY])
    except (NotFound, KeyError, ValueError):
        return None


# ------------------------------------------------------------------------------------------ archive markers


@dataclass(frozen=True)
class Marker:
    presentation: str
    verified: bool
    purged: bool
    layout: str
    volume: str


def marker_name(presentation: str) -> str:
    return MARKER_PREFIX + dns_label(presentation)


def marker_object(namespace: str, presentation: str, *, verified: bool = True, purged: bool = False,
                  layout: str = "", volume: str = "") -> dict:
    """The marker as the archive Job writes it (used by tests and by operators recording a manual archive)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": marker_name(presentation),
            "namespace": namespace,
            "labels": {**MANAGED_BY, MARKER_LABEL: "true", PRESENTATION_LABEL: dns_label(presentation)},
        },
        "data": {"presentation": presentation, "verified": str(verified).lower(), "purged": str(purged).lower(),
                 "layout": layout, "volume": volume},
    }


def read_markers(cluster: Cluster) -> dict[str, Marker]:
    """Presentation key -> marker. A verified marker anywhere wins over an unverified one elsewhere."""
    out: dict[str, Marker] = {}
    for cm in cluster.list("v1", "ConfigMap", None, f"{MARKER_LABEL}=true"):
        data = cm.get("data") or {}
        key = data.get("presentation") or (cm["metadata"].get("labels") or {}).get(PRESENTATION_LABEL)
        if not key:
            continue
        m = Marker(key, data.get("verified") == "true", data.get("purged") == "true",
                   data.get("layout", ""), data.get("volume", ""))
        if key not in out or (m.verified and not out[key].verified):
            out[key] = m
    return out


# ----------------------------------------------------------------------------------------- student claims


def student_claims(cluster: Cluster, namespace: str | None = None) -> list[dict]:
    """KubeSpawner's claims (all namespaces when `namespace` is None), plus personal-store claims."""
    claims = cluster.list("v1", "PersistentVolumeClaim", namespace, STUDENT_CLAIM_SELECTOR)
    if namespace is not None:
        try:
            claims.append(cluster.get("v1", "PersistentVolumeClaim", namespace, PERSONAL_STORE_CLAIM))
        except NotFound:
            pass
    return claims


def unarchived_claims(claims: list[dict], applied: dict | None, markers: dict[str, Marker]) -> list[str]:
    """Human descriptions of claims in one namespace holding student files without a verified archive."""
    presentations = (applied or {}).get("presentations") or []
    by_label = {dns_label(p["key"]): p["key"] for p in presentations}
    personal = [p["key"] for p in presentations if p["storage"]["layout"] == "personal-subfolder"]
    out = []
    for claim in claims:
        name = claim["metadata"]["name"]
        if name == PERSONAL_STORE_CLAIM:
            # The store itself is kept (its PV is Retain), but the hub is how students reach it until archived.
            pending = [k for k in personal if not _verified(k, markers)]
            if pending or not applied:
                out.append(f"{name} (personal store of {', '.join(pending) or 'an unrecorded hub'})")
            continue
        label = (claim["metadata"].get("labels") or {}).get(PRESENTATION_LABEL)
        key = by_label.get(label or "") or next((k for k in markers if dns_label(k) == label), None)
        if key is None:
            out.append(f"{name} (no {PRESENTATION_LABEL} label: cannot tell which presentation it belongs to)")
        elif not _verified(key, markers):
            out.append(f"{name} ({key})")
    return sorted(out)


def _verified(key: str, markers: dict[str, Marker]) -> bool:
    m = markers.get(key)
    return bool(m and m.verified)


def observed_presentations(records: dict[str, dict], claims: list[dict],
                           markers: dict[str, Marker]) -> dict[str, ObservedPresentation]:
    """Per presentation: its storage identity (from the applied spec), whether files exist, and archive state."""
    with_claims = {
        ((c["metadata"].get("labels") or {}).get(PRESENTATION_LABEL), c["metadata"].get("namespace"))
        for c in claims
    }
    out: dict[str, ObservedPresentation] = {}
    for namespace, applied in records.items():
        for p in applied.get("presentations") or []:
            layout, m = p["storage"]["layout"], markers.get(p["key"])
            if layout == "ephemeral":
                has_files = False
            elif layout == "per-presentation":
                has_files = (dns_label(p["key"]), namespace) in with_claims
            else:
                has_files = True  # files sit in the shared store; cannot see them without mounting it
            out[p["key"]] = ObservedPresentation(
                key=p["key"], layout=layout, volume=p["storage"]["volume"], has_files=has_files,
                archived=bool(m and m.verified), purged=bool(m and m.purged),
            )
    for key, m in markers.items():
        # The hub is gone but the record of its archive stays: purge can still be planned after retention.
        if key not in out and m.layout:
            out[key] = ObservedPresentation(key=key, layout=m.layout, volume=m.volume, has_files=not m.purged,
                                            archived=m.verified, purged=m.purged)
    return out
