"""How a Kubernetes hub leaves: ``stop`` (helm uninstall), ``archive`` and ``purge`` (Jobs), ``delete`` (namespace).

A mixin of ``KubernetesBackend`` (backend.py), which dispatches these plan actions here; it uses the backend's
``cluster``, ``helm`` and ``options``.

`stop` uninstalls the release and keeps the namespace, the Secret and every claim: `start` brings the same hub
back with the same tokens. `delete` removes the namespace, and is refused while a claim holds student files
without a verified archive (records.unarchived_claims); before it goes, the hub's verified markers are copied to
the fleet namespace so the archived/purged facts outlive it.

`archive` creates the presentation's archive Job (archive_job.py: the same archive.py as the local backend, in a
ConfigMap), which writes archives to the archive store, verifies them and writes the verified marker. The action
returns once the Job exists; `delete` keeps refusing until the marker is verified, so the next reconcile after the
Job finished is the one that deletes. A failed Job is reported and re-created. `purge` runs a purge Job in the
fleet namespace that deletes the archives and marks the marker purged.
"""

from __future__ import annotations

from collections.abc import Callable

from hubfleet.plan.diff import Action, Kind
from hubfleet.plan.spec import FleetSpec

from . import records
from .cluster import Cluster, NotFound, UnsupportedKind
from .fleet import MANAGED_BY, MANAGED_SELECTOR, RenderOptions, options_for
from .helm import Helm, ReleaseNotFound

__all__ = ["ArchiveJobFailed", "LifecycleNotAvailable", "RefusedDelete", "Retirement"]


class LifecycleNotAvailable(NotImplementedError):
    pass


class ArchiveJobFailed(RuntimeError):
    """The archive or purge Job failed; it was re-created, and nothing was deleted."""


class RefusedDelete(RuntimeError):
    pass


class Retirement:
    """``stop``, ``delete``, ``archive`` and ``purge`` of one hub (a mixin of ``KubernetesBackend``)."""

    cluster: Cluster
    helm: Helm
    options: RenderOptions
    def _lifecycle_job(self, action: Action, spec: FleetSpec, say: Callable[[str], None]) -> str:
        from .archive_job import DEFAULT_IMAGE, claim_users, render_archive_job, render_purge_job, support_objects

        pres = next((p for p in spec.retired if p.key == action.presentation), None)
        if pres is None:
            raise LifecycleNotAvailable(f"{action.presentation} is not a retired presentation of this spec")
        marker = records.read_markers(self.cluster).get(pres.key)
        if action.kind == Kind.archive:
            if marker and marker.verified:
                return f"already archived (verified marker {records.marker_name(pres.key)})"
            ns = action.hub
            applied = records.read_record(self.cluster, ns) or {}
            label = records.PRESENTATION_LABEL
            claims = claim_users([c for c in records.student_claims(self.cluster, ns)
                                  if (c["metadata"].get("labels") or {}).get(label) == records.dns_label(pres.key)
                                  and c["metadata"]["name"] != records.PERSONAL_STORE_CLAIM])
            # Team members' own folders are never archived away as student work (datahub#7829).
            team = sorted(set(pres.instructors) | set(pres.tutors) | set(applied.get("admins") or []))
            image = next((p["image"] for p in applied.get("profiles") or [] if p.get("presentation") == pres.key),
                         DEFAULT_IMAGE)
            job = render_archive_job(pres, ns, image, claims, team, self.options,
                                     portal_url=f"https://portal.{spec.domain}/portal/archives/")
        else:
            if marker and marker.purged:
                return "already purged"
            ns = self.options.system_namespace
            self.cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns,
                                "labels": {**MANAGED_BY, "hubfleet.io/fleet": spec.fleet}}})
            job = render_purge_job(pres, ns, DEFAULT_IMAGE, self.options)
        say(f"{action.kind.value} Job {job['metadata']['name']}")
        for obj in support_objects(ns, spec.fleet, options_for(spec, self.options)):
            self.cluster.apply(obj)
        return self._run_job(job, action.kind.value)

    def _run_job(self, job: dict, what: str) -> str:
        from .archive_job import job_state

        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        try:
            live = self.cluster.get("batch/v1", "Job", ns, name)
        except NotFound:
            live = None
        if live is not None:
            state = job_state(live)
            if state != "failed":
                return f"{what} Job {name} {state}; the hub is deleted once its verified marker is there"
            # A Job's template is immutable and a failed Job does not run again: replace it, and say so loudly.
            self.cluster.delete("batch/v1", "Job", ns, name)
            self.cluster.create(job)
            raise ArchiveJobFailed(f"{what} Job {ns}/{name} failed; re-created it. Nothing was deleted. "
                                   f"See: kubectl -n {ns} logs job/{name}")
        self.cluster.create(job)
        return f"{what} Job {name} created in {ns}; delete waits for its verified marker"

    def _keep_markers(self, ns: str, fleet: str | None) -> int:
        """Copy the hub namespace's archive markers to the fleet namespace, which outlives it."""
        found = self.cluster.list("v1", "ConfigMap", ns, f"{records.MARKER_LABEL}=true")
        if found:
            system = self.options.system_namespace
            self.cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": system,
                                "labels": {**MANAGED_BY, **({"hubfleet.io/fleet": fleet} if fleet else {})}}})
            for cm in found:
                self.cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "data": cm.get("data") or {},
                                    "metadata": {"name": cm["metadata"]["name"], "namespace": system,
                                                 "labels": cm["metadata"].get("labels") or {}}})
        return len(found)

    def _stop(self, hub: str, say: Callable[[str], None]) -> str:
        say("helm uninstall")
        try:
            self.helm.uninstall(hub, hub)
        except ReleaseNotFound:
            return "already stopped (no release)"
        return "release uninstalled; namespace, Secret and volumes kept"

    def _delete(self, hub: str, say: Callable[[str], None]) -> str:
        ns = hub
        applied = records.read_record(self.cluster, ns)
        blockers = self._unarchived(ns, applied)
        if blockers:
            raise RefusedDelete(f"refused: {ns} holds student files without a verified archive: "
                                f"{'; '.join(blockers)}. Archive them first; nothing was changed.")
        if self.helm.status(hub, ns) is not None:
            say("helm uninstall")
            try:
                self.helm.uninstall(hub, ns)
            except ReleaseNotFound:
                pass
        # Again after the uninstall: a student may have started a server (and so a claim) in between.
        blockers = self._unarchived(ns, applied)
        if blockers:
            raise RefusedDelete(f"release uninstalled, namespace {ns} kept: {'; '.join(blockers)} "
                                "appeared without a verified archive")
        self._keep_markers(ns, (applied or {}).get("labels", {}).get("hubfleet.io/fleet"))
        say("deleting namespace")
        try:
            self.cluster.delete("v1", "Namespace", None, ns)
        except NotFound:
            pass
        # The personal store's PV is cluster-scoped and would stay Released with a stale claimRef. Its reclaim
        # policy is Retain, and it only points at the shared export: deleting it never touches a file.
        gone = 0
        try:
            volumes = self.cluster.list("v1", "PersistentVolume", None, MANAGED_SELECTOR)
        except UnsupportedKind:
            volumes = []
        for pv in volumes:
            if ((pv.get("spec") or {}).get("claimRef") or {}).get("namespace") == ns:
                self.cluster.delete("v1", "PersistentVolume", None, pv["metadata"]["name"])
                gone += 1
        return f"namespace {ns} deleted" + (f" ({gone} personal-store PV reference removed)" if gone else "")

    def _unarchived(self, ns: str, applied: dict | None) -> list[str]:
        return records.unarchived_claims(records.student_claims(self.cluster, ns), applied,
                                         records.read_markers(self.cluster))

