"""Checks every object and values dict the kubernetes backend renders, without a cluster.

- `validate_manifest`: a Kubernetes object against the API's OpenAPI schema in strict mode (unknown fields are
  errors), via the schemas `kubernetes-validate` ships. Custom resources (Argo CD Application, Flux
  HelmRelease) have no schema there: that raises `SchemaNotFound`, a distinct error, so the caller can fall
  back on `check_custom_resource` instead of mistaking "not checked" for "valid".
- `validate_chart_values`: Helm values for Zero-to-JupyterHub 4.4.0, merged over the chart's defaults the way
  Helm merges them, against the chart's own values schema, which Helm enforces at install time.
"""

from __future__ import annotations

import copy
import functools
import os
import re
from pathlib import Path
from typing import Any

import jsonschema

Z2JH_VERSION = "4.4.0"
REFERENCE_ENV = "HUBFLEET_Z2JH_REFERENCE"
_REFERENCE_SUBDIR = Path("shared") / "reference" / f"z2jh-{Z2JH_VERSION}"


class SchemaNotFound(LookupError):
    """No schema for this apiVersion/kind (a custom resource): the object was not checked."""


# ------------------------------------------------------------------------------------------ manifests


def validate_manifest(obj: dict, k8s_version: str = "1.32.0") -> list[str]:
    """Problems with one Kubernetes object, each prefixed with `Kind/name` and the field's path.

    Empty means valid. kubernetes-validate stops at the first violation, so a broken object yields one
    message; fix it and run again. Raises SchemaNotFound for kinds it has no schema for.
    """
    if not isinstance(obj, dict):
        return [f"expected a mapping, got {type(obj).__name__}"]
    missing = [f for f in ("apiVersion", "kind") if not isinstance(obj.get(f), str) or not obj.get(f)]
    if missing:
        return [f"{_label(obj)}: missing {', '.join(missing)}"]
    try:
        _manifest_validator(k8s_version, obj["apiVersion"], obj["kind"]).validate(obj)
    except jsonschema.ValidationError as exc:
        return [f"{_label(obj)}: {_path(exc.absolute_path)}: {exc.message}"]
    return []


@functools.cache
def _manifest_validator(k8s_version: str, api_version: str, kind: str) -> Any:
    """The validator `kubernetes_validate.validate(obj, k8s_version, strict=True)` builds for one kind, built once.

    Same schema files, same choice of schema version, same Draft 2020-12 validator and first error; but
    kubernetes-validate re-reads its schema files (the shared definitions are 2 MB of JSON) on every call, which
    was most of the fake API server's CPU in the z2jh tier (every object a chart hub or KubeSpawner creates is
    checked). ref: kubernetes_validate/utils.py ``validate``
    """
    import json
    from importlib.resources import files

    import kubernetes_validate  # imported late: only tests and `plan --check` pay for its schema files
    from kubernetes_validate.utils import all_versions, major_minor
    from referencing import Registry, Resource

    wanted = major_minor(k8s_version.removeprefix("v"))
    if wanted > major_minor(kubernetes_validate.latest_version()):
        raise ValueError(f"kubernetes-validate does not support version {wanted}")
    version = [v for v in all_versions() if major_minor(v) <= wanted][-1]
    folder = files("kubernetes_validate").joinpath("kubernetes-json-schema", f"v{version}-local-strict")
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)  # rbac.authorization.k8s.io/v1 -> rbac-v1
    try:
        schema = json.loads(folder.joinpath(f"{kind.lower()}-{group_version}.json").read_text())
        definitions = json.loads(folder.joinpath("_definitions.json").read_text())
    except FileNotFoundError:
        raise SchemaNotFound(f"Couldn't find schema for kind {kind} with api version {api_version} for kubernetes "
                             f"version {major_minor(version)}") from None
    except json.JSONDecodeError as exc:
        # A damaged install of kubernetes-validate, not a problem with the object: say so loudly.
        raise RuntimeError(f"kubernetes-validate's schema is unreadable: {exc}") from None
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def check_custom_resource(obj: dict) -> list[str]:
    """The checks every Kubernetes object must pass, for kinds we have no schema for (CRDs).

    Catches what the API server would refuse whatever the CRD says: a malformed apiVersion, a bad name,
    namespace or label, metadata fields that do not exist.
    """
    problems = []
    label = _label(obj)
    api_version = obj.get("apiVersion", "")
    if not re.fullmatch(r"[a-z0-9.-]+\.[a-z]+/v[0-9]+((alpha|beta)[0-9]+)?", str(api_version)):
        problems.append(f"{label}: apiVersion {api_version!r} is not group/version")
    if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", str(obj.get("kind", ""))):
        problems.append(f"{label}: kind {obj.get('kind')!r} is not a CamelCase kind")
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return problems + [f"{label}: metadata must be a mapping"]
    known = {"name", "namespace", "labels", "annotations", "finalizers", "ownerReferences", "generateName"}
    problems += [f"{label}: metadata.{k}: unknown field" for k in sorted(set(meta) - known)]
    name = meta.get("name", "")
    if not (isinstance(name, str) and len(name) <= 253 and _DNS_SUBDOMAIN.match(name)):
        problems.append(f"{label}: metadata.name {name!r} is not a DNS subdomain")
    ns = meta.get("namespace")
    if ns is not None and not (isinstance(ns, str) and len(ns) <= 63 and _DNS_LABEL.match(ns)):
        problems.append(f"{label}: metadata.namespace {ns!r} is not a DNS label")
    for key, value in (meta.get("labels") or {}).items():
        if not (isinstance(value, str) and len(value) <= 63 and _LABEL_VALUE.match(value)):
            problems.append(f"{label}: metadata.labels.{key}: {value!r} is not a valid label value")
    for field in ("spec", "data"):
        if field in obj and not isinstance(obj[field], dict):
            problems.append(f"{label}: {field} must be a mapping")
    return problems


def _label(obj: dict) -> str:
    name = (obj.get("metadata") or {}).get("name") if isinstance(obj.get("metadata"), dict) else None
    return f"{obj.get('kind', '?')}/{name or '?'}"


def _path(parts) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


# ------------------------------------------------------------------------------------- chart values


def reference_dir() -> Path:
    """Where chart 4.4.0's values.yaml and values.schema.yaml live.

    $HUBFLEET_Z2JH_REFERENCE wins; otherwise look for shared/reference/z2jh-4.4.0 beside the repository
    (the layout on developer machines and in CI: `<clone>/../shared/...`), walking up from this file and
    from the working directory.
    """
    override = os.environ.get(REFERENCE_ENV)
    if override:
        path = Path(override)
        if not (path / "values.schema.yaml").is_file():
            raise FileNotFoundError(f"${REFERENCE_ENV}={override} has no values.schema.yaml")
        return path
    starts = [Path(__file__).resolve(), Path.cwd().resolve()]
    for start in starts:
        for parent in start.parents:
            candidate = parent / _REFERENCE_SUBDIR
            if (candidate / "values.schema.yaml").is_file():
                return candidate
    raise FileNotFoundError(
        f"cannot find {_REFERENCE_SUBDIR} (chart {Z2JH_VERSION}'s values.yaml and values.schema.yaml) beside the "
        f"repository; set ${REFERENCE_ENV} to the folder holding them"
    )


@functools.lru_cache(maxsize=4)
def _load_yaml(path: Path) -> Any:
    from ruamel.yaml import YAML

    with open(path, encoding="utf-8") as handle:
        return YAML(typ="safe", pure=True).load(handle)


def chart_defaults() -> dict:
    """A fresh copy of the chart's values.yaml."""
    return copy.deepcopy(_load_yaml(reference_dir() / "values.yaml"))


def merge_values(defaults: dict, overrides: dict) -> dict:
    """Helm's merge of user values over chart defaults.

    Maps merge key by key, recursively; lists and scalars replace the default whole; a user-supplied null
    deletes the key (Helm's documented way to drop a default). Nulls inside a map the user adds where the
    chart has none are dropped too, as Helm does not render them. Nulls in the defaults stay: the schema
    accepts them. Neither argument is modified.
    """
    result = copy.deepcopy(defaults)
    for key, value in overrides.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge_values(result[key], value)
        else:
            result[key] = _without_nulls(copy.deepcopy(value))
    return result


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


def validate_chart_values(values: dict) -> list[str]:
    """Problems with z2jh values, as `$.json.path: message`, after merging them over the chart defaults.

    Empty means Helm's own schema check at install time would pass. The schema does not look inside
    hub.config, singleuser.profileList items, custom or extraConfig: check those separately.
    """
    if not isinstance(values, dict):
        return [f"$: values must be a mapping, got {type(values).__name__}"]
    schema = _load_yaml(reference_dir() / "values.schema.yaml")
    merged = merge_values(chart_defaults(), values)
    validator = jsonschema.Draft7Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(merged), key=lambda e: (list(map(str, e.absolute_path)), e.message)):
        problems.extend(_describe(error))
    return problems


def _describe(error: jsonschema.ValidationError) -> list[str]:
    path = error.json_path
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        # Point at each offending key rather than at its parent: that is what the user has to delete.
        allowed = set(error.schema.get("properties", {}))
        patterns = [re.compile(p) for p in error.schema.get("patternProperties", {})]
        extras = [k for k in error.instance if k not in allowed and not any(p.search(k) for p in patterns)]
        if extras:
            return [f"{path}.{key}: unknown key, not in chart {Z2JH_VERSION}'s values schema" for key in extras]
    return [f"{path}: {error.message}"]
