"""The fleet commands pick the catalog's backend and fail clearly when it cannot be reached."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from hubfleet.cli.main import app

FIXTURE = Path(__file__).parent / "fixtures" / "k8s-catalog"


def test_apply_on_a_kubernetes_catalog_without_a_cluster_exits_2_and_says_what_to_set(tmp_path, monkeypatch):
    catalog = tmp_path / "catalog"
    shutil.copytree(FIXTURE, catalog)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = CliRunner().invoke(app, ["apply", str(catalog), "--yes", "--at", "2026-07-01"])
    assert result.exit_code == 2
    assert "KUBECONFIG" in result.output
    assert not (catalog / ".hubfleet").exists(), "a failed kubernetes apply must not create local state"


def test_plan_of_a_local_catalog_with_no_state_plans_every_hub_as_create(tmp_path):
    catalog = tmp_path / "catalog"
    shutil.copytree(FIXTURE, catalog)
    text = (catalog / "fleet.yaml").read_text().replace("backend: kubernetes", "backend: local")
    (catalog / "fleet.yaml").write_text(text)
    result = CliRunner().invoke(app, ["plan", str(catalog), "--at", "2026-07-01", "--json"])
    assert result.exit_code == 0, result.output
    assert '"kind": "create"' in result.output
    assert not (catalog / ".hubfleet").exists(), "plan changes nothing"


def test_apply_and_status_on_a_kubernetes_catalog_go_through_the_contract_and_a_second_apply_writes_nothing(tmp_path, monkeypatch):
    """The same `apply` code for both backends: here the cluster (FakeCluster + FakeHelm stand in for what
    `connect` would reach), and no local hub, state dir or front door."""
    from test_backend_contract import write_catalog

    from hubfleet.backends.kubernetes.backend import KubernetesBackend
    from hubfleet.backends.kubernetes.cluster import KindInfo
    from hubfleet.backends.kubernetes.fake import FakeCluster
    from hubfleet.backends.kubernetes.helm import FakeHelm

    catalog = write_catalog(tmp_path / "catalog", "kubernetes")
    cluster = FakeCluster(extra_kinds=[KindInfo("v1", "PersistentVolume", "persistentvolumes", False)])
    helm = FakeHelm(cluster)
    monkeypatch.setattr("hubfleet.cli.local_cmds.make_backend",
                        lambda loaded, *a, **kw: KubernetesBackend(cluster, helm, catalog_root=loaded.root))
    first = CliRunner().invoke(app, ["apply", str(catalog), "--yes", "--at", "2026-11-01"])
    assert first.exit_code == 0, first.output
    assert set(helm.releases) == {("m269-2026j", "m269-2026j"), ("tm351-2026j", "tm351-2026j")}
    assert "https://tm351-2026j.hubs.test.example" in first.output  # where each hub is, from backend.access
    assert not (catalog / ".hubfleet").exists(), "no local state: nothing local was started"
    def versions() -> dict:  # every object but the writer lock (the Lease apply holds while it runs)
        return {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o["metadata"]["resourceVersion"]
                for o in cluster.objects() if o["kind"] != "Lease"}

    before = versions()
    helm.counts.clear()
    second = CliRunner().invoke(app, ["apply", str(catalog), "--yes", "--at", "2026-11-01"])
    assert second.exit_code == 0, second.output
    assert "No changes" in second.output
    assert versions() == before and helm.write_count == 0
    status = CliRunner().invoke(app, ["status", str(catalog), "--at", "2026-11-01", "--json"])
    assert status.exit_code == 0, status.output
    rows = {r["name"]: r for r in json.loads(status.stdout)}
    assert set(rows) == {"m269-2026j", "tm351-2026j"}
    assert all("release deployed" in r["detail"] for r in rows.values())  # read from the cluster, not local state


def test_lifecycle_run_on_a_kubernetes_catalog_uses_the_contract_and_refuses_a_local_archive_store(tmp_path, monkeypatch):
    from test_backend_contract import write_catalog

    from hubfleet.backends.kubernetes.backend import KubernetesBackend
    from hubfleet.backends.kubernetes.fake import FakeCluster
    from hubfleet.backends.kubernetes.helm import FakeHelm

    catalog = write_catalog(tmp_path / "catalog", "kubernetes")
    cluster = FakeCluster()
    helm = FakeHelm(cluster)
    monkeypatch.setattr("hubfleet.cli.lifecycle_cmds.make_backend",
                        lambda loaded, *a, **kw: KubernetesBackend(cluster, helm, catalog_root=loaded.root))
    store = tmp_path / "archives"
    refused = CliRunner().invoke(app, ["lifecycle", "run", str(catalog), "--at", "2026-11-01",
                                       "--archive-store", str(store)])
    assert refused.exit_code == 2 and "archive-store" in refused.output
    assert helm.releases == {} and not store.exists()  # nothing was changed
    run = CliRunner().invoke(app, ["lifecycle", "run", str(catalog), "--at", "2026-11-01"])
    assert run.exit_code == 0, run.output
    assert set(helm.releases) == {("m269-2026j", "m269-2026j"), ("tm351-2026j", "tm351-2026j")}
    assert not (catalog / ".hubfleet").exists()


def test_the_cli_never_asks_which_backend_it_has():
    """Everything a command needs is in the Backend protocol: only the factory reads the catalog's backend name."""
    import re
    from pathlib import Path

    import hubfleet.cli

    offenders = []
    for path in sorted(Path(hubfleet.cli.__file__).parent.glob("*.py")):
        if path.name == "backend_factory.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"fleet\.backend\b|backend\s*==|\.name\s*==\s*[\"'](local|kubernetes)|hasattr\(\s*backend"
                         r"|isinstance\([^)]*Backend", line):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert offenders == []
