"""The lifecycle on Kubernetes, without a cluster: the archive/purge Jobs rendered and validated strictly, the
ordering (archive Job -> verified marker -> delete -> purge) against FakeCluster + FakeHelm, and the Job's own
program (jobrunner.py + archive.py) run for real on local folders, producing the marker the controller reads.
"""

from __future__ import annotations

import dataclasses

import datetime as dt
import json
from pathlib import Path

import pytest
from test_k8s_backend import add_student_claim, converge, spec_of, write_catalog

from hubfleet.backends.kubernetes import records
from hubfleet.backends.kubernetes.archive_job import (
    render_archive_job, render_purge_job, shipped_code, support_objects,
)
from hubfleet.backends.kubernetes.backend import KubernetesBackend
from hubfleet.backends.kubernetes.cluster import NotFound
from hubfleet.backends.kubernetes.fake import FakeCluster
from hubfleet.backends.kubernetes.fleet import DEFAULT_OPTIONS
from hubfleet.backends.kubernetes.helm import FakeHelm
from hubfleet.backends.kubernetes.validation import validate_manifest
from hubfleet.lifecycle import archive, engine, jobrunner, ledger
from hubfleet.lifecycle.archive import verify_archive
from hubfleet.plan import diff
from hubfleet.plan.diff import Kind, Plan

TM351_ARCHIVED = dt.date(2027, 8, 1)
TM351_PURGED = dt.date(2028, 8, 1)


@pytest.fixture
def setup(tmp_path):
    catalog = write_catalog(tmp_path / "catalog")
    cluster = FakeCluster()
    helm = FakeHelm(cluster)
    return catalog, cluster, helm, KubernetesBackend(cluster, helm, concurrency=2, catalog_root=catalog)


def _pres(catalog, key, date):
    return next(p for p in spec_of(catalog, date).all_presentations() if p.key == key)


def test_jobs_render_valid_and_ship_the_same_archive_code(setup):
    catalog = setup[0]
    assert shipped_code()["archive.py"] == Path(archive.__file__).read_text()
    assert shipped_code()["jobrunner.py"] == Path(jobrunner.__file__).read_text()
    m269 = _pres(catalog, "M269-2026J", TM351_ARCHIVED)
    tm351 = _pres(catalog, "TM351-2026J", TM351_ARCHIVED)
    # The archive store is on the personal store's NFS server (fleet.kubernetes.personal_store in the catalog).
    objects = support_objects("tm351-2026j", "testuni", dataclasses.replace(DEFAULT_OPTIONS, nfs_server="10.0.0.5")) + [
        render_archive_job(tm351, "tm351-2026j", "img:1", {"claim-tm351-2026j-alice": "alice",
                                                             "claim-tm351-2026j-bob": "bob"},
                           ["tina"], DEFAULT_OPTIONS),
        render_archive_job(m269, "m269-2026j", "img:1", {}, [], DEFAULT_OPTIONS, portal_url="https://x/portal/archives/"),
        render_purge_job(tm351, "hubfleet-system", "python:3.12-slim", DEFAULT_OPTIONS),
    ]
    for obj in objects:
        assert validate_manifest(obj) == [], obj["kind"]
    job = objects[-3]["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in job["containers"][0]["volumeMounts"]}
    assert mounts["/students/alice"]["readOnly"] and mounts["/students/bob"]["readOnly"]
    assert job["containers"][0]["command"][:4] == ["python3", "-m", "hubfleet.lifecycle.jobrunner", "archive"]
    # The Job runs the lifecycle package itself (engine, journal, archiver), laid out from the ConfigMap's keys.
    (code,) = [v for v in job["volumes"] if v["name"] == "code"]
    laid_out = {i["path"]: shipped_code()[i["key"]] for i in code["configMap"]["items"]}
    assert laid_out["hubfleet/lifecycle/engine.py"] == Path(engine.__file__).read_text()
    assert laid_out["hubfleet/lifecycle/ledger.py"] == Path(ledger.__file__).read_text()
    assert "--exclude" in job["containers"][0]["command"] and "tina" in job["containers"][0]["command"]
    personal = objects[-2]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "--teardown" in personal and "/store" in personal


def test_archive_job_then_marker_then_delete_then_purge(setup, tmp_path):
    catalog, cluster, helm, backend = setup
    converge(backend, spec_of(catalog))
    add_student_claim(cluster, "tm351-2026j", "tm351-2026j", "alice")
    add_student_claim(cluster, "tm351-2026j", "tm351-2026j", "bob")
    spec = spec_of(catalog, TM351_ARCHIVED)
    plan_ = diff(spec, backend.observe())
    assert [a.kind for a in plan_.actions] == [Kind.archive, Kind.stop, Kind.delete]
    outcome = {r.action.kind: r for r in backend.apply(plan_, spec).results}
    assert outcome[Kind.archive].ok and "archive Job hubfleet-archive-tm351-2026j created" in outcome[Kind.archive].message
    assert not outcome[Kind.delete].ok and "without a verified archive" in outcome[Kind.delete].message
    job = cluster.get("batch/v1", "Job", "tm351-2026j", "hubfleet-archive-tm351-2026j")
    claims = {v["persistentVolumeClaim"]["claimName"] for v in job["spec"]["template"]["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    assert claims == {"hubfleet-archive-store", "claim-tm351-2026j-alice", "claim-tm351-2026j-bob"}
    assert cluster.get("v1", "ConfigMap", "tm351-2026j", "hubfleet-archiver")["data"]["archive.py"]

    # Next reconcile while the Job runs: nothing new is created, the delete still waits.
    writes = cluster.write_count
    report = backend.apply(diff(spec, backend.observe()), spec)
    assert [(r.action.kind, r.ok) for r in report.results] == [(Kind.archive, True), (Kind.delete, False)]
    assert "running" in report.results[0].message and cluster.write_count == writes

    # The Job's program, for real, on the students' folders (as mounted at /students/<user>); its marker is what it
    # would PUT through the API server.
    students = tmp_path / "students"
    for user in ("alice", "bob"):
        (students / user / "week1").mkdir(parents=True)
        (students / user / "week1" / "notes.md").write_text(f"{user}'s notes\n")
    marker_file = tmp_path / "marker.json"
    assert jobrunner.main(["archive", "--presentation", "TM351-2026J", "--layout", "per-presentation",
                           "--volume", "presentations/TM351-2026J/{username}", "--src-root", str(students),
                           "--dest", str(tmp_path / "archives"), "--namespace", "tm351-2026j",
                           "--marker-out", str(marker_file), "--workers", "1"]) == 0
    marker = json.loads(marker_file.read_text())
    shas = json.loads(marker["data"]["archives.json"])
    assert set(shas) == {"alice", "bob"}
    for user in shas:
        base = tmp_path / "archives" / "TM351-2026J" / user
        assert verify_archive(Path(f"{base}.tar.gz"), Path(f"{base}.manifest.json")).ok
    cluster.create(marker)

    state = backend.observe()
    assert state.presentations["TM351-2026J"].archived
    plan_ = diff(spec, state)
    assert [a.kind for a in plan_.actions] == [Kind.delete]
    converge(backend, spec)
    with pytest.raises(NotFound):
        cluster.get("v1", "Namespace", None, "tm351-2026j")
    kept = cluster.get("v1", "ConfigMap", "hubfleet-system", records.marker_name("TM351-2026J"))
    assert kept["data"]["verified"] == "true"  # outlived the hub's namespace
    assert diff(spec, backend.observe()) == Plan()

    # After retention: a purge Job in the fleet namespace; its marker update ends the lifecycle.
    late = spec_of(catalog, TM351_PURGED)
    plan_ = diff(late, backend.observe())
    purge = [a for a in plan_.actions if a.kind == Kind.purge]
    assert [a.presentation for a in purge] == ["TM351-2026J"]
    report = backend.apply(Plan(actions=tuple(purge)), late)
    assert report.ok, report.results[0].message
    assert cluster.get("batch/v1", "Job", "hubfleet-system", "hubfleet-purge-tm351-2026j")
    assert jobrunner.main(["purge", "--presentation", "TM351-2026J", "--layout", "per-presentation",
                           "--dest", str(tmp_path / "archives"), "--namespace", "hubfleet-system",
                           "--marker-out", str(marker_file)]) == 0
    assert not (tmp_path / "archives" / "TM351-2026J").exists()
    cluster.apply(json.loads(marker_file.read_text()))
    assert backend.observe().presentations["TM351-2026J"].purged
    assert not [a for a in diff(late, backend.observe()).actions if a.presentation == "TM351-2026J"]


def test_jobrunner_personal_store_excludes_the_team_and_tears_down_after_verifying(tmp_path):
    store = tmp_path / "store"
    for user in ("ana", "tom"):
        (store / "home" / user / "M269-2026J").mkdir(parents=True)
        (store / "home" / user / "M269-2026J" / "work.py").write_text(f"# {user}\n")
        (store / "home" / user / "OTHER-2026B").mkdir()
    marker_file = tmp_path / "m.json"
    assert jobrunner.main(["archive", "--presentation", "M269-2026J", "--layout", "personal-subfolder",
                           "--volume", "home/{username}", "--src-root", str(store), "--course-folder", "M269-2026J",
                           "--dest", str(tmp_path / "archives"), "--exclude", "tom", "--teardown",
                           "--portal-url", "https://hubs/portal/archives/", "--namespace", "m269-2026j",
                           "--marker-out", str(marker_file), "--workers", "1"]) == 0
    marker = json.loads(marker_file.read_text())
    assert json.loads(marker["data"]["archives.json"]).keys() == {"ana"}
    assert marker["data"]["torn-down"] == "true"
    expected = records.marker_object("m269-2026j", "M269-2026J", layout="personal-subfolder", volume="home/{username}")
    assert marker["metadata"] == expected["metadata"]
    assert {k: marker["data"][k] for k in expected["data"]} == expected["data"]
    assert not (store / "home" / "ana" / "M269-2026J").exists()
    assert "https://hubs/portal/archives/" in (store / "home" / "ana" / "WHERE-ARE-MY-FILES.txt").read_text()
    assert (store / "home" / "ana" / "OTHER-2026B").is_dir()  # another presentation's folder, untouched
    assert (store / "home" / "tom" / "M269-2026J" / "work.py").is_file()  # the team's, never archived away
    assert not (tmp_path / "archives" / "M269-2026J" / "tom.tar.gz").exists()
