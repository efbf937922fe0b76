"""Kubernetes RBAC authorization over rendered objects, for tests: may this ServiceAccount do this?

The fake API server has no RBAC (kubeapi.py says so), so what a rendered Role or ClusterRole grants is checked
here, by the rules the API server's RBAC authorizer applies: a request is allowed if any rule of a role bound to
the subject matches it, where

* a RoleBinding grants its role's rules (a Role of its namespace, or a ClusterRole) in its own namespace only;
* a ClusterRoleBinding grants a ClusterRole's rules in every namespace and for cluster-scoped resources;
* a rule matches when its apiGroups, resources and verbs contain the request's (or ``*``), and, if it lists
  ``resourceNames``, the request names one of them (a ``list``, ``watch`` or ``create`` has no name, so such a
  rule never allows them).

Aggregated ClusterRoles, non-resource URLs, subresources and groups (``system:serviceaccounts``) are not modelled:
rendered objects do not use them, and the check only ever denies more than a real cluster would for them.
# ref: https://kubernetes.io/docs/reference/access-authn-authz/rbac/#referring-to-resources
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Request", "allowed"]


@dataclass(frozen=True)
class Request:
    verb: str
    group: str  # "" for the core API group
    resource: str  # plural, e.g. "deployments"
    namespace: str | None  # None: a cluster-scoped resource (or a request across all namespaces)
    name: str | None = None


def _matches(rule: dict, req: Request) -> bool:
    def has(values: list[str] | None, value: str) -> bool:
        return bool(values) and ("*" in values or value in values)

    if not (has(rule.get("apiGroups"), req.group) and has(rule.get("resources"), req.resource)
            and has(rule.get("verbs"), req.verb)):
        return False
    names = rule.get("resourceNames")
    return not names or (req.name is not None and req.name in names)


def allowed(objects: list[dict], namespace: str, service_account: str, req: Request) -> bool:
    """Whether ServiceAccount ``namespace/service_account`` may make ``req``, given these RBAC objects."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o.get("rules") or []
             for o in objects if o["kind"] in ("Role", "ClusterRole")}
    for binding in objects:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s.get("kind") == "ServiceAccount" and s.get("name") == service_account
                   and s.get("namespace") == namespace for s in binding.get("subjects") or []):
            continue
        where = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        if binding["kind"] == "RoleBinding" and req.namespace != where:
            continue  # a RoleBinding grants in its own namespace, never cluster-wide or elsewhere
        ref = binding["roleRef"]
        rules = roles.get((ref["kind"], where if ref["kind"] == "Role" else None, ref["name"]), [])
        if any(_matches(rule, req) for rule in rules):
            return True
    return False
