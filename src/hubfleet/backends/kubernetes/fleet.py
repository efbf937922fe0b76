"""Cluster-wide choices, and the objects the whole fleet shares: ``render_fleet(spec) -> list[dict]``.

One shared pre-puller instead of one per release: z2jh's hook and continuous pre-pullers are a DaemonSet
each *per release*, and the user scheduler adds a Deployment plus ClusterRole/ClusterRoleBinding per
release; with hundreds of hubs on one cluster that is hundreds of pods per node pulling the same images.
Each hub's values switch those off, and this module renders one DaemonSet for the distinct images in use.
# ref: https://z2jh.jupyter.org/en/stable/administrator/optimization.html#pulling-images-before-users-arrive

The personal store is one NFS export. A PVC is namespaced and a PV binds to one claim, so each namespace that
mounts the store gets its own PV+PVC pair pointing at the same export (the 2i2c pattern): the fleet namespace for
archive jobs, and every hub. (A ReadWriteMany StorageClass cannot do this: each namespace's claim would get a
volume of its own.) The catalog's ``fleet.kubernetes.personal_store`` says where the export is:

- ``server``: the platform team's NFS server (a filer, Filestore, EFS...), by IP or a name the nodes resolve;
- ``cluster_ip``: hubfleet renders an NFS server here (Deployment + claim + Service with that fixed ClusterIP).

Either way the PVs name an address, never a cluster DNS name: the kubelet mounts NFS from the node, and the
node's resolver does not know ``*.svc.cluster.local``.
# ref: https://infrastructure.2i2c.org/topic/infrastructure/storage-layer/
# ref: https://github.com/kubernetes/examples/tree/master/staging/volumes/nfs (the in-cluster server, its image)
"""

from __future__ import annotations

import dataclasses

from dataclasses import dataclass

from hubfleet.plan.spec import FleetSpec, HubSpec

MANAGED_BY = {"app.kubernetes.io/managed-by": "hubfleet"}
MANAGED_SELECTOR = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
KEEP = {"helm.sh/resource-policy": "keep"}


@dataclass(frozen=True)
class RenderOptions:
    """What the catalog does not say and the cluster decides; one value per fleet."""

    chart_repo: str = "https://hub.jupyter.org/helm-chart/"
    chart_version: str = "4.4.0"
    system_namespace: str = "hubfleet-system"
    secret_name: str = "hubfleet"  # per hub namespace, created once by apply (see manifests.hub_secret)
    # The personal store's export, from fleet.kubernetes.personal_store (options_for); None = not configured.
    nfs_server: str | None = None
    nfs_path: str = "/export"
    nfs_in_cluster: bool = False  # render the NFS server too (cluster_ip mode)
    nfs_storage_class: str | None = None
    nfs_size: str = "100Gi"
    nfs_image: str = "registry.k8s.io/volume-nfs:0.8"  # Kubernetes' own e2e NFS server: exports /exports, NFSv4
    personal_store_capacity: str = "10Ti"  # nominal: NFS does not enforce a PV's capacity
    storage_class: str | None = None  # dynamic per-student claims; None = the cluster default
    ingress_class: str | None = "nginx"
    cluster_issuer: str = "letsencrypt"
    concurrency: float = 0.5  # share of a hub's students with a server running at the busiest hour
    nb_uid: int = 1000  # docker-stacks' default user; every student's files belong to it
    nb_gid: int = 100
    pause_image: str = "registry.k8s.io/pause:3.10"
    # The in-cluster controller (controlplane.py): its image, and the catalog's git repository for git-sync
    # (None = a single-file catalog in the ConfigMap hubfleet-catalog).
    controller_image: str = "ghcr.io/hubfleet/hubfleet:0.1.0"
    catalog_git_repo: str | None = None
    catalog_git_ref: str = "main"
    catalog_git_path: str = ""  # the catalog folder inside the repository
    catalog_git_period: str = "60s"
    catalog_git_secret: str | None = None  # a Secret with username/password for an HTTPS repository
    git_sync_image: str = "registry.k8s.io/git-sync/git-sync:v4.4.0"


DEFAULT_OPTIONS = RenderOptions()
NFS_SERVER = "personal-store-nfs"


class PersonalStoreUnset(ValueError):
    """A hub uses personal-subfolder storage, and the catalog does not say where the store is."""


def options_for(spec: FleetSpec, options: RenderOptions = DEFAULT_OPTIONS) -> RenderOptions:
    """``options`` with the catalog's ``fleet.kubernetes`` laid over them. Idempotent, so every renderer calls it."""
    k8s = spec.kubernetes or {}
    store = k8s.get("personal_store") or {}
    changes: dict = {}
    if store.get("cluster_ip"):
        # volume-nfs exports /exports as the NFSv4 root (fsid=0): mounts name paths below "/".
        changes.update(nfs_server=store["cluster_ip"], nfs_path="/", nfs_in_cluster=True,
                       nfs_storage_class=store.get("storage_class"), nfs_size=store.get("size") or "100Gi")
    elif store.get("server"):
        changes.update(nfs_server=store["server"], nfs_path=store.get("path") or "/export", nfs_in_cluster=False)
    if k8s.get("storage_class"):
        changes["storage_class"] = k8s["storage_class"]
    return dataclasses.replace(options, **changes) if changes else options


def uses_personal_store(hub: HubSpec) -> bool:
    return any(p.storage.layout == "personal-subfolder" for p in hub.presentations)


def personal_store_pair(namespace: str, pv_name: str, options: RenderOptions) -> list[dict]:
    """A PV on the shared export and the claim bound to it, in one namespace. Both kept on uninstall."""
    if not options.nfs_server:
        raise PersonalStoreUnset(
            f"{namespace}: personal-subfolder storage on Kubernetes needs to know where the personal store is: set "
            "fleet.kubernetes.personal_store in fleet.yaml, either `server: <your NFS server's IP>` (with `path`) "
            "or `cluster_ip: <a free ClusterIP>` for an NFS server hubfleet runs (docs/catalog.md)")
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": pv_name, "labels": dict(MANAGED_BY), "annotations": dict(KEEP)},
        "spec": {
            "capacity": {"storage": options.personal_store_capacity},
            "accessModes": ["ReadWriteMany"],
            # Retain: deleting a hub (or its claim) must never delete students' files.
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "mountOptions": ["nfsvers=4.1", "noatime"],
            "nfs": {"server": options.nfs_server, "path": options.nfs_path},
            "claimRef": {"namespace": namespace, "name": "personal-store"},
        },
    }
    pvc = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": "personal-store",
            "namespace": namespace,
            "labels": dict(MANAGED_BY),
            "annotations": dict(KEEP),
        },
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "storageClassName": "",  # "" = bind to the PV above, never provision
            "volumeName": pv_name,
            "resources": {"requests": {"storage": options.personal_store_capacity}},
        },
    }
    return [pv, pvc]


def images_in_use(spec: FleetSpec) -> list[str]:
    return sorted({p.image for hub in spec.hubs for p in hub.profiles})


def _puller(spec: FleetSpec, options: RenderOptions) -> dict:
    labels = {**MANAGED_BY, "app.kubernetes.io/name": "hubfleet-image-puller"}
    # Each init container pulls one image and exits at once; the pause container keeps the pod (and so the
    # images, which the kubelet will not garbage-collect while a pod uses them) alive. Same idea as z2jh's.
    # ref: https://github.com/jupyterhub/zero-to-jupyterhub-k8s/blob/main/jupyterhub/templates/image-puller/_helpers-daemonset.tpl
    init = [
        {
            "name": f"pull-{i}",
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["/bin/sh", "-c", "echo pulled"],
            "resources": {"requests": {"cpu": "0", "memory": "0"}},
            "securityContext": {"runAsUser": 65534, "runAsGroup": 65534, "allowPrivilegeEscalation": False},
        }
        for i, image in enumerate(images_in_use(spec))
    ]
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "hubfleet-image-puller", "namespace": options.system_namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "hubfleet-image-puller"}},
            # Pull on a few nodes at a time, so a new image does not saturate the registry.
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 0,
                    # Same placement as user pods: dedicated user nodes in z2jh's convention.
                    "tolerations": [
                        {"key": "hub.jupyter.org/dedicated", "operator": "Equal", "value": "user",
                         "effect": "NoSchedule"},
                    ],
                    "initContainers": init,
                    "containers": [
                        {
                            "name": "pause",
                            "image": options.pause_image,
                            "resources": {"requests": {"cpu": "0", "memory": "0"},
                                          "limits": {"cpu": "10m", "memory": "20Mi"}},
                            "securityContext": {"runAsUser": 65534, "runAsGroup": 65534,
                                                "allowPrivilegeEscalation": False},
                        }
                    ],
                },
            },
        },
    }


def nfs_server_objects(options: RenderOptions) -> list[dict]:
    """The in-cluster NFS server (cluster_ip mode): its data claim (kept), one pod, a Service at the fixed IP."""
    ns, labels = options.system_namespace, {**MANAGED_BY, "app.kubernetes.io/name": NFS_SERVER}
    selector = {"app.kubernetes.io/name": NFS_SERVER}
    meta = {"name": NFS_SERVER, "namespace": ns, "labels": labels}
    claim_spec: dict = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": options.nfs_size}}}
    if options.nfs_storage_class:
        claim_spec["storageClassName"] = options.nfs_storage_class
    ports = [("nfs", 2049), ("mountd", 20048), ("rpcbind", 111)]
    return [
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {**meta, "annotations": dict(KEEP)},
         "spec": claim_spec},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},  # two servers on one RWO volume must never overlap
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": labels}, "spec": {
                "automountServiceAccountToken": False,
                "containers": [{
                    "name": "nfs-server",
                    "image": options.nfs_image,
                    "ports": [{"name": n, "containerPort": p} for n, p in ports],
                    # The kernel NFS server needs it (nfsd, rpc.mountd). ref: the kubernetes/examples nfs server
                    "securityContext": {"privileged": True},
                    "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                    "volumeMounts": [{"name": "data", "mountPath": "/exports"}],
                }],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": NFS_SERVER}}],
            }},
        }},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": {
            "clusterIP": options.nfs_server,  # fixed: the PVs name this address, and a PV's server is immutable
            "selector": selector,
            "ports": [{"name": n, "port": p, "targetPort": p, "protocol": "TCP"} for n, p in ports],
        }},
    ]


def render_fleet(spec: FleetSpec, options: RenderOptions = DEFAULT_OPTIONS) -> list[dict]:
    """The fleet's shared objects, written to ``_fleet/manifests.yaml``. Their number does not grow with hubs.
    With ``auth: embedded``, the portal (portal.py) is one of them."""
    options = options_for(spec, options)
    ns = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": options.system_namespace, "labels": {**MANAGED_BY, "hubfleet.io/fleet": spec.fleet}},
    }
    objects = [ns, _puller(spec, options)]
    if any(uses_personal_store(h) for h in spec.hubs) or any(
        p.storage.layout == "personal-subfolder" for p in spec.retired
    ):
        # The archiver's view of every home, in the fleet namespace.
        if options.nfs_in_cluster:
            objects += nfs_server_objects(options)
        objects += personal_store_pair(options.system_namespace, f"{spec.fleet}-personal-store", options)
    from .portal import portal_objects  # the portal module builds on this one's options

    return objects + portal_objects(spec, options)
