"""Rendered objects and chart values are checked the way the API server and Helm would check them."""

from __future__ import annotations

import shutil

import pytest

from hubfleet.backends.kubernetes import validation
from hubfleet.backends.kubernetes.validation import (
    REFERENCE_ENV,
    SchemaNotFound,
    check_custom_resource,
    chart_defaults,
    merge_values,
    validate_chart_values,
    validate_manifest,
)

pytest.importorskip("kubernetes_validate")

NAMESPACE = {
    "apiVersion": "v1",
    "kind": "Namespace",
    "metadata": {"name": "hub-tm351-2026j", "labels": {"hubfleet.io/course": "tm351"}},
}
QUOTA = {
    "apiVersion": "v1",
    "kind": "ResourceQuota",
    "metadata": {"name": "hub-quota", "namespace": "hub-tm351-2026j"},
    "spec": {"hard": {"requests.cpu": "300", "requests.memory": "600Gi", "persistentvolumeclaims": "1500"}},
}
PVC = {
    "apiVersion": "v1",
    "kind": "PersistentVolumeClaim",
    "metadata": {"name": "home-ada", "namespace": "hub-tm351-2026j"},
    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}},
}
DAEMONSET = {
    "apiVersion": "apps/v1",
    "kind": "DaemonSet",
    "metadata": {"name": "image-puller", "namespace": "hub-tm351-2026j"},
    "spec": {
        "selector": {"matchLabels": {"app": "puller"}},
        "template": {
            "metadata": {"labels": {"app": "puller"}},
            "spec": {
                "initContainers": [{"name": "pull", "image": "ghcr.io/example/tm351:2026J", "command": ["true"]}],
                "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}],
            },
        },
    },
}


@pytest.mark.parametrize("obj", [NAMESPACE, QUOTA, PVC, DAEMONSET], ids=lambda o: o["kind"])
def test_well_formed_objects_pass_strict_validation(obj):
    assert validate_manifest(obj) == []


def test_unknown_field_fails_strict_validation_with_its_path():
    bad = {**DAEMONSET, "spec": {**DAEMONSET["spec"], "template": {
        "metadata": {"labels": {"app": "puller"}},
        "spec": {"containers": [{"name": "pause", "image": "pause", "imagePullPolicyy": "Always"}]},
    }}}
    (problem,) = validate_manifest(bad)
    assert problem.startswith("DaemonSet/image-puller: spec.template.spec.containers[0]:")
    assert "imagePullPolicyy" in problem


def test_wrong_type_fails():
    bad = {**PVC, "spec": {"accessModes": "ReadWriteOnce", "resources": {"requests": {"storage": "5Gi"}}}}
    (problem,) = validate_manifest(bad)
    assert "spec.accessModes" in problem


def test_missing_kind_is_reported_not_crashed():
    assert validate_manifest({"metadata": {"name": "x"}}) == ["?/x: missing apiVersion, kind"]


@pytest.mark.parametrize(
    "api_version, kind",
    [("argoproj.io/v1alpha1", "Application"), ("helm.toolkit.fluxcd.io/v2", "HelmRelease")],
)
def test_custom_resources_are_reported_as_schema_not_found(api_version, kind):
    obj = {"apiVersion": api_version, "kind": kind, "metadata": {"name": "hub-tm351", "namespace": "flux-system"},
           "spec": {"interval": "10m"}}
    with pytest.raises(SchemaNotFound):
        validate_manifest(obj)
    # ...so the caller falls back on the checks every object must pass.
    assert check_custom_resource(obj) == []
    broken = {**obj, "metadata": {"name": "Hub_TM351", "namespace": "flux-system", "lables": {}}}
    problems = check_custom_resource(broken)
    assert any("metadata.lables: unknown field" in p for p in problems)
    assert any("not a DNS subdomain" in p for p in problems)


# ------------------------------------------------------------------------------------------ chart values


def test_empty_values_merged_over_defaults_pass():
    assert validate_chart_values({}) == []


def test_unknown_hub_key_fails_with_its_json_path():
    assert validate_chart_values({"hub": {"unknownKey": 1}}) == [
        "$.hub.unknownKey: unknown key, not in chart 4.4.0's values schema"
    ]


def test_realistic_values_pass():
    values = {
        "hub": {"db": {"pvc": {"annotations": {"helm.sh/resource-policy": "keep"}, "storage": "2Gi"}},
                "config": {"JupyterHub": {"authenticator_class": "generic-oauth"}}},
        "singleuser": {"image": {"name": "ghcr.io/example/tm351", "tag": "2026J"},
                       "storage": {"capacity": "5Gi"}, "cpu": {"limit": 1, "guarantee": 0.1},
                       "memory": {"limit": "2G", "guarantee": "1G"}},
        "cull": {"timeout": 3600, "maxAge": 43200},
        "proxy": {"service": {"type": "ClusterIP"}},
        "ingress": {"enabled": True, "hosts": ["tm351-2026j.hubs.example.ac.uk"]},
    }
    assert validate_chart_values(values) == []


def test_wrong_enum_value_is_reported_at_its_path():
    (problem,) = validate_chart_values({"hub": {"db": {"type": "oracle"}}})
    assert problem.startswith("$.hub.db.type: 'oracle' is not one of")


def test_null_deletes_a_default_key():
    merged = merge_values({"a": {"b": 1, "c": 2}, "d": [1, 2]}, {"a": {"b": None}, "d": [3]})
    assert merged == {"a": {"c": 2}, "d": [3]}
    # Deleting a required top-level section is then caught by the schema, as Helm would.
    assert validate_chart_values({"cull": None}) == ["$: 'cull' is a required property"]
    # Deleting an optional default is fine.
    assert validate_chart_values({"hub": {"db": {"pvc": {"storageClassName": None}}}}) == []


def test_maps_merge_lists_and_scalars_replace():
    defaults = {"hub": {"db": {"type": "sqlite-pvc", "pvc": {"accessModes": ["ReadWriteOnce"], "storage": "1Gi"}}}}
    merged = merge_values(defaults, {"hub": {"db": {"pvc": {"accessModes": ["ReadWriteMany"]}}}})
    assert merged == {"hub": {"db": {"type": "sqlite-pvc",
                                     "pvc": {"accessModes": ["ReadWriteMany"], "storage": "1Gi"}}}}
    assert defaults["hub"]["db"]["pvc"]["accessModes"] == ["ReadWriteOnce"]  # inputs untouched
    # A user map replacing a scalar default, and nulls inside a map the chart never had, are dropped.
    assert merge_values({"x": 1}, {"x": {"y": None, "z": 2}}) == {"x": {"z": 2}}


def test_defaults_keep_their_own_nulls():
    merged = merge_values(chart_defaults(), {})
    assert "nameOverride" in merged and merged["nameOverride"] is None


def test_reference_location_can_be_overridden(tmp_path, monkeypatch):
    source = validation.reference_dir()
    copy = tmp_path / "z2jh"
    copy.mkdir()
    for name in ("values.yaml", "values.schema.yaml"):
        shutil.copy(source / name, copy / name)
    monkeypatch.setenv(REFERENCE_ENV, str(copy))
    assert validation.reference_dir() == copy
    monkeypatch.setenv(REFERENCE_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=REFERENCE_ENV):
        validate_chart_values({})
