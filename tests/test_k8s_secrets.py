"""Secrets that survive GitOps: generated once in the cluster, referenced (never carried) by values and manifests.

What a platform team would notice if this broke: everyone logged out after an Argo CD sync (cookie secret),
stored OAuth tokens unreadable (CryptKeeper keys), hubfleet locked out of its hubs (service token), or a secret
readable by anyone with access to the Git repository.
"""

from __future__ import annotations

import base64
import json
import re

import pytest

from hubfleet.backends.kubernetes import gitops
from hubfleet.backends.kubernetes import portal as k8s_portal
from hubfleet.backends.kubernetes.backend import KubernetesBackend
from hubfleet.backends.kubernetes.fake import FakeCluster
from hubfleet.backends.kubernetes.gitops import dump_yaml, render_tree
from hubfleet.backends.kubernetes.helm import FakeHelm
from hubfleet.backends.kubernetes.material import read_material
from hubfleet.backends.kubernetes.values import CHART_SECRET_KEYS
from hubfleet.plan import diff
from hubfleet.plan.diff import Action, Kind, Plan
from test_k8s_backend import HUBS, PV, spec_of, write_catalog
from hubfleet.backends.kubernetes.validation import reference_dir

# Keys that would carry a secret value if anything rendered one (z2jh values, JupyterHub/OAuthenticator config).
SYSTEM = "hubfleet-system"
SECRET_KEY_NAMES = ("secretToken", "cookie_secret", "cookieSecret", "client_secret", "auth_token", "api_token",
                    "apiToken", "keys", "password", "cryptoKey", "OAUTH_CLIENT_SECRET")


@pytest.fixture
def catalog(tmp_path):
    return write_catalog(tmp_path / "catalog")


@pytest.fixture
def cluster():
    return FakeCluster(extra_kinds=[PV])


def _backend(cluster, catalog):
    return KubernetesBackend(cluster, FakeHelm(cluster), concurrency=2, catalog_root=catalog)


def _converge(backend, spec):
    backend.prepare(spec)  # the fleet's objects first (the portal's Secrets among them), as every apply does
    report = backend.apply(diff(spec, backend.observe()), spec)
    assert report.ok, [r.message for r in report.failures]


def _update_all(backend, spec):
    """Every hub re-rendered and re-applied (an update re-runs the whole converge), as a later reconcile does."""
    report = backend.apply(Plan(actions=tuple(Action(kind=Kind.update, hub=h) for h in HUBS)), spec)
    assert report.ok, [r.message for r in report.failures]


def _secrets(cluster) -> dict:
    """Every Secret hubfleet owns or the chart reads, by (namespace, name): its data, byte for byte."""
    return {(s["metadata"]["namespace"], s["metadata"]["name"]): dict(s.get("data") or {})
            for s in cluster.list("v1", "Secret", None) if s["metadata"]["name"] != "hub"}


def _generated_values(cluster) -> set[str]:
    return {base64.b64decode(v).decode() for data in _secrets(cluster).values() for v in data.values()}


def test_the_chart_reads_its_cookie_secret_and_crypt_keys_from_our_secret():
    # What existingSecret must contain: every key z2jh's jupyterhub_config.py asks get_secret_value for without a
    # default (hub.services.* are services we do not define; hub.db.password has a default).
    config = (reference_dir() / "chart" / "files" / "hub" / "jupyterhub_config.py").read_text()
    asked = set(re.findall(r'get_secret_value\("([^"{}]+)"\)', config))
    assert asked == set(CHART_SECRET_KEYS)


def test_rendering_and_applying_twice_leave_every_secret_byte_identical(catalog, cluster):
    spec = spec_of(catalog)
    backend = _backend(cluster, catalog)
    _converge(backend, spec)
    first = _secrets(cluster)
    assert set(first) == {(h, "hubfleet") for h in HUBS} | {(SYSTEM, k8s_portal.NAME), (SYSTEM, k8s_portal.CLIENTS_SECRET)}
    # The portal (auth: embedded): its session and token secrets and signing key, generated once; each hub's
    # client secret under the hub's name, the very value the hub sends.
    portal = first.pop((SYSTEM, k8s_portal.NAME))
    assert set(portal) == {"session_secret", "token_secret", "oidc_signing_key.json"}
    assert json.loads(base64.b64decode(portal["oidc_signing_key.json"]))["kty"] == "RSA"
    clients = first.pop((SYSTEM, k8s_portal.CLIENTS_SECRET))
    assert clients == {h: first[(h, "hubfleet")]["oauth-client-secret"] for h in HUBS}
    for (ns, name), data in first.items():
        for key in CHART_SECRET_KEYS:
            assert re.fullmatch(r"[0-9a-f]{64}", base64.b64decode(data[key]).decode()), (ns, key)
    values = {h.name: backend.values_for(h, spec) for h in spec.hubs}
    for hub in spec.hubs:
        assert values[hub.name]["hub"]["existingSecret"] == "hubfleet"

    # A second apply, forced through every hub (update re-renders and re-runs helm), and a fresh render.
    backend2 = KubernetesBackend(cluster, backend.helm, concurrency=2, catalog_root=catalog)
    backend2.prepare(spec)
    _update_all(backend2, spec)
    after = _secrets(cluster)
    assert after.pop((SYSTEM, k8s_portal.NAME)) == portal and after.pop((SYSTEM, k8s_portal.CLIENTS_SECRET)) == clients
    assert after == first
    assert {h.name: backend2.values_for(h, spec) for h in spec.hubs} == values
    assert render_tree(spec, "argocd", material=read_material(catalog, spec)) == render_tree(
        spec, "argocd", material=read_material(catalog, spec))


@pytest.mark.parametrize("kind", gitops.KINDS)
def test_gitops_manifests_carry_no_secret_value(catalog, cluster, kind):
    spec = spec_of(catalog)
    _converge(_backend(cluster, catalog), spec)
    generated = _generated_values(cluster)
    # Per hub: service token, cookie secret, CryptKeeper key, the portal's client secret; all distinct. The
    # portal's own: session secret, token secret, signing key (its clients are the hubs' values again).
    assert len(generated) == 4 * len(HUBS) + 3
    tree = render_tree(spec, kind, material=read_material(catalog, spec))
    text = "\n".join(dump_yaml(content) for content in tree.values())
    for value in generated:
        assert value not in text
    # No key that holds a secret has a value anywhere; a reference to a Secret is the only thing allowed.
    docs = [d for content in tree.values() for d in (content if isinstance(content, list) else [content])]
    assert _secret_fields(docs) == [], "rendered a secret value"
    assert not [d for d in docs if isinstance(d, dict) and d.get("kind") == "Secret" and d.get("data")]


def _secret_fields(node, path="") -> list[str]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}"
            is_ref = isinstance(value, dict) and set(value) == {"valueFrom"} and "secretKeyRef" in value["valueFrom"]
            if str(key) in SECRET_KEY_NAMES and not is_ref:
                found.append(here)
            found += _secret_fields(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _secret_fields(value, f"{path}[{i}]")
    return found


def test_argocd_leaves_the_chart_generated_proxy_token_alone_but_restarts_on_config_changes(catalog):
    spec = spec_of(catalog)
    hub = spec.hubs[0]
    app = gitops.render_gitops(hub, spec, "argocd", material=read_material(catalog, spec))["items"][0]["spec"]
    assert "RespectIgnoreDifferences=true" in app["syncPolicy"]["syncOptions"]
    ignored = {(d["kind"], d["name"], p) for d in app["ignoreDifferences"] for p in d["jsonPointers"]}
    assert ("Secret", "hub", "/data/hub.config.ConfigurableHTTPProxy.auth_token") in ignored
    assert ("Deployment", "proxy", "/spec/template/metadata/annotations/checksum~1auth-token") in ignored
    assert ("Deployment", "hub", "/spec/template/metadata/annotations/checksum~1secret") in ignored
    # Ignoring checksum/secret would hide a config change, so the hub pod carries the values' own hash.
    values = app["source"]["helm"]["valuesObject"]
    changed = gitops.with_values_hash({**values, "cull": {**values["cull"], "timeout": 1}})
    key = gitops.VALUES_HASH_ANNOTATION
    assert values["hub"]["annotations"][key] != changed["hub"]["annotations"][key]


def test_a_hub_the_chart_ran_before_keeps_its_cookie_secret(catalog, cluster):
    # Upgrading hubfleet must not log everyone out: the chart's own cookie secret and CryptKeeper keys are adopted.
    spec = spec_of(catalog)
    backend = _backend(cluster, catalog)
    _converge(backend, spec)
    ns = HUBS[0]
    chart_secret = cluster.get("v1", "Secret", ns, "hub")
    old = base64.b64encode(b"ab" * 32).decode()
    chart_secret["data"]["hub.config.JupyterHub.cookie_secret"] = old
    cluster.replace(chart_secret)
    ours = cluster.get("v1", "Secret", ns, "hubfleet")
    token = ours["data"]["hubfleet-api-token"]
    for key in CHART_SECRET_KEYS:  # as an older hubfleet left it
        del ours["data"][key]
    cluster.replace(ours)
    _update_all(backend, spec)
    report_secret = cluster.get("v1", "Secret", ns, "hubfleet")["data"]
    assert report_secret["hub.config.JupyterHub.cookie_secret"] == old
    assert report_secret["hubfleet-api-token"] == token
    assert re.fullmatch(r"[0-9a-f]{64}", base64.b64decode(report_secret["hub.config.CryptKeeper.keys"]).decode())


# ------------------------------------------------- what Argo CD sees: real `helm template`, twice, no lookup


def _helm_template(values: dict, hub: str) -> dict:
    from hubfleet.testing.chart import TemplateHelm, chart_dir

    docs = TemplateHelm(cluster=None).template(hub, hub, str(chart_dir()), values)
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _drop(doc: dict, pointer: str) -> None:
    *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/")]
    node = doc
    for part in parents:
        node = node.get(part) or {}
    node.pop(last, None)


def test_two_helm_template_renders_differ_only_where_the_application_tells_argocd_to_look_away(catalog):
    # Argo CD renders with `helm template` on every sync, where the chart's `lookup` finds nothing: whatever
    # differs between two renders of the same values is a change Argo CD would apply (and, for a token, an outage).
    spec = spec_of(catalog)
    hub = spec.hubs[0]
    app = gitops.render_gitops(hub, spec, "argocd", material=read_material(catalog, spec))["items"][0]["spec"]
    values = app["source"]["helm"]["valuesObject"]
    first, second = _helm_template(values, hub.name), _helm_template(values, hub.name)
    assert first.keys() == second.keys()
    changed = sorted(k for k in first if first[k] != second[k])
    assert changed == [("Deployment", "hub"), ("Deployment", "proxy"), ("Secret", "hub")]  # the chart's randoms
    for rule in app["ignoreDifferences"]:
        for pointer in rule["jsonPointers"]:
            for render in (first, second):
                _drop(render[(rule["kind"], rule["name"])], pointer)
    assert {k: first[k] for k in changed} == {k: second[k] for k in changed}
    # The secrets the hub really uses are not in either render: they are named, never carried.
    deployment = first[("Deployment", "hub")]["spec"]["template"]
    assert {"name": "existing-secret", "secret": {"secretName": "hubfleet"}} in deployment["spec"]["volumes"]
    # A config change still restarts the hub: its pod template changes outside the ignored annotations.
    edited = gitops.with_values_hash({**values, "cull": {**values["cull"], "timeout": values["cull"]["timeout"] + 1}})
    third = _helm_template(edited, hub.name)
    for pointer in next(r for r in app["ignoreDifferences"] if r["name"] == "hub" and r["kind"] == "Deployment")[
            "jsonPointers"]:
        _drop(third[("Deployment", "hub")], pointer)
    assert third[("Deployment", "hub")]["spec"]["template"] != first[("Deployment", "hub")]["spec"]["template"]
