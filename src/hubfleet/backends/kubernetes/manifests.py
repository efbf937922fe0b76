"""``render_manifests(hub, fleet) -> list[dict]``: what hubfleet puts in a hub's namespace beside the release.

Namespace = the hub's name, as 2i2c does (one namespace per hub, named after it): the name is already a
frozen, DNS-1123 identity, it reads well in ``kubectl -n tm351-2026j``, and the Helm release takes the same
name. A prefix (``hub-``) would buy nothing but longer names and would make a hub named like a system
namespace no less dangerous, so such names are refused instead.
# ref: https://infrastructure.2i2c.org/hub-deployment-guide/new-cluster/ (namespace per hub)

Everything here that holds student data (the personal-store claim) carries ``helm.sh/resource-policy: keep``
and is applied outside the Helm release, so neither ``helm uninstall`` nor a GitOps prune can delete it. Course
material is not state: it ships as immutable, content-named ConfigMaps (material.py), one per seed source.

Sizing (ResourceQuota), readable on purpose, for ``N`` expected students and concurrency share ``f``
(``RenderOptions.concurrency``, 0.5 by default):

    concurrent         = ceil(N * f)                    (at least 1)
    requests.cpu       = concurrent * max profile CPU guarantee     + 1 core   (hub, proxy, culler)
    requests.memory    = concurrent * max profile memory guarantee  + 2Gi
    limits.*           = the same with each profile's limit (the guarantee when it has none)
    pods               = concurrent + 10
    persistentvolumeclaims = N for each per-presentation layout presentation + 5
    requests.storage   = N * size for each per-presentation presentation + 1Gi (hub db) + 1Gi (store, nominal)

The LimitRange gives containers that state no resources (hub, proxy, seeding init containers) a default, so
the quota does not reject them: with a requests quota, Kubernetes refuses pods that state none.
# ref: https://kubernetes.io/docs/concepts/policy/resource-quotas/#requests-vs-limits
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

from hubfleet.backends.kubernetes import labsettings as lab
from hubfleet.backends.kubernetes import material as m
from hubfleet.backends.kubernetes import values as v
from hubfleet.backends.kubernetes.controlplane import role_binding
from hubfleet.backends.kubernetes.fleet import (
    DEFAULT_OPTIONS,
    MANAGED_BY,
    RenderOptions,
    options_for,
    personal_store_pair,
)
from hubfleet.backends.kubernetes.secrets import ADOPT_ANNOTATION
from hubfleet.catalog import naming
from hubfleet.catalog.quantities import cpu_cores, memory_bytes
from hubfleet.plan.spec import FleetSpec, HubSpec

RESERVED_NAMESPACES = set(naming.RESERVED_HUBS)  # one list: validate refuses the same names with a location
GIB = 2**30


def namespace_name(hub: HubSpec) -> str:
    # validate refuses these with file and line (hubfleet.catalog.boundary); this guards a spec built elsewhere.
    if hub.name in RESERVED_NAMESPACES or naming.is_reserved_hub(hub.name):
        raise ValueError(f"hub {hub.name!r} is {naming.reserved_why(hub.name)}; rename the course or fleet")
    return hub.name


@functools.lru_cache(maxsize=1)
def seeding_source() -> str:
    """The stdlib-only seeding script, shipped verbatim so Kubernetes runs the same code as the local backend."""
    from hubfleet.storage import seeding

    return Path(seeding.__file__).read_text(encoding="utf-8")


def _meta(name: str, ns: str, labels: dict, annotations: dict | None = None) -> dict:
    meta = {"name": name, "namespace": ns, "labels": dict(labels)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _gi(n_bytes: float) -> str:
    return f"{math.ceil(n_bytes / GIB)}Gi"


def _cores(n: float) -> str:
    milli = math.ceil(n * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def sizing(hub: HubSpec, options: RenderOptions) -> dict[str, str]:
    """The quota's hard limits; see the module docstring for the formula."""
    concurrent = max(1, math.ceil(hub.expected_students * options.concurrency))
    cpu = max((cpu_cores(p.cpu) for p in hub.profiles if p.cpu), default=0.5)
    mem = max((memory_bytes(p.memory) for p in hub.profiles if p.memory), default=GIB)
    cpu_lim = max((cpu_cores(p.cpu_limit or p.cpu) for p in hub.profiles if p.cpu_limit or p.cpu), default=cpu)
    mem_lim = max((memory_bytes(p.memory_limit or p.memory) for p in hub.profiles if p.memory_limit or p.memory),
                  default=mem)
    dynamic = [p for p in hub.presentations if p.storage.layout == "per-presentation"]
    storage = sum(p.expected_students * memory_bytes(p.storage.size or "5Gi") for p in dynamic) + 2 * GIB
    return {
        "requests.cpu": _cores(concurrent * cpu + 1),
        "requests.memory": _gi(concurrent * mem + 2 * GIB),
        "limits.cpu": _cores(concurrent * cpu_lim + 2),
        "limits.memory": _gi(concurrent * mem_lim + 4 * GIB),
        "pods": str(concurrent + 10),
        "persistentvolumeclaims": str(sum(p.expected_students for p in dynamic) + 5),
        "requests.storage": _gi(storage),
    }


def hub_secret(hub: HubSpec, ns: str, labels: dict, options: RenderOptions) -> dict:
    """A placeholder: keys, no data. The renderer never generates a secret.

    Apply must create this Secret only if it is absent, filling ``hubfleet.io/generate-once`` keys with fresh
    random values, and never overwrite an existing one (a new token would lock hubfleet out of the hub, a new
    client secret would break logins). ``hubfleet.io/provided-keys`` come from outside (the IdP registration):
    apply refuses to create the Secret until the operator supplies them.
    """
    # The keys z2jh's jupyterhub_config.py reads from ``hub.existingSecret`` before its own Secret
    # (z2jh.get_secret_value), in the chart's own format (64 hex characters; CryptKeeper keys joined by ";").
    # Ours, not the chart's: the chart mints them with Helm's ``lookup``, which ``helm template`` (Argo CD)
    # cannot run, so every sync would log everyone out and make stored auth state unreadable.
    generated = ["hubfleet-api-token", *v.CHART_SECRET_KEYS]
    provided = []
    if hub.auth["type"] == "embedded":
        generated.append("oauth-client-secret")  # the portal is our own IdP: we mint its client secret
    elif hub.auth["type"] == "oidc":
        provided.append("oauth-client-secret")
    annotations = {"hubfleet.io/generate-once": "true", "hubfleet.io/keys": ",".join(generated),
                   # A hub the chart ran before keeps its cookie secret and auth-state keys (nobody logged out).
                   ADOPT_ANNOTATION: v.CHART_SECRET}
    if provided:
        annotations["hubfleet.io/provided-keys"] = ",".join(provided)
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": _meta(options.secret_name, ns, labels, annotations)}


def render_manifests(hub: HubSpec, fleet: FleetSpec, options: RenderOptions = DEFAULT_OPTIONS,
                     material: m.Material | None = None) -> list[dict]:
    """The hub namespace's objects. ``material`` (``material.read_material``) is required when the hub seeds."""
    options = options_for(fleet, options)
    ns = namespace_name(hub)
    labels = dict(hub.labels)
    hard = sizing(hub, options)
    objects: list[dict] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}},
        # The controller's rights in this namespace, right after it exists (controlplane.py says why per namespace).
        role_binding(ns, options),
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": _meta("hubfleet", ns, labels),
         "spec": {"hard": hard}},
        {"apiVersion": "v1", "kind": "LimitRange", "metadata": _meta("hubfleet", ns, labels),
         "spec": {"limits": [{
             "type": "Container",
             "defaultRequest": {"cpu": "100m", "memory": "256Mi"},
             "default": {"cpu": "1", "memory": "1Gi"},
             # No single container may ask for more than the largest profile's limit (or 2 cores / 4Gi).
             "max": {
                 "cpu": _cores(max([2.0] + [cpu_cores(p.cpu_limit or p.cpu) for p in hub.profiles
                                            if p.cpu_limit or p.cpu])),
                 "memory": _gi(max([4 * GIB] + [memory_bytes(p.memory_limit or p.memory) for p in hub.profiles
                                                if p.memory_limit or p.memory])),
             },
         }]}},
        hub_secret(hub, ns, labels, options),
    ]
    from hubfleet.backends.kubernetes.portal import uses_portal, waker_objects

    if uses_portal(fleet):  # the waker is the portal (portal.py): its rights here, and the ingress's fallback
        objects += waker_objects(ns, options)
    if any(p.storage.layout == "personal-subfolder" for p in hub.presentations):
        objects += personal_store_pair(ns, f"{fleet.fleet}-{hub.name}-personal-store", options)
        objects[-1]["spec"]["resources"]["requests"]["storage"] = "1Gi"  # nominal: keeps the quota honest
    if any(m.seeds(p) for p in hub.presentations):
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta("hubfleet-seeding", ns, labels),
                        "data": {"seeding.py": seeding_source()}})
        objects += [m.configmap(source, m.files_of(material or {}, source), ns, labels)
                    for source in m.sources([hub])]
    for p in hub.presentations:  # JupyterLab settings, mounted by each presentation's profiles
        files = lab.lab_files(p)
        if files:
            objects.append({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": _meta(lab.lab_configmap_name(p), ns, labels),
                "data": {k: json.dumps(d, indent=1, sort_keys=True) for k, d in files.items()},
            })
    # The fleet's branding in JupyterLab's top bar, mounted by every profile (labsettings.lab_branding_mounts).
    objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(lab.LAB_BRANDING, ns, labels),
                    "data": lab.lab_branding_files(hub, fleet)})
    return objects


__all__ = ["MANAGED_BY", "namespace_name", "render_manifests", "sizing", "hub_secret", "seeding_source"]
