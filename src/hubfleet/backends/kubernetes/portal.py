"""The fleet portal in the cluster (``auth: embedded``): the fleet's OpenID Connect provider and "your courses".

``portal_objects(spec, options)`` renders, into the fleet namespace (``_fleet/``):

- a Deployment running ``hubfleet portal serve`` (``web/catalog_state.py``: the portal's view of the fleet is
  planned from the same catalog the controller reads, through the same git-sync sidecar or ConfigMap), one replica
  with ``Recreate``: the provider keeps its one-time authorization codes in memory (``web/oidc.py``), so two
  replicas would refuse each other's codes;
- its ServiceAccount, whose only API rights are those of the waker (``--wake``, web/waker.py): ``get`` and
  ``update`` (``patch`` too) on the two Deployments named ``hub`` and ``proxy`` in hub namespaces, to scale a
  hibernated hub back up (backends/kubernetes/hibernation.py). The ClusterRole ``hubfleet-waker`` (with the
  controller's RBAC, controlplane.py: the platform team applies cluster roles, the controller cannot) is bound
  in each hub namespace by a RoleBinding rendered with the hub (``waker_objects``), never cluster-wide, so
  the portal can touch nothing in the fleet namespace or any other; ``resourceNames`` keeps it off every other
  Deployment (a ``list``/``watch``/``create``/``delete`` has no name to check, and is not granted);
- a Service (ClusterIP) the hubs' server-to-server calls (token, userinfo) go to, and an Ingress at
  ``portal.{domain}`` for browsers, TLS as the hubs' (cert-manager cluster issuer);
- a PersistentVolumeClaim for its state: students' password hashes and the operator's ``passwords.txt``
  (generated once per user), kept on uninstall;
- two Secrets, as placeholders (keys, no data; apply fills them: ``secrets.ensure_hub_secret``):
  ``hubfleet-portal`` with the session and access-token secrets and the RS256 signing key, generated once; and
  ``hubfleet-portal-clients`` with each hub's OAuth client secret under the hub's name, copied by apply from the
  hub's own Secret (``mirror_client_secret``), where it is generated once. A hub's namespace is the only place
  its pods can read a Secret from, the portal's is the only place the portal can: the hub's copy is the original.

The hubs (``authentication.auth_config``) send browsers to ``https://portal.{domain}/portal/oauth/authorize`` and call
``http://hubfleet-portal.<fleet namespace>.svc.cluster.local:8080/portal/oauth/{token,userinfo}``; their
``client_id`` is the hub's name and their redirect URI ``https://{hub}.{domain}/hub/oauth_callback``, exactly
what the portal registers for that hub (``web/directory.py``).
"""

from __future__ import annotations

import copy

from hubfleet.plan.spec import FleetSpec

from .cluster import Cluster, Conflict, NotFound
from .fleet import KEEP, MANAGED_BY, RenderOptions

NAME = "hubfleet-portal"
CLIENTS_SECRET = "hubfleet-portal-clients"
PORT = 8080  # Service port = container port: hubs name it in their token URL
# Key names are the file names the portal reads in its secrets folder (web/portal.py create_app).
SECRET_KEYS = ("session_secret", "token_secret")
SIGNING_KEY = "oidc_signing_key.json"
# Below /srv (in every Debian-based image): nothing of the image's is shadowed.
BASE = "/srv/hubfleet"
STATE_DIR, SECRETS_DIR, CLIENTS_DIR, CATALOG_DIR = (f"{BASE}/state", f"{BASE}/secrets/portal",
                                                    f"{BASE}/secrets/clients", f"{BASE}/catalog")
PREFIX = "/portal"  # web.auth.PORTAL_PREFIX: everything signed-in, the provider included, lives under it
MIRROR_ATTEMPTS = 20
HUB_SECRET_KEY = "oauth-client-secret"  # the key in each hub's own Secret (manifests.hub_secret)


WAKER_ROLE = "hubfleet-waker"  # ClusterRole, bound per hub namespace to the portal's ServiceAccount
WAKER_SERVICE = "hubfleet-waker"  # per hub namespace: the ingress's fallback while the hub's proxy has no endpoints
METRICS_SERVICE = "hubfleet-metrics"


def waker_rules() -> list[dict]:
    """What the waker needs in a hub namespace, and nothing more: read and scale the hub's two Deployments."""
    return [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch", "update"],
             "resourceNames": ["hub", "proxy"]}]


def waker_objects(namespace: str, options: RenderOptions) -> list[dict]:
    """A hub namespace's waker objects, rendered with the hub (manifests.render_manifests):

    - the RoleBinding of ``hubfleet-waker`` to the portal's ServiceAccount in this namespace only;
    - the Service ``hubfleet-waker`` the hub's Ingress falls back to while ``proxy-public`` has no endpoints (the
      hub hibernated): ``nginx.ingress.kubernetes.io/default-backend`` (values.py). It has no selector: its
      EndpointSlice (``waker_endpoints``) names the portal's pod addresses, copied by the controller every step.
      Not an ExternalName Service pointing at the portal's: ingress-nginx takes a default backend's endpoints as
      IP addresses and cannot use a DNS name there.
      # ref: https://github.com/kubernetes/ingress-nginx/issues/12158 (ExternalName default backend: "invalid IPv6
      #      address", 504) and https://github.com/kubernetes/ingress-nginx/issues/5854
    """
    labels = dict(MANAGED_BY)
    return [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": WAKER_ROLE, "namespace": namespace, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": WAKER_ROLE},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": options.system_namespace}]},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": WAKER_SERVICE, "namespace": namespace, "labels": labels},
         "spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 80, "targetPort": PORT, "protocol": "TCP"}]}},
    ]


def waker_endpoints(namespace: str, addresses: list[str]) -> dict:
    """The EndpointSlice of a hub namespace's ``hubfleet-waker`` Service: the portal pods' ``addresses``."""
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": WAKER_SERVICE, "namespace": namespace,
                     "labels": {**MANAGED_BY, "kubernetes.io/service-name": WAKER_SERVICE,
                                "endpointslice.kubernetes.io/managed-by": "hubfleet.io"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": PORT, "protocol": "TCP"}],
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in sorted(addresses)],
    }


def portal_addresses(cluster: Cluster, options: RenderOptions) -> list[str]:
    """The ready addresses behind the portal's Service, from its EndpointSlices (the cluster's own)."""
    out = set()
    for es in cluster.list("discovery.k8s.io/v1", "EndpointSlice", options.system_namespace,
                           f"kubernetes.io/service-name={NAME}"):
        for ep in es.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready", True):
                out.update(ep.get("addresses") or [])
    return sorted(out)


def sync_waker_endpoints(cluster: Cluster, spec: FleetSpec, options: RenderOptions) -> int:
    """Point every hub namespace's ``hubfleet-waker`` Service at the portal pods (the controller, every step);
    returns the EndpointSlices written (0 when nothing moved). A namespace not created yet is skipped."""
    if not uses_portal(spec):
        return 0
    addresses = portal_addresses(cluster, options)
    written = 0
    for hub in spec.hubs:
        try:
            written += bool(cluster.apply(waker_endpoints(hub.name, addresses)))
        except NotFound:
            continue
    return written


def uses_portal(spec: FleetSpec) -> bool:
    return any((h.auth or {}).get("type", "embedded") == "embedded" for h in spec.hubs)


def public_url(domain: str) -> str:
    """Where browsers reach the portal."""
    return f"https://portal.{domain}"


def internal_url(options: RenderOptions) -> str:
    """Where hubs reach it from inside the cluster (cluster DNS; the hub pods resolve it, unlike nodes)."""
    return f"http://{NAME}.{options.system_namespace}.svc.cluster.local:{PORT}"


def catalog_path(options: RenderOptions) -> str:
    """Where the catalog is in the pod: the git-sync checkout, or the ConfigMap's single file (as the controller)."""
    if options.catalog_git_repo:
        return f"{CATALOG_DIR}/current/{options.catalog_git_path}".rstrip("/")
    return f"{CATALOG_DIR}/catalog.yaml"


def _meta(name: str, options: RenderOptions, annotations: dict | None = None) -> dict:
    meta = {"name": name, "namespace": options.system_namespace,
            "labels": {**MANAGED_BY, "app.kubernetes.io/name": NAME}}
    if annotations:
        meta["annotations"] = annotations
    return meta


def _catalog_volume(options: RenderOptions) -> tuple[list[dict], list[dict], list[dict]]:
    """(volumes, init containers, sidecars) bringing the catalog, the controller's way (controlplane.py)."""
    from .controlplane import controller_objects

    # The controller's Deployment is the one definition of how the catalog arrives; take its parts.
    (deploy,) = [o for o in controller_objects(options) if o["kind"] == "Deployment"]
    pod = deploy["spec"]["template"]["spec"]
    sidecars = [c for c in pod["containers"] if c["name"] != "controller"]
    return [v for v in pod["volumes"] if v["name"] == "catalog"], pod.get("initContainers", []), sidecars


def _deployment(spec: FleetSpec, options: RenderOptions) -> dict:
    volumes, init, sidecars = _catalog_volume(options)
    volumes = [
        *volumes,
        {"name": "state", "persistentVolumeClaim": {"claimName": NAME}},
        {"name": "secrets", "secret": {"secretName": NAME}},
        # optional: a fleet whose hubs were never applied has no client yet, and the portal still serves its pages
        {"name": "clients", "secret": {"secretName": CLIENTS_SECRET, "optional": True}},
        {"name": "tmp", "emptyDir": {}},
    ]
    restricted = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "allowPrivilegeEscalation": False,
                  "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    portal = {
        "name": "portal",
        "image": options.controller_image,  # hubfleet's own image: the controller's
        "command": ["hubfleet", "portal", "serve", catalog_path(options), "--host", "0.0.0.0", "--port", str(PORT),
                    "--state", STATE_DIR, "--secrets", SECRETS_DIR, "--clients", CLIENTS_DIR,
                    "--public-url", public_url(spec.domain), "--wake"],
        "ports": [{"name": "http", "containerPort": PORT}],
        "env": [{"name": "HOME", "value": "/tmp"}],
        "volumeMounts": [
            {"name": "catalog", "mountPath": CATALOG_DIR, "readOnly": True},
            {"name": "state", "mountPath": STATE_DIR},
            {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True},
            {"name": "clients", "mountPath": CLIENTS_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": PORT}, "periodSeconds": 10},
        "securityContext": restricted,
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    }
    labels = {**MANAGED_BY, "app.kubernetes.io/name": NAME}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(NAME, options),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # one provider at a time (codes in memory, state on a RWO claim)
            "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
            "template": {"metadata": {"labels": labels}, "spec": {
                "serviceAccountName": NAME,
                # The waker's token (its only rights: scaling hubs' hub and proxy Deployments, see above).
                "automountServiceAccountToken": True,
                # The state claim is written as this group (fsGroup), never as root.
                "securityContext": {"runAsNonRoot": True, "fsGroup": 65532,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                **({"initContainers": init} if init else {}),
                "containers": [portal, *sidecars],
                "volumes": volumes,
            }},
        },
    }


def portal_objects(spec: FleetSpec, options: RenderOptions) -> list[dict]:
    """The portal's objects for ``_fleet/`` (none when no hub signs in through it)."""
    if not uses_portal(spec):
        return []
    host = f"portal.{spec.domain}"
    selector = {"app.kubernetes.io/name": NAME}
    ingress_spec: dict = {
        "tls": [{"hosts": [host], "secretName": f"{NAME}-tls"}],
        "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
            "service": {"name": NAME, "port": {"number": PORT}}}}]}}],
    }
    if options.ingress_class:
        ingress_spec["ingressClassName"] = options.ingress_class
    generated = {"hubfleet.io/generate-once": "true", "hubfleet.io/keys": ",".join(SECRET_KEYS),
                 "hubfleet.io/rsa-keys": SIGNING_KEY}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(NAME, options),
         "automountServiceAccountToken": False},  # the pod asks for its token itself (the only pod using it)
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": _meta(NAME, options, generated)},
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": _meta(
            CLIENTS_SECRET, options, {"hubfleet.io/mirrored-from": f"<hub namespace>/{options.secret_name}:"
                                                                     f"{HUB_SECRET_KEY}"})},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _meta(NAME, options, dict(KEEP)),
         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                  **({"storageClassName": options.storage_class} if options.storage_class else {})}},
        _deployment(spec, options),
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(NAME, options), "spec": {
            "type": "ClusterIP", "selector": selector,
            "ports": [{"name": "http", "port": PORT, "targetPort": PORT, "protocol": "TCP"}]}},
        metrics_service(options),
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
         "metadata": _meta(NAME, options, {"cert-manager.io/cluster-issuer": options.cluster_issuer}),
         "spec": ingress_spec},
    ]


def metrics_service(options: RenderOptions) -> dict:
    """A Service in front of the portal's ``/metrics`` (web/metrics.py) for the Prometheus Operator: a
    ServiceMonitor selecting ``app.kubernetes.io/name: hubfleet`` scrapes its port named ``metrics``, with the
    fleet's bearer token (docs/kubernetes-metrics.md). Its own Service, so selecting it never picks the
    portal's OAuth endpoints' Service by accident."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": {
        "name": METRICS_SERVICE, "namespace": options.system_namespace,
        "labels": {**MANAGED_BY, "app.kubernetes.io/name": "hubfleet", "app.kubernetes.io/component": "portal"}},
        "spec": {"type": "ClusterIP", "selector": {"app.kubernetes.io/name": NAME},
                 "ports": [{"name": "metrics", "port": PORT, "targetPort": PORT, "protocol": "TCP"}]}}


def mirror_client_secret(cluster: Cluster, hub: str, hub_namespace: str, options: RenderOptions) -> bool:
    """Copy hub ``hub``'s OAuth client secret (generated once in its own Secret) into the portal's clients Secret,
    under the hub's name (its client_id). Adds or corrects that one key, never touches another; True if it wrote.

    The hub's value is the original: a copy that differs (an operator rotated the hub's) is brought in line.
    Hubs converge in parallel, so a write that lost a race (Conflict) reads again and retries."""
    data = cluster.get("v1", "Secret", hub_namespace, options.secret_name).get("data") or {}
    value = data.get(HUB_SECRET_KEY)
    if not value:
        return False
    ns = options.system_namespace
    for _ in range(MIRROR_ATTEMPTS):
        try:
            try:
                live = cluster.get("v1", "Secret", ns, CLIENTS_SECRET)
            except NotFound:
                cluster.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                "metadata": _meta(CLIENTS_SECRET, options), "data": {hub: value}})
                return True
            have = dict(live.get("data") or {})
            if have.get(hub) == value:
                return False
            live = copy.deepcopy(live)
            live["data"] = {**have, hub: value}
            live.pop("status", None)
            live["metadata"].pop("managedFields", None)
            cluster.replace(live)
            return True
        except Conflict:
            continue
        except NotFound:
            return False  # no fleet namespace yet: the fleet's objects come first (prepare), then the next converge
    raise Conflict(f"Secret {ns}/{CLIENTS_SECRET}: gave up adding {hub}'s client after {MIRROR_ATTEMPTS} conflicts")
