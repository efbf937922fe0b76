"""The fleet commands pick the catalog's backend and fail clearly when it cannot be reached."""

from __future__ import annotations

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
