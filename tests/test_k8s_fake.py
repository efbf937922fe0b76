"""The in-memory cluster and Helm behave like the real ones where the kubernetes backend depends on it."""

from __future__ import annotations

import base64
import json
import os
import sys
import textwrap

import pytest

from hubfleet.backends.kubernetes.cluster import (
    LAST_APPLIED_ANNOTATION,
    Cluster,
    ClusterUnavailable,
    Conflict,
    Invalid,
    KindInfo,
    KubernetesCluster,
    NotFound,
    UnsupportedKind,
)
from hubfleet.backends.kubernetes.fake import FakeCluster
from hubfleet.backends.kubernetes.helm import (
    FakeHelm,
    Helm,
    HelmCli,
    HelmError,
    HelmMissing,
    ReleaseNotFound,
)


def namespace(name, **labels):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def configmap(ns, name, labels=None, data=None):
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "data": data or {"k": "v"},
    }


def pvc(ns, name, size="5Gi"):
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
    }


@pytest.fixture
def cluster():
    c = FakeCluster()
    c.create(namespace("hub-a"))
    c.create(namespace("hub-b"))
    c.reset_counters()
    return c


# ------------------------------------------------------------------------------------------ FakeCluster


def test_fake_satisfies_the_cluster_protocol():
    assert isinstance(FakeCluster(), Cluster)
    assert isinstance(FakeHelm(), Helm)


def test_missing_object_is_404(cluster):
    with pytest.raises(NotFound, match='configmaps "nope" not found'):
        cluster.get("v1", "ConfigMap", "hub-a", "nope")
    with pytest.raises(NotFound):
        cluster.delete("v1", "ConfigMap", "hub-a", "nope")


def test_created_object_gets_server_fields(cluster):
    created = cluster.create(configmap("hub-a", "cfg"))
    assert created["metadata"]["uid"]
    assert created["metadata"]["resourceVersion"]
    ns = cluster.get("v1", "Namespace", None, "hub-a")
    assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == "hub-a"
    assert ns["status"]["phase"] == "Active"


def test_create_existing_is_409_and_not_a_write(cluster):
    cluster.create(configmap("hub-a", "cfg"))
    with pytest.raises(Conflict, match="already exists"):
        cluster.create(configmap("hub-a", "cfg", data={"k": "other"}))
    assert cluster.writes["create"] == 1
    assert cluster.get("v1", "ConfigMap", "hub-a", "cfg")["data"] == {"k": "v"}


def test_same_name_in_two_namespaces_are_two_objects(cluster):
    cluster.create(configmap("hub-a", "cfg"))
    cluster.create(configmap("hub-b", "cfg"))
    assert len(cluster.list("v1", "ConfigMap")) == 2


def test_namespaced_object_needs_an_existing_namespace(cluster):
    with pytest.raises(NotFound, match='namespaces "ghost" not found'):
        cluster.create(configmap("ghost", "cfg"))
    assert cluster.write_count == 0


def test_every_write_bumps_resource_version(cluster):
    first = cluster.create(configmap("hub-a", "cfg"))
    first["data"] = {"k": "v2"}
    second = cluster.replace(first)
    other = cluster.create(configmap("hub-b", "cfg"))
    versions = [int(o["metadata"]["resourceVersion"]) for o in (first, second, other)]
    assert versions == sorted(set(versions))
    assert second["metadata"]["uid"] == first["metadata"]["uid"]


def test_replace_with_stale_resource_version_is_409(cluster):
    stale = cluster.create(configmap("hub-a", "cfg"))
    fresh = cluster.get("v1", "ConfigMap", "hub-a", "cfg")
    fresh["data"] = {"k": "by someone else"}
    cluster.replace(fresh)
    stale["data"] = {"k": "mine"}
    with pytest.raises(Conflict, match="the object has been modified"):
        cluster.replace(stale)
    del stale["metadata"]["resourceVersion"]
    with pytest.raises(Conflict):
        cluster.replace(stale)
    assert cluster.get("v1", "ConfigMap", "hub-a", "cfg")["data"] == {"k": "by someone else"}


def test_replace_of_missing_object_is_404(cluster):
    obj = configmap("hub-a", "cfg")
    obj["metadata"]["resourceVersion"] = "1"
    with pytest.raises(NotFound):
        cluster.replace(obj)


def test_deleting_a_namespace_removes_everything_in_it(cluster):
    cluster.create(configmap("hub-a", "cfg"))
    cluster.create(pvc("hub-a", "claim-ada"))
    cluster.create(configmap("hub-b", "cfg"))
    cluster.delete("v1", "Namespace", None, "hub-a")
    assert cluster.list("v1", "PersistentVolumeClaim", "hub-a") == []
    assert [o["metadata"]["namespace"] for o in cluster.list("v1", "ConfigMap")] == ["hub-b"]
    assert [n["metadata"]["name"] for n in cluster.list("v1", "Namespace")] == ["hub-b"]
    assert cluster.writes["delete"] == 1


def test_label_selectors(cluster):
    cluster.create(configmap("hub-a", "one", {"app": "hubfleet", "course": "tm351"}))
    cluster.create(configmap("hub-a", "two", {"app": "hubfleet", "course": "m269"}))
    cluster.create(configmap("hub-b", "three", {"app": "other"}))

    def names(selector, ns=None):
        return [o["metadata"]["name"] for o in cluster.list("v1", "ConfigMap", ns, selector)]

    assert names("app=hubfleet,course=tm351") == ["one"]
    assert names("app==hubfleet") == ["one", "two"]
    assert names("app=hubfleet", ns="hub-b") == []
    assert names("app!=hubfleet") == ["three"]
    assert names("course") == ["one", "two"]
    assert names("!course") == ["three"]
    assert names("course in (tm351, m269),app=hubfleet") == ["one", "two"]
    assert names("course notin (tm351)") == ["two", "three"]
    with pytest.raises(Invalid):
        cluster.list("v1", "ConfigMap", None, "app=(")


def test_stored_state_cannot_be_changed_through_references(cluster):
    obj = configmap("hub-a", "cfg")
    returned = cluster.create(obj)
    obj["data"]["k"] = "mutated input"
    returned["data"]["k"] = "mutated output"
    cluster.get("v1", "ConfigMap", "hub-a", "cfg")["data"]["k"] = "mutated get"
    cluster.list("v1", "ConfigMap")[0]["data"]["k"] = "mutated list"
    assert cluster.get("v1", "ConfigMap", "hub-a", "cfg")["data"] == {"k": "v"}


def test_unknown_field_is_refused_like_strict_field_validation(cluster):
    bad = configmap("hub-a", "cfg")
    bad["spec"] = {"oops": True}
    with pytest.raises(Invalid, match="'spec' was unexpected"):
        cluster.create(bad)
    assert cluster.write_count == 0


def test_unserved_kind_is_404_until_its_crd_is_registered(cluster):
    app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
           "metadata": {"name": "hub-a", "namespace": "hub-a"}, "spec": {"project": "default"}}
    with pytest.raises(UnsupportedKind):
        cluster.create(app)
    assert issubclass(UnsupportedKind, NotFound)
    cluster.register_kind(KindInfo("argoproj.io/v1alpha1", "Application", "applications", True))
    cluster.create(app)
    assert cluster.get("argoproj.io/v1alpha1", "Application", "hub-a", "hub-a")["spec"] == {"project": "default"}


# ------------------------------------------------------------------------------------------------ apply


def test_apply_twice_writes_once(cluster):
    assert cluster.apply(configmap("hub-a", "cfg", {"course": "tm351"})) is True
    rv = cluster.get("v1", "ConfigMap", "hub-a", "cfg")["metadata"]["resourceVersion"]
    cluster.reset_counters()
    assert cluster.apply(configmap("hub-a", "cfg", {"course": "tm351"})) is False
    assert cluster.write_count == 0
    assert cluster.get("v1", "ConfigMap", "hub-a", "cfg")["metadata"]["resourceVersion"] == rv


def test_apply_updates_changed_data_and_drops_labels_we_stopped_setting(cluster):
    cluster.apply(namespace("hub-c", course="tm351", cost="stem"))
    assert cluster.apply(namespace("hub-c", course="tm351")) is True
    labels = cluster.get("v1", "Namespace", None, "hub-c")["metadata"]["labels"]
    # Our removed label is gone; the label the server owns stays.
    assert labels == {"course": "tm351", "kubernetes.io/metadata.name": "hub-c"}
    assert cluster.apply(namespace("hub-c", course="tm351")) is False


def test_apply_resizes_a_bound_pvc_without_touching_server_fields(cluster):
    cluster.apply(pvc("hub-a", "home", "5Gi"))
    volume = cluster.get("v1", "PersistentVolumeClaim", "hub-a", "home")["spec"]["volumeName"]
    assert cluster.apply(pvc("hub-a", "home", "10Gi")) is True
    live = cluster.get("v1", "PersistentVolumeClaim", "hub-a", "home")
    assert live["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert live["spec"]["volumeName"] == volume
    with pytest.raises(Invalid, match="can not be less than previous value"):
        cluster.apply(pvc("hub-a", "home", "1Gi"))


def test_a_plain_put_of_a_bound_pvc_is_refused(cluster):
    cluster.create(pvc("hub-a", "home"))
    naive = pvc("hub-a", "home", "10Gi")
    naive["metadata"]["resourceVersion"] = cluster.get("v1", "PersistentVolumeClaim", "hub-a", "home")[
        "metadata"]["resourceVersion"]
    with pytest.raises(Invalid, match="immutable"):
        cluster.replace(naive)


def test_apply_of_a_job_with_a_new_template_is_refused(cluster):
    def job(image):
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "seed", "namespace": "hub-a"},
                "spec": {"template": {"spec": {"restartPolicy": "Never",
                                               "containers": [{"name": "seed", "image": image}]}}}}

    cluster.apply(job("seed:1"))
    assert cluster.apply(job("seed:1")) is False
    with pytest.raises(Invalid, match="spec.template"):
        cluster.apply(job("seed:2"))


def test_apply_secret_string_data_is_stable_and_not_leaked(cluster):
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token", "namespace": "hub-a"},
              "type": "Opaque", "stringData": {"token": "s3cret-value"}}
    assert cluster.apply(secret) is True
    assert cluster.apply(secret) is False
    live = cluster.get("v1", "Secret", "hub-a", "token")
    assert base64.b64decode(live["data"]["token"]) == b"s3cret-value"
    assert "s3cret-value" not in json.dumps(live["metadata"]["annotations"])
    assert LAST_APPLIED_ANNOTATION in live["metadata"]["annotations"]


def test_apply_after_someone_else_changed_the_object_restores_it(cluster):
    cluster.apply(configmap("hub-a", "cfg", data={"k": "ours"}))
    live = cluster.get("v1", "ConfigMap", "hub-a", "cfg")
    live["data"]["k"] = "drifted"
    cluster.replace(live)
    assert cluster.apply(configmap("hub-a", "cfg", data={"k": "ours"})) is True
    assert cluster.get("v1", "ConfigMap", "hub-a", "cfg")["data"] == {"k": "ours"}


# ------------------------------------------------------------------------------------- real client, no cluster


def test_real_client_without_config_says_what_to_do(monkeypatch, tmp_path):
    pytest.importorskip("kubernetes")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing.yaml"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ClusterUnavailable, match="KUBECONFIG"):
        KubernetesCluster()


# --------------------------------------------------------------------------------------------- FakeHelm

CHART, VERSION = "jupyterhub", "4.4.0"


@pytest.fixture
def helm():
    return FakeHelm(cluster=FakeCluster())


def test_install_creates_namespace_and_records_values(helm):
    values = {"hub": {"config": {"JupyterHub": {"admin_access": False}}}}
    status = helm.upgrade_install("hub-tm351", "hub-tm351", CHART, VERSION, values)
    assert (status.status, status.revision, status.chart_version) == ("deployed", 1, "4.4.0")
    assert helm.cluster.get("v1", "Namespace", None, "hub-tm351")
    assert helm.get_values("hub-tm351", "hub-tm351") == values
    values["hub"]["config"] = {}
    assert helm.get_values("hub-tm351", "hub-tm351")["hub"]["config"] != {}
    assert helm.upgrade_install("hub-tm351", "hub-tm351", CHART, VERSION, values).revision == 2
    assert helm.counts["upgrade_install"] == 2


def test_unknown_release_has_no_status_or_values(helm):
    assert helm.status("nope", "nope") is None
    assert helm.get_values("nope", "nope") is None
    with pytest.raises(ReleaseNotFound, match="release: not found"):
        helm.uninstall("nope", "nope")


def test_install_without_create_namespace_needs_the_namespace(helm):
    with pytest.raises(HelmError, match='namespaces "hub-x" not found'):
        helm.upgrade_install("hub-x", "hub-x", CHART, VERSION, {}, create_namespace=False)
    assert helm.status("hub-x", "hub-x") is None


def test_values_violating_the_chart_schema_fail_before_anything_is_written(helm):
    with pytest.raises(HelmError, match="unknownKey") as err:
        helm.upgrade_install("hub-x", "hub-x", CHART, VERSION, {"hub": {"unknownKey": 1}})
    assert "don't meet the specifications of the schema" in err.value.stderr
    assert helm.status("hub-x", "hub-x") is None
    assert helm.cluster.write_count == 0


def test_failure_injection_fails_one_release_like_a_wait_timeout(helm):
    helm.fail_on = {"hub-x": None}
    with pytest.raises(HelmError, match="context deadline exceeded") as err:
        helm.upgrade_install("hub-x", "hub-x", CHART, VERSION, {})
    assert err.value.stderr.startswith("Error: INSTALLATION FAILED")
    assert helm.status("hub-x", "hub-x").status == "failed"
    assert helm.upgrade_install("hub-y", "hub-y", CHART, VERSION, {}).deployed
    # Fixed and retried: a new revision that deploys.
    helm.fail_on.clear()
    status = helm.upgrade_install("hub-x", "hub-x", CHART, VERSION, {})
    assert (status.status, status.revision) == ("deployed", 2)


def test_failure_injection_accepts_set_and_custom_message():
    helm = FakeHelm(fail_on={"hub-x"})
    with pytest.raises(HelmError):
        helm.upgrade_install("hub-x", "hub-x", CHART, VERSION, {})
    helm = FakeHelm(fail_on={"hub-x": "Error: UPGRADE FAILED: pre-upgrade hooks failed"})
    with pytest.raises(HelmError, match="pre-upgrade hooks failed"):
        helm.upgrade_install("hub-x", "hub-x", CHART, VERSION, {})


KEEP = {"hub": {"db": {"pvc": {"annotations": {"helm.sh/resource-policy": "keep"}}}}}


def test_uninstall_keeps_pvcs_with_the_keep_policy(helm):
    helm.upgrade_install("hub-x", "hub-x", CHART, VERSION, KEEP)
    helm.cluster.create(pvc("hub-x", "claim-ada"))  # a user's volume, made by KubeSpawner, not Helm
    helm.uninstall("hub-x", "hub-x")
    assert helm.status("hub-x", "hub-x") is None
    remaining = {o["metadata"]["name"] for o in helm.cluster.list("v1", "PersistentVolumeClaim", "hub-x")}
    assert remaining == {"hub-db-dir", "claim-ada"}
    assert helm.cluster.list("v1", "Secret", "hub-x") == []
    # Reinstalling the same release adopts the kept database volume.
    assert helm.upgrade_install("hub-x", "hub-x", CHART, VERSION, KEEP).deployed


def test_uninstall_deletes_the_hub_db_without_keep(helm):
    helm.upgrade_install("hub-x", "hub-x", CHART, VERSION, {})
    assert helm.cluster.get("v1", "PersistentVolumeClaim", "hub-x", "hub-db-dir")
    helm.uninstall("hub-x", "hub-x")
    with pytest.raises(NotFound):
        helm.cluster.get("v1", "PersistentVolumeClaim", "hub-x", "hub-db-dir")
    assert helm.cluster.get("v1", "Namespace", None, "hub-x")  # helm never deletes the namespace


def test_install_refuses_to_take_over_an_object_it_does_not_own(helm):
    helm.cluster.create(namespace("hub-x"))
    helm.cluster.create(pvc("hub-x", "hub-db-dir"))
    with pytest.raises(HelmError, match="invalid ownership metadata"):
        helm.upgrade_install("hub-x", "hub-x", CHART, VERSION, {})


def test_reinstalling_identical_values_writes_nothing_to_the_cluster(helm):
    helm.upgrade_install("hub-x", "hub-x", CHART, VERSION, {"cull": {"timeout": 600}})
    helm.cluster.reset_counters()
    helm.upgrade_install("hub-x", "hub-x", CHART, VERSION, {"cull": {"timeout": 600}})
    assert helm.cluster.write_count == 0


# --------------------------------------------------------------------------------- HelmCli with a stub helm


def test_missing_helm_binary_says_how_to_install():
    with pytest.raises(HelmMissing, match="install Helm 3"):
        HelmCli(binary="hubfleet-no-such-helm")


STUB = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys
    args = sys.argv[1:]
    record = {{"args": args}}
    while args[0].startswith("--"):  # global flags come first
        args = args[2:]
    if "--values" in args:
        path = args[args.index("--values") + 1]
        record["values"] = json.load(open(path))
        record["mode"] = oct(os.stat(path).st_mode & 0o777)
    with open(os.environ["STUB_LOG"], "a") as log:
        log.write(json.dumps(record) + "\\n")
    release = args[2] if args[0] in ("get", "upgrade") else args[1]
    if release == "missing":
        sys.stderr.write("Error: release: not found\\n"); sys.exit(1)
    if release == "broken":
        sys.stderr.write("Error: UPGRADE FAILED: timed out waiting for the condition\\n"); sys.exit(1)
    if args[0] == "get":
        print("null")
    else:
        print(json.dumps({{"name": release, "namespace": "ns", "version": 3,
                          "info": {{"status": "deployed", "description": "Upgrade complete"}},
                          "chart": {{"metadata": {{"name": "jupyterhub", "version": "4.4.0",
                                                  "appVersion": "5.5.0"}}}}}}))
    """
)


@pytest.fixture
def stub_helm(tmp_path, monkeypatch):
    binary = tmp_path / "helm"
    binary.write_text(STUB.format(python=sys.executable))
    binary.chmod(0o755)
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("STUB_LOG", str(log))

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()]

    return HelmCli(binary=str(binary), kube_context="k3s"), calls


def test_cli_upgrade_install_passes_values_through_a_private_file(stub_helm, tmp_path):
    helm, calls = stub_helm
    status = helm.upgrade_install("hub-x", "ns", "jupyterhub", "4.4.0", {"proxy": {"secretToken": "t"}})
    assert (status.status, status.revision, status.chart_version) == ("deployed", 3, "4.4.0")
    (call,) = calls()
    assert call["values"] == {"proxy": {"secretToken": "t"}}
    assert call["mode"] == "0o600"
    args = call["args"]
    assert args[:4] == ["--kube-context", "k3s", "upgrade", "--install"]
    for flag in ("--create-namespace", "--wait", "--repo"):
        assert flag in args
    assert args[args.index("--version") + 1] == "4.4.0"
    assert not os.path.exists(args[args.index("--values") + 1])
    assert "secretToken" not in " ".join(args)  # secrets stay off the process list


def test_cli_missing_release_is_none_and_errors_carry_stderr(stub_helm):
    helm, calls = stub_helm
    assert helm.status("missing", "ns") is None
    assert helm.get_values("missing", "ns") is None
    assert helm.get_values("hub-x", "ns") == {}
    with pytest.raises(ReleaseNotFound):
        helm.uninstall("missing", "ns")
    with pytest.raises(HelmError, match="timed out waiting for the condition") as err:
        helm.upgrade_install("broken", "ns", "./charts/jupyterhub", "4.4.0", {})
    assert err.value.returncode == 1
    assert "--repo" not in calls()[-1]["args"]  # a local chart path needs no repository
