"""``render_gitops(hub, fleet, kind)``: the same release as an Argo CD Application or a Flux HelmRelease.

Both pin the chart to the version the values were validated against (4.4.0) and carry the values inline, so
the Git commit *is* the deployed configuration. The namespace objects (``render_manifests``) are applied
separately, before the release: they hold the Secret, claims and course material the release refers to. Apply
them with ``kubectl apply --server-side`` (or create): a material ConfigMap may exceed the 256 KiB annotation a
client-side apply copies it into.

Secrets never travel through Git. hubfleet's service token, the OAuth client secret, and z2jh's cookie secret
and auth-state (CryptKeeper) keys live in the hub's ``hubfleet`` Secret, created once in the cluster by
``hubfleet apply`` (or by the operator, e.g. from a SealedSecret or an ExternalSecret: docs/kubernetes.md) and
named by ``hub.existingSecret``; the values only name it. What is left is the chart's own Secret ``hub``, whose
proxy token (and the now unused cookie/CryptKeeper copies) z2jh mints with Helm's ``lookup``:

- Flux's helm-controller runs Helm against the cluster, so ``lookup`` finds the Secret and keeps every value.
- Argo CD renders with ``helm template``, where ``lookup`` returns nothing: each render mints new values. The
  Application therefore tells Argo CD to leave those keys, and the pod annotations that hash them, as they are
  in the cluster (``ignoreDifferences`` + ``RespectIgnoreDifferences``): the first sync creates them, no later
  sync changes them. Ignoring the hub's ``checksum/secret`` would also hide config changes (the chart's Secret
  holds the values), so the hub's pod carries its own hash of the values instead.
# ref: https://argo-cd.readthedocs.io/en/stable/user-guide/diffing/
# ref: https://argo-cd.readthedocs.io/en/stable/user-guide/sync-options/#respect-ignore-difference-configs
# ref: https://z2jh.jupyter.org/en/stable/resources/reference.html#hub-existingsecret
# ref: https://argo-cd.readthedocs.io/en/stable/user-guide/helm/
# ref: https://fluxcd.io/flux/components/helm/helmreleases/
"""

from __future__ import annotations

import copy
import hashlib
import json

from hubfleet.backends.kubernetes.fleet import DEFAULT_OPTIONS, MANAGED_BY, RenderOptions
from hubfleet.backends.kubernetes.material import Material
from hubfleet.backends.kubernetes.manifests import namespace_name
from hubfleet.backends.kubernetes.values import render_values
from hubfleet.plan.spec import FleetSpec, HubSpec

KINDS = ("argocd", "flux")
VALUES_HASH_ANNOTATION = "hubfleet.io/values-sha256"
# What z2jh generates with `lookup` in its Secret `hub`, and the pod annotations hashing it.
# ref: z2jh 4.4.0 templates/hub/_helpers-passwords.tpl, hub/deployment.yaml, proxy/deployment.yaml
CHART_GENERATED_KEYS = ("hub.config.ConfigurableHTTPProxy.auth_token", "hub.config.JupyterHub.cookie_secret",
                        "hub.config.CryptKeeper.keys")


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def argocd_ignore_differences() -> list[dict]:
    return [
        {"group": "", "kind": "Secret", "name": "hub",
         "jsonPointers": [_pointer("data", k) for k in CHART_GENERATED_KEYS]},
        {"group": "apps", "kind": "Deployment", "name": "hub",
         "jsonPointers": [_pointer("spec", "template", "metadata", "annotations", "checksum/secret")]},
        {"group": "apps", "kind": "Deployment", "name": "proxy",
         "jsonPointers": [_pointer("spec", "template", "metadata", "annotations", "checksum/auth-token")]},
    ]


def with_values_hash(values: dict) -> dict:
    """The values plus a pod annotation that changes exactly when they do (restarts the hub on a config change)."""
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()
    out = copy.deepcopy(values)
    out.setdefault("hub", {}).setdefault("annotations", {})[VALUES_HASH_ANNOTATION] = digest
    return out


def _argocd(hub: HubSpec, fleet: FleetSpec, values: dict, options: RenderOptions) -> list[dict]:
    ns = namespace_name(hub)
    return [{
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": hub.name,
            "namespace": "argocd",
            "labels": {**MANAGED_BY, "hubfleet.io/fleet": fleet.fleet, "hubfleet.io/hub": hub.name},
        },
        "spec": {
            "project": "default",
            "source": {
                "repoURL": options.chart_repo,
                "chart": "jupyterhub",
                "targetRevision": options.chart_version,
                "helm": {"releaseName": hub.name, "valuesObject": with_values_hash(values)},
            },
            "destination": {"server": "https://kubernetes.default.svc", "namespace": ns},
            "ignoreDifferences": argocd_ignore_differences(),
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["CreateNamespace=true", "ServerSideApply=true", "RespectIgnoreDifferences=true"],
            },
        },
    }]


def _flux(hub: HubSpec, fleet: FleetSpec, values: dict, options: RenderOptions) -> list[dict]:
    ns = namespace_name(hub)
    labels = {**MANAGED_BY, "hubfleet.io/fleet": fleet.fleet, "hubfleet.io/hub": hub.name}
    repo = {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "HelmRepository",
        "metadata": {"name": "jupyterhub", "namespace": ns, "labels": labels},
        "spec": {"url": options.chart_repo, "interval": "24h"},
    }
    release = {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": hub.name, "namespace": ns, "labels": labels},
        "spec": {
            "interval": "10m",
            "releaseName": hub.name,
            "chart": {"spec": {
                "chart": "jupyterhub",
                "version": options.chart_version,
                "sourceRef": {"kind": "HelmRepository", "name": "jupyterhub", "namespace": ns},
            }},
            "install": {"createNamespace": True, "remediation": {"retries": 3}},
            "upgrade": {"remediation": {"retries": 3, "remediateLastFailure": True}},
            "values": values,
        },
    }
    return [repo, release]


def render_gitops(
    hub: HubSpec, fleet: FleetSpec, kind: str = "argocd", options: RenderOptions = DEFAULT_OPTIONS,
    values: dict | None = None, material: Material | None = None,
) -> dict:
    """A ``v1/List`` of the GitOps objects for one hub (Argo CD: an Application; Flux: a HelmRepository and a
    HelmRelease). A List is what ``kubectl apply -f`` takes as one document."""
    if kind not in KINDS:
        raise ValueError(f"gitops kind {kind!r}: expected one of {', '.join(KINDS)}")
    values = values if values is not None else render_values(hub, fleet, options=options, material=material)
    build = _argocd if kind == "argocd" else _flux
    return {"apiVersion": "v1", "kind": "List", "items": build(hub, fleet, values, options)}


def render_tree(spec: FleetSpec, gitops: str | None = None, options: RenderOptions = DEFAULT_OPTIONS,
                material: Material | None = None) -> dict:
    """Relative path -> content (a values dict, or a list of objects for a multi-document file), for the
    whole fleet: ``<hub>/values.yaml``, ``<hub>/manifests.yaml``, ``[<hub>/<gitops>.yaml]``,
    ``_fleet/manifests.yaml``. Pure: writing it out is the caller's business, and so is reading the seed
    ``material`` (``material.read_material(catalog_root, spec)``)."""
    from hubfleet.backends.kubernetes.fleet import render_fleet
    from hubfleet.backends.kubernetes.manifests import render_manifests

    from hubfleet.backends.kubernetes.controlplane import controller_objects
    from hubfleet.backends.kubernetes.fleet import options_for

    # The controller's own objects (RBAC included) are the platform team's to apply, never the controller's.
    tree: dict = {"_fleet/manifests.yaml": render_fleet(spec, options) + controller_objects(options_for(spec, options))}
    for hub in spec.hubs:
        values = render_values(hub, spec, options=options, material=material)
        tree[f"{hub.name}/values.yaml"] = values
        tree[f"{hub.name}/manifests.yaml"] = render_manifests(hub, spec, options, material)
        if gitops:
            tree[f"{hub.name}/{gitops}.yaml"] = render_gitops(hub, spec, gitops, options, values=values)["items"]
    return tree


_YAML11_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _represent_str(representer, data: str):
    # Literal blocks for multi-line strings (config code stays readable); they cannot carry trailing spaces on a
    # line, so those few stay quoted. Helm and kubectl read YAML 1.1, where an unquoted yes/no/on/off is a
    # boolean: quote them.
    if "\n" in data and not any(line.endswith(" ") for line in data.split("\n")):
        return representer.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    if data.lower() in _YAML11_WORDS:
        return representer.represent_scalar("tag:yaml.org,2002:str", data, style='"')
    return representer.represent_scalar("tag:yaml.org,2002:str", data)


def _dumper():
    from ruamel.yaml import YAML

    # The C emitter (ruamel.yaml.clib) is ~4x faster than the pure-Python round-trip dumper; with 1,000 hubs
    # the dump, not the rendering, was the cost. Keys come out sorted, which also keeps diffs stable.
    yaml = YAML(typ="safe", pure=False)
    yaml.default_flow_style = False
    yaml.width = 4096
    yaml.representer.add_representer(str, _represent_str)
    return yaml


def dump_yaml(content) -> str:
    """Block-style YAML; a list is written as a multi-document stream, strings with newlines as literal blocks."""
    import io

    yaml = _dumper()
    out = io.StringIO()
    if isinstance(content, list):
        yaml.dump_all([_plain(doc) for doc in content], out)
    else:
        yaml.dump(_plain(content), out)
    return out.getvalue()


def _plain(node):
    """Tuples become lists: the safe representer knows only plain types."""
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_plain(v) for v in node]
    return node
