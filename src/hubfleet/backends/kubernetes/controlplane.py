"""The in-cluster controller's objects for ``_fleet/``: its Deployment, ServiceAccount, RBAC and Lease access.

The Deployment runs ``hubfleet up <catalog>`` (backends/kubernetes/controller.py: the shared reconcile loop under
the fleet's Lease), one replica; a second replica (or a rolling update's surge pod) stands by on the Lease.
The catalog comes from a git repository through a git-sync sidecar (an init run clones it before the controller
starts, the sidecar keeps pulling; a catalog edit is picked up at the next step), or, without a repository, from
a single-file catalog in the ConfigMap ``hubfleet-catalog`` the operator creates.
# ref: https://github.com/kubernetes/git-sync/blob/master/README.md (v4 flags)

Least privilege. What the controller touches: hub namespaces (labelled app.kubernetes.io/managed-by=hubfleet),
the helm release in each (its Secrets, the chart's Deployments/Services/Roles...), our own objects there, the
fleet namespace, and the personal store's PersistentVolumes. Kubernetes RBAC cannot select namespaces by label,
so rights inside namespaces are a ClusterRole (``hubfleet-hub``) that is bound *per namespace* by a RoleBinding:
one in the fleet namespace (rendered here) and one rendered with each hub (manifests.hub_role_binding), which the
controller creates right after the hub's Namespace. Binding it on the controller's behalf needs ``bind`` on that
one ClusterRole and cluster-wide ``create`` on RoleBindings; the ValidatingAdmissionPolicy below closes the gap
that leaves (binding it in a namespace that is not hubfleet's): the API server refuses the controller any
RoleBinding write in a namespace without the managed-by label. Cluster-wide, the controller may only: manage
Namespaces (create a hub's, delete a retired one), manage the personal store's PersistentVolumes, and list
ConfigMaps (observe() finds applied-spec records and archive markers across hub namespaces by label). It cannot
read Secrets, or anything else, outside hubfleet's namespaces.
"""

from __future__ import annotations

from .fleet import MANAGED_BY, RenderOptions
from .portal import WAKER_ROLE, waker_rules

SERVICE_ACCOUNT = "hubfleet-controller"
HUB_ROLE = "hubfleet-hub"  # ClusterRole bound per managed namespace
CLUSTER_ROLE = "hubfleet-controller"
LEASE_NAME = "hubfleet-controller"  # lease.NAME
RW = ["get", "list", "watch", "create", "update", "patch", "delete"]
METRICS_PORT = 9090


def hub_rules() -> list[dict]:
    """What the controller (and helm, on its behalf) does inside one managed namespace: z2jh 4.4.0's objects with
    the user scheduler and per-release pre-pullers off (fleet.py), plus ours (quota, limits, claims, jobs)."""
    return [
        {"apiGroups": [""], "resources": ["configmaps", "secrets", "services", "serviceaccounts",
                                          "persistentvolumeclaims", "resourcequotas", "limitranges"], "verbs": RW},
        # Pods are KubeSpawner's to write, with the hub's own Role, which helm creates: the API server lets helm
        # create a Role only with rules its creator holds, so the controller holds the chart's hub Role rules here.
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "create", "delete"]},
        {"apiGroups": [""], "resources": ["events", "endpoints"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "daemonsets"], "verbs": RW},
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": RW},
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies", "ingresses"], "verbs": RW},
        # The waker's EndpointSlice in each hub namespace, copied from the portal's (portal.waker_endpoints).
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": RW},
        {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": RW},
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": RW},
    ]


def role_binding(namespace: str, options: RenderOptions) -> dict:
    """Binds ``hubfleet-hub`` to the controller in one managed namespace (the fleet's, or a hub's)."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "hubfleet-controller", "namespace": namespace, "labels": dict(MANAGED_BY)},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": HUB_ROLE},
        "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": options.system_namespace}],
    }


def _rbac(options: RenderOptions) -> list[dict]:
    ns = options.system_namespace
    labels = dict(MANAGED_BY)
    sa_user = f"system:serviceaccount:{ns}:{SERVICE_ACCOUNT}"
    managed = "app.kubernetes.io/managed-by"
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": SERVICE_ACCOUNT, "namespace": ns, "labels": labels}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": HUB_ROLE, "labels": labels}, "rules": hub_rules()},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": CLUSTER_ROLE, "labels": labels}, "rules": [
             {"apiGroups": [""], "resources": ["namespaces"], "verbs": RW},
             {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get", "list", "watch", "create", "update", "patch"]},
             {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch"]},
             # To bind hubfleet-hub in a new hub namespace (the admission policy below keeps it to managed ones).
             {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"], "verbs": ["get", "create"]},
             {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"],
              "resourceNames": [HUB_ROLE, WAKER_ROLE]},
         ]},
        # The portal's waker: bound in each hub namespace by a RoleBinding rendered with the hub (portal.py).
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": WAKER_ROLE, "labels": labels}, "rules": waker_rules()},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": CLUSTER_ROLE, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CLUSTER_ROLE},
         "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": ns}]},
        role_binding(ns, options),
        # The Lease: create has no name to restrict to; get/update only this one.
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "hubfleet-controller-lease", "namespace": ns, "labels": labels}, "rules": [
             {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
             {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "update"],
              "resourceNames": [LEASE_NAME]},
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "hubfleet-controller-lease", "namespace": ns, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "hubfleet-controller-lease"},
         "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": ns}]},
        # ref: https://kubernetes.io/docs/reference/access-authn-authz/validating-admission-policy/ (GA in 1.30)
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
         "metadata": {"name": "hubfleet-controller-rolebindings", "labels": labels}, "spec": {
             "failurePolicy": "Fail",
             "matchConstraints": {
                 "resourceRules": [{"apiGroups": ["rbac.authorization.k8s.io"], "apiVersions": ["v1"],
                                    "operations": ["CREATE", "UPDATE"], "resources": ["rolebindings"]}],
                 "namespaceSelector": {"matchExpressions": [
                     {"key": managed, "operator": "NotIn", "values": ["hubfleet"]}]},
             },
             "matchConditions": [{"name": "hubfleet-controller", "expression": f"request.userInfo.username == '{sa_user}'"}],
             "validations": [{"expression": "false", "message":
                              f"the hubfleet controller binds roles only in namespaces labelled {managed}=hubfleet"}],
         }},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
         "metadata": {"name": "hubfleet-controller-rolebindings", "labels": labels}, "spec": {
             "policyName": "hubfleet-controller-rolebindings", "validationActions": ["Deny"]}},
    ]


def _deployment(options: RenderOptions) -> dict:
    ns = options.system_namespace
    labels = {**MANAGED_BY, "app.kubernetes.io/name": "hubfleet-controller"}
    restricted = {"runAsNonRoot": True, "runAsUser": 65532, "allowPrivilegeEscalation": False,
                  "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    volumes: list[dict] = []
    init: list[dict] = []
    sidecars: list[dict] = []
    if options.catalog_git_repo:
        catalog = f"/catalog/current/{options.catalog_git_path}".rstrip("/")
        args = [f"--repo={options.catalog_git_repo}", f"--ref={options.catalog_git_ref}", "--root=/catalog",
                "--link=current", f"--period={options.catalog_git_period}"]
        env = []
        if options.catalog_git_secret:  # HTTPS credentials: keys username, password (git-sync's env names)
            env = [{"name": n, "valueFrom": {"secretKeyRef": {"name": options.catalog_git_secret, "key": k}}}
                   for n, k in (("GITSYNC_USERNAME", "username"), ("GITSYNC_PASSWORD", "password"))]
        sync = {"name": "git-sync", "image": options.git_sync_image, "env": env,
                "volumeMounts": [{"name": "catalog", "mountPath": "/catalog"}, {"name": "tmp", "mountPath": "/tmp"}],
                "securityContext": restricted, "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}
        # The first clone before the controller starts (so it never sees an empty catalog), then keep pulling.
        init.append({**sync, "name": "git-clone", "args": [*args, "--one-time"]})
        sidecars.append({**sync, "args": args})
        volumes.append({"name": "catalog", "emptyDir": {}})
        mount = {"name": "catalog", "mountPath": "/catalog", "readOnly": True}
    else:
        catalog = "/catalog/catalog.yaml"  # kubectl -n hubfleet-system create configmap hubfleet-catalog --from-file=catalog.yaml
        volumes.append({"name": "catalog", "configMap": {"name": "hubfleet-catalog"}})
        mount = {"name": "catalog", "mountPath": "/catalog", "readOnly": True}
    volumes.append({"name": "tmp", "emptyDir": {}})
    controller = {
        "name": "controller", "image": options.controller_image,
        "command": ["hubfleet", "up", catalog],
        # The loop's figures on /metrics (loopstats.serve_metrics), for the Service below; cluster-internal only.
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "HUBFLEET_METRICS_PORT", "value": str(METRICS_PORT)}],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
        "volumeMounts": [mount, {"name": "tmp", "mountPath": "/tmp"}],
        "securityContext": restricted,
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "hubfleet-controller", "namespace": ns, "labels": labels},
        "spec": {
            "replicas": 1,  # more replicas are safe (the Lease), they only stand by
            "selector": {"matchLabels": {"app.kubernetes.io/name": "hubfleet-controller"}},
            "template": {"metadata": {"labels": labels}, "spec": {
                "serviceAccountName": SERVICE_ACCOUNT,
                "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                # Long enough for a step in progress to finish and the Lease to be released on SIGTERM.
                "terminationGracePeriodSeconds": 60,
                **({"initContainers": init} if init else {}),
                "containers": [controller, *sidecars],
                "volumes": volumes,
            }},
        },
    }


def metrics_service(options: RenderOptions) -> dict:
    """The controller's /metrics for a Prometheus Operator ServiceMonitor (docs/kubernetes-metrics.md): labels
    ``app.kubernetes.io/name: hubfleet`` and ``app.kubernetes.io/component: controller``, port ``metrics``.
    Only the Lease holder steps; a standing-by replica serves zeros, so the figures are summed or maxed."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": {
        "name": "hubfleet-controller-metrics", "namespace": options.system_namespace,
        "labels": {**MANAGED_BY, "app.kubernetes.io/name": "hubfleet", "app.kubernetes.io/component": "controller"}},
        "spec": {"type": "ClusterIP", "selector": {"app.kubernetes.io/name": "hubfleet-controller"},
                 "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": METRICS_PORT, "protocol": "TCP"}]}}


def controller_objects(options: RenderOptions) -> list[dict]:
    return [*_rbac(options), _deployment(options), metrics_service(options)]
