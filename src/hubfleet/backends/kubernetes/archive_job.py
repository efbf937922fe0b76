"""The archive and purge steps on Kubernetes: a rendered ``Job`` per hub, running the *same* ``archive.py`` as the
local backend (shipped verbatim in a ConfigMap with ``jobrunner.py``, both standard library only, run with the
image's own ``python3``). Pure builders: ``(presentation, …) -> list[dict]``, validated strictly in the tests.

What the archive Job mounts and writes:

- the presentation's storage, read-only where it can be: the personal store (``personal-store`` claim, RWX, mounted
  writable only because teardown leaves the stub and removes the course folders there), or every student's
  per-presentation claim at ``/students/<username>`` (read-only; those claims go with the namespace, which the
  controller deletes only after the verified marker);
- the archive store: a claim ``hubfleet-archive-store`` bound to a Retain PV on the archive export (the same
  per-namespace PV+PVC pattern as the personal store), so archives outlive the hub's namespace. An S3 bucket is used
  the same way, through a CSI driver that presents it as a volume (e.g. mountpoint-s3): the Job stays stdlib-only.
- the marker ConfigMap (records.py format) in its own namespace, through a ServiceAccount whose Role allows
  ConfigMaps there and nothing else. The controller copies it to the fleet namespace before deleting the hub's.

Students are named by their usernames in archives, the marker and the ledger (and ``--exclude`` compares
usernames), never by a directory name: per-presentation claims are mounted at ``/students/<username>``, the
username from the annotation KubeSpawner puts on every claim it makes; on the personal store the Job decodes each
``home/<storage name>`` (jobrunner.username_of). # ref: kubespawner 7.0.0 _build_common_annotations

Per-presentation layout: one volume per student claim. Clusters whose block storage limits volumes per node
(e.g. ~25-39 on cloud disks) need an RWX storage class for hubs of that size; this is a known limit.
"""

from __future__ import annotations

import functools
from pathlib import Path

from hubfleet.backends.kubernetes.fleet import KEEP, MANAGED_BY, PersonalStoreUnset, RenderOptions
from hubfleet.catalog.naming import dns_label, is_username
from hubfleet.plan.spec import PresentationSpec

ARCHIVER = "hubfleet-archiver"
STORE_CLAIM = "hubfleet-archive-store"
CODE_DIR = "/opt/hubfleet"
LABEL = "hubfleet.io/archive-job"
# Any python3 will do for the purge Job (it only deletes files); the archive Job uses the course's own image.
DEFAULT_IMAGE = "python:3.12-slim"
USERNAME_ANNOTATION = "hub.jupyter.org/username"  # KubeSpawner's, on every claim it makes: the raw username


# The lifecycle modules the Job runs, as the ``hubfleet.lifecycle`` package (all standard library only): the same
# engine, journal and archiver the local backend imports, so both backends keep the same guarantees.
# ConfigMap key -> path under CODE_DIR (keys cannot hold '/').
SHIPPED = {
    "hubfleet.__init__.py": "hubfleet/__init__.py",
    "lifecycle.__init__.py": "hubfleet/lifecycle/__init__.py",
    # naming.storage_name names the archive files; the catalog package itself (pydantic, YAML) is not shipped.
    "catalog.__init__.py": "hubfleet/catalog/__init__.py",
    "naming.py": "hubfleet/catalog/naming.py",
    **{f"{m}.py": f"hubfleet/lifecycle/{m}.py"
       for m in ("archive", "engine", "faultpoints", "jobrunner", "ledger", "readback", "restoring", "store")},
}


@functools.lru_cache(maxsize=1)
def shipped_code() -> dict[str, str]:
    """The modules of ``SHIPPED``, byte for byte as the local backend imports them."""
    import hubfleet

    root = Path(hubfleet.__file__).resolve().parent.parent
    code = {key: (root / path).read_text(encoding="utf-8") for key, path in SHIPPED.items()
            if key != "catalog.__init__.py"}
    return {**code, "catalog.__init__.py": '"""In the archive Job: only naming.py of the catalog package."""\n'}


def job_name(kind: str, presentation: str) -> str:
    return f"hubfleet-{kind}-{dns_label(presentation)}"[:63].rstrip("-")


def _meta(name: str, ns: str, extra: dict | None = None) -> dict:
    return {"name": name, "namespace": ns, "labels": {**MANAGED_BY, LABEL: "true", **(extra or {})}}


def support_objects(ns: str, fleet: str, options: RenderOptions, *, archive_nfs_path: str = "/archives",
                    archive_nfs_server: str | None = None) -> list[dict]:
    """What any archive/purge Job in ``ns`` needs: the code, its account, and the archive store."""
    pv_name = f"{fleet}-{ns}-archive-store"[:253]
    if not (archive_nfs_server or options.nfs_server):
        raise PersonalStoreUnset(
            f"{ns}: archives are written to the personal store's NFS server, and the catalog names none: set "
            "fleet.kubernetes.personal_store in fleet.yaml (`server: <IP>` or `cluster_ip: <a free ClusterIP>`)")
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(ARCHIVER, ns), "data": shipped_code()},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(ARCHIVER, ns),
         "automountServiceAccountToken": True},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(ARCHIVER, ns),
         # The marker is the only thing the Job writes through the API.
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "update"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(ARCHIVER, ns),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ARCHIVER},
         "subjects": [{"kind": "ServiceAccount", "name": ARCHIVER, "namespace": ns}]},
        {"apiVersion": "v1", "kind": "PersistentVolume",
         "metadata": {"name": pv_name, "labels": dict(MANAGED_BY), "annotations": dict(KEEP)},
         "spec": {"capacity": {"storage": options.personal_store_capacity}, "accessModes": ["ReadWriteMany"],
                  # Retain: deleting the hub's namespace (and this claim) must never delete an archive.
                  "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                  "mountOptions": ["nfsvers=4.1", "noatime"],
                  "nfs": {"server": archive_nfs_server or options.nfs_server, "path": archive_nfs_path},
                  "claimRef": {"namespace": ns, "name": STORE_CLAIM}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {**_meta(STORE_CLAIM, ns), "annotations": dict(KEEP)},
         "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": pv_name,
                  "resources": {"requests": {"storage": "1Gi"}}}},
    ]


def _job(ns: str, name: str, presentation: str, image: str, args: list[str], volumes: list[dict],
         mounts: list[dict], options: RenderOptions) -> dict:
    labels = {LABEL: "true", "hubfleet.io/presentation": dns_label(presentation)}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(name, ns, {"hubfleet.io/presentation": dns_label(presentation)}),
        "spec": {
            # Retries resume: archive.py skips complete, verified archives and rewrites partial ones.
            "backoffLimit": 4,
            "activeDeadlineSeconds": 6 * 3600,
            "template": {
                "metadata": {"labels": {**MANAGED_BY, **labels}},
                "spec": {
                    "serviceAccountName": ARCHIVER,
                    "restartPolicy": "Never",
                    # The students' files belong to the notebook user; reading them needs no more than that.
                    "securityContext": {"runAsUser": options.nb_uid, "runAsGroup": options.nb_gid,
                                        "fsGroup": options.nb_gid},
                    "containers": [{
                        "name": "archiver",
                        "image": image,
                        "command": ["python3", "-m", "hubfleet.lifecycle.jobrunner", *args],
                        "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
                                {"name": "PYTHONPATH", "value": CODE_DIR}],
                        # Two cores: archive_many runs one process per core (benchmarks/archive.py).
                        "resources": {"requests": {"cpu": "2", "memory": "1Gi"},
                                      "limits": {"cpu": "2", "memory": "2Gi"}},
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "code", "mountPath": CODE_DIR, "readOnly": True},
                                         {"name": "archives", "mountPath": "/archives"}, *mounts],
                    }],
                    "volumes": [{"name": "code", "configMap": {"name": ARCHIVER, "items": [
                                    {"key": k, "path": v} for k, v in SHIPPED.items()]}},
                                {"name": "archives", "persistentVolumeClaim": {"claimName": STORE_CLAIM}}, *volumes],
                },
            },
        },
    }


def render_archive_job(pres: PresentationSpec, ns: str, image: str, claims: dict[str, str], team: list[str],
                       options: RenderOptions, portal_url: str = "") -> dict:
    """The archive Job of one presentation. ``claims``: the per-presentation student claims, claim name ->
    username (``claim_users``), each mounted at /students/<username>; ignored for the personal store."""
    args = ["archive", "--presentation", pres.key, "--layout", pres.storage.layout, "--volume", pres.storage.volume,
            "--dest", "/archives", "--exclude", ",".join(sorted(team)), "--namespace", ns]
    if pres.storage.layout == "personal-subfolder":
        args += ["--src-root", "/store", "--course-folder", Path(pres.storage.course_dir).name, "--teardown",
                 "--portal-url", portal_url]
        volumes = [{"name": "store", "persistentVolumeClaim": {"claimName": "personal-store"}}]
        mounts = [{"name": "store", "mountPath": "/store"}]
    else:
        args += ["--src-root", "/students"]
        volumes, mounts = [], []
        for i, (claim, user) in enumerate(sorted(claims.items())):
            volumes.append({"name": f"s{i}", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
            mounts.append({"name": f"s{i}", "mountPath": f"/students/{user}", "readOnly": True})
    return _job(ns, job_name("archive", pres.key), pres.key, image, args, volumes, mounts, options)


def claim_users(claims: list[dict]) -> dict[str, str]:
    """Claim name -> the username KubeSpawner made it for (its ``hub.jupyter.org/username`` annotation, the raw
    name; the label of the same name is a slug). A claim without a valid username is an error a person must look
    at: archiving it under a made-up name would give a student's files to nobody."""
    out = {}
    for claim in claims:
        meta = claim["metadata"]
        user = (meta.get("annotations") or {}).get(USERNAME_ANNOTATION, "")
        if not is_username(user):
            raise ValueError(f"claim {meta['name']} has no valid {USERNAME_ANNOTATION} annotation ({user!r}); "
                             f"annotate it with the owner's username, then run the archive again")
        out[meta["name"]] = user
    return out


def render_purge_job(pres: PresentationSpec, ns: str, image: str, options: RenderOptions) -> dict:
    """Deletes the presentation's archives from the store and marks them purged (runs in the fleet namespace)."""
    args = ["purge", "--presentation", pres.key, "--layout", pres.storage.layout, "--volume", pres.storage.volume,
            "--dest", "/archives", "--namespace", ns]
    return _job(ns, job_name("purge", pres.key), pres.key, image, args, [], [], options)


def job_state(job: dict) -> str:
    """'succeeded' | 'failed' | 'running', from the Job's status conditions (what `kubectl wait` reads)."""
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") == "Complete":
            return "succeeded"
        if cond.get("status") == "True" and cond.get("type") == "Failed":
            return "failed"
    return "succeeded" if status.get("succeeded") else "running"


__all__ = ["DEFAULT_IMAGE", "claim_users", "job_name", "job_state", "render_archive_job", "render_purge_job", "shipped_code", "support_objects"]
