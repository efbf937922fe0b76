"""The hub's own Secret: generated once, filled in where keys are missing, never overwritten.

`manifests.hub_secret` renders a placeholder (labels, annotations, no data): the renderer is pure and never makes
up a secret. This module turns that placeholder into the live Secret with the one rule that matters: a value that
exists is never replaced. A regenerated hubfleet token would lock hubfleet out of a running hub (the hub reads it
at start); a regenerated OAuth client secret would break every login until the IdP is told.

So this Secret never goes through `apply_object`: its three-way merge would remove keys the placeholder does not
carry (all of them: it has no data) and a re-render would compete with the values we generated.

The placeholder's annotations say which keys are ours to mint (`hubfleet.io/keys`) and which an operator must
provide (`hubfleet.io/provided-keys`, e.g. the client secret an institution's IdP issued). Provided keys are put
in by hand, before the first apply or after a refusal:

    kubectl -n <hub> create secret generic hubfleet --from-literal=oauth-client-secret=...

and apply then adds its own generated keys next to them.
"""

from __future__ import annotations

import base64
import copy
import secrets

from .cluster import Cluster, NotFound

GENERATE_KEYS_ANNOTATION = "hubfleet.io/keys"
PROVIDED_KEYS_ANNOTATION = "hubfleet.io/provided-keys"
ADOPT_ANNOTATION = "hubfleet.io/adopt-from"
# Keys holding a private RSA key (a JWK as JSON) instead of a random token: the portal's id_token signing key.
RSA_KEYS_ANNOTATION = "hubfleet.io/rsa-keys"
# 32 random bytes, hex: the length JupyterHub's own `openssl rand -hex 32` advice produces for API tokens.
TOKEN_BYTES = 32


class MissingProvidedKeys(Exception):
    """The Secret needs keys only an operator can supply (from the IdP); apply stops before the release."""

    def __init__(self, namespace: str, name: str, keys: list[str]):
        self.namespace, self.name, self.keys = namespace, name, keys
        literals = " ".join(f"--from-literal={k}=..." for k in keys)
        super().__init__(
            f"Secret {namespace}/{name} needs {', '.join(keys)}, which hubfleet cannot generate (it comes from "
            f"your identity provider's client registration). Create it, then apply again: kubectl -n {namespace} "
            f"create secret generic {name} {literals}  (if it exists: kubectl -n {namespace} edit secret {name}). "
            "hubfleet adds its own generated keys next to yours and never changes them."
        )


def _keys(placeholder: dict, annotation: str) -> list[str]:
    raw = ((placeholder.get("metadata") or {}).get("annotations") or {}).get(annotation, "")
    return [k.strip() for k in raw.split(",") if k.strip()]


def _generate() -> str:
    return base64.b64encode(secrets.token_hex(TOKEN_BYTES).encode()).decode()


def _generate_rsa() -> str:
    import json

    from joserfc.jwk import RSAKey

    # The format web/oidc.load_or_create_key reads; 2048 bits as there.
    key = RSAKey.generate_key(2048, auto_kid=True, private=True)
    return base64.b64encode(json.dumps(key.as_dict(private=True)).encode()).decode()


def _adopted(cluster: Cluster, ns: str, placeholder: dict, keys: list[str]) -> dict[str, str]:
    """Values of ``keys`` already in the Secret the placeholder names in ``hubfleet.io/adopt-from`` (the chart's own
    Secret, when the chart generated them before hubfleet did): a value that exists is a value users depend on."""
    source = ((placeholder.get("metadata") or {}).get("annotations") or {}).get(ADOPT_ANNOTATION)
    if not source or not keys:
        return {}
    try:
        data = cluster.get("v1", "Secret", ns, source).get("data") or {}
    except NotFound:
        return {}
    return {k: data[k] for k in keys if data.get(k)}


def ensure_hub_secret(cluster: Cluster, placeholder: dict) -> str:
    """Make the live Secret hold every key the placeholder names, without touching any existing value.

    Returns what happened ("created", "kept", "added <keys>"), for the apply report. Raises MissingProvidedKeys
    (before writing anything) when an operator-provided key is absent.
    """
    meta = placeholder["metadata"]
    ns, name = meta["namespace"], meta["name"]
    generated, provided = _keys(placeholder, GENERATE_KEYS_ANNOTATION), _keys(placeholder, PROVIDED_KEYS_ANNOTATION)
    rsa = _keys(placeholder, RSA_KEYS_ANNOTATION)
    generated += [k for k in rsa if k not in generated]
    try:
        live = cluster.get("v1", "Secret", ns, name)
    except NotFound:
        live = None
    have = dict((live or {}).get("data") or {})
    missing_provided = [k for k in provided if k not in have]
    if missing_provided:
        raise MissingProvidedKeys(ns, name, missing_provided)
    missing = [k for k in generated if k not in have]
    if live is not None and not missing:
        return "kept"
    fresh = _adopted(cluster, ns, placeholder, missing)
    fresh.update({k: _generate_rsa() if k in rsa else _generate() for k in missing if k not in fresh})
    if live is None:
        obj = copy.deepcopy(placeholder)
        obj.pop("stringData", None)
        obj["data"] = fresh
        cluster.create(obj)
        return "created"
    # An operator-made Secret (provided keys only) or a key a newer hubfleet renders: add, never replace.
    live["data"] = {**have, **fresh}
    live.pop("status", None)
    live["metadata"].pop("managedFields", None)
    cluster.replace(live)
    return f"added {', '.join(missing)}"


def read_key(cluster: Cluster, namespace: str, name: str, key: str) -> str:
    """One decoded value of a Secret; KeyError with a readable message if the key is not there."""
    data = cluster.get("v1", "Secret", namespace, name).get("data") or {}
    if key not in data:
        raise KeyError(f"Secret {namespace}/{name} has no key {key!r}; was the hub ever applied by hubfleet?")
    return base64.b64decode(data[key]).decode()
