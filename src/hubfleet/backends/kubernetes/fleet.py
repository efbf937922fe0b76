"""Cluster-wide choices, and the objects the whole fleet shares: ``render_fleet(spec) -> list[dict]``.

One shared pre-puller instead of one per release: z2jh's hook and continuous pre-pullers are a DaemonSet
each *per release*, and the user scheduler adds a Deployment plus ClusterRole/ClusterRoleBinding per
release; with hundreds of hubs on one cluster that is hundreds of pods per node pulling the same images.
Each hub's values switch those off, and this module renders one DaemonSet for the distinct images in use.
# ref: https://z2jh.jupyter.org/en/stable/administrator/optimization.html#pulling-images-before-users-arrive

The personal store is one NFS export (a filer, Filestore, EFS...) the platform team provides. A PVC is
namespaced and a PV binds to one claim, so each namespace that mounts the store gets its own PV+PVC pair
pointing at the same export (the 2i2c pattern): the fleet namespace for archive jobs, and every hub.
# ref: https://infrastructure.2i2c.org/topic/infrastructure/storage-layer/
"""

from __future__ import annotations

from dataclasses import dataclass

from hubfleet.plan.spec import FleetSpec, HubSpec

MANAGED_BY = {"app.kubernetes.io/managed-by": "hubfleet"}
KEEP = {"helm.sh/resource-policy": "keep"}


@dataclass(frozen=True)
class RenderOptions:
    """What the catalog does not say and the cluster decides; one value per fleet."""

    chart_repo: str = "https://hub.jupyter.org/helm-chart/"
    chart_version: str = "4.4.0"
    system_namespace: str = "hubfleet-system"
    secret_name: str = "hubfleet"  # per hub namespace, created once by apply (see manifests.hub_secret)
    nfs_server: str = "personal-store.hubfleet-system.svc.cluster.local"
    nfs_path: str = "/export"
    personal_store_capacity: str = "10Ti"  # nominal: NFS does not enforce a PV's capacity
    storage_class: str | None = None  # dynamic per-student claims; None = the cluster default
    ingress_class: str | None = "nginx"
    cluster_issuer: str = "letsencrypt"
    concurrency: float = 0.5  # share of a hub's students with a server running at the busiest hour
    nb_uid: int = 1000  # docker-stacks' default user; every student's files belong to it
    nb_gid: int = 100
    pause_image: str = "registry.k8s.io/pause:3.10"


DEFAULT_OPTIONS = RenderOptions()


def uses_personal_store(hub: HubSpec) -> bool:
    return any(p.storage.layout == "personal-subfolder" for p in hub.presentations)


def personal_store_pair(namespace: str, pv_name: str, options: RenderOptions) -> list[dict]:
    """A PV on the shared export and the claim bound to it, in one namespace. Both kept on uninstall."""
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


def render_fleet(spec: FleetSpec, options: RenderOptions = DEFAULT_OPTIONS) -> list[dict]:
    """The fleet's shared objects, written to ``_fleet/manifests.yaml``. Their number does not grow with hubs."""
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
        objects += personal_store_pair(options.system_namespace, f"{spec.fleet}-personal-store", options)
    return objects
