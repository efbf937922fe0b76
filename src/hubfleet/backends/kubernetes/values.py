"""``render_values(hub, fleet) -> dict``: a HubSpec as Zero-to-JupyterHub 4.4.0 values, using the chart's own
mechanisms wherever it has one (profileList, storage, loadRoles, cull, ingress).

Per-presentation settings live in each profile's ``kubespawner_override``, because one hub can host several
presentations (per-course, per-unit, central topologies) that differ in course folder, storage, seed and
phase. kubespawner *replaces* list traits from an override (only dict traits such as ``environment`` are
merged), so each profile carries its complete ``volumes``/``volume_mounts``/``init_containers``, JupyterLab
settings included; the hub-wide ``singleuser.storage`` mirrors the first presentation for the chart's sake, but
every spawn goes through a profile.
# ref: https://jupyterhub-kubespawner.readthedocs.io/en/latest/spawner.html#kubespawner.KubeSpawner.profile_list

Storage layouts (all mount the student's storage as volume ``home``, which the seeding init containers refer to
by that name):

- ``personal-subfolder``: the shared personal store (``static``, claim ``personal-store``), subPath
  ``home/<storage name>``; the server starts in the course folder.
- ``per-presentation``: one dynamic claim per student per presentation, named after the presentation so
  next year's presentation never reuses this year's claim.
- ``ephemeral``: an ``emptyDir``; nothing survives the pod.

Per-user names: the spec's ``{username}`` becomes ``spawn_policy.ACCOUNT`` in paths inside the container (the
notebook user's home is ``/home/<unix account>``) and ``spawn_policy.STORAGE`` in subPaths; the hub fills both
in per user when it hands out the profiles (why not kubespawner's own ``{username}``: see spawn_policy).

Read-only phase: the course folder is mounted ``readOnly`` over itself and no seeding runs, so students can
open and download their files but not change them; the rest of the home stays writable for Jupyter's own
runtime files.
"""

from __future__ import annotations

import posixpath
from functools import cache
from importlib import resources

from hubfleet.backends.kubernetes import branding, material, spawn_policy
from hubfleet.backends.kubernetes.authentication import auth_config, idp_config
from hubfleet.backends.kubernetes.labsettings import (
    LAB_BRANDING,
    LAB_CONFIG_DIR,
    lab_branding_mounts,
    lab_configmap_name,
    lab_files,
    lab_mounts,
)
from hubfleet.backends.kubernetes.fleet import DEFAULT_OPTIONS, KEEP, MANAGED_BY, RenderOptions, options_for
from hubfleet.backends.kubernetes.material import Material
from hubfleet.catalog.naming import account_prefix, dns_label
from hubfleet.catalog.quantities import cpu_cores, memory_bytes
from hubfleet.plan.spec import FleetSpec, HubSpec, Phase, PresentationSpec, ProfileSpec

SEEDING_DIR = "/opt/hubfleet"
MATERIAL_DIR = material.MATERIAL_DIR
TOKEN_ENV = "HUBFLEET_API_TOKEN"
# Keys of the per-hub Secret hubfleet generates once (manifests.hub_secret); values never hold a secret.
SECRET_KEYS = ("hubfleet-api-token", "oauth-client-secret", "ldap-bind-password")
# z2jh's own generated secrets that its jupyterhub_config.py reads from hub.existingSecret first; our Secret holds
# them (generated once by apply), so neither a re-render nor a GitOps sync can change them. The proxy token is
# the one the chart reads only from its own Secret `hub` (see gitops.py for how a sync leaves it alone).
# ref: https://z2jh.jupyter.org/en/stable/resources/reference.html#hub-existingsecret
CHART_SECRET_KEYS = ("hub.config.JupyterHub.cookie_secret", "hub.config.CryptKeeper.keys")
CHART_SECRET = "hub"  # the chart-managed Secret (release-independent name: z2jh's fullnameOverride is "")
# ref: https://jupyterhub.readthedocs.io/en/stable/rbac/scopes.html (enrolment sync's needs, nothing more)
SERVICE_SCOPES = (
    "admin:users", "admin:groups", "list:users", "read:users", "list:groups", "read:groups", "servers", "read:hub",
    "custom:hubfleet:enrol",  # the bulk enrolment endpoint, defined by the 12-hubfleet-bulk-enrol extraConfig
)
ACCOUNT, STORAGE = spawn_policy.ACCOUNT, spawn_policy.STORAGE


def home_path(p: PresentationSpec) -> str:
    # docker-stacks moves the home to /home/$NB_USER when NB_USER is set; jovyan keeps the image's.
    return p.storage.home.replace("{username}", ACCOUNT) if p.container_user == "username" else "/home/jovyan"


def course_dir(p: PresentationSpec) -> str:
    return p.storage.course_dir.replace(p.storage.home, home_path(p), 1)


def course_rel(p: PresentationSpec) -> str:
    return posixpath.relpath(p.storage.course_dir, p.storage.home)


def read_only(p: PresentationSpec) -> bool:
    return p.phase == Phase.read_only


def _store_subpath(p: PresentationSpec, rel: str = "") -> str | None:
    """subPath on the student's storage volume; None = the volume's root (dynamic claim)."""
    if p.storage.layout == "personal-subfolder":
        base = p.storage.volume.replace("{username}", STORAGE)  # home/<storage name>: frozen identity
        return posixpath.join(base, rel) if rel else base
    if p.storage.layout == "per-presentation":
        return rel or None
    return rel or None  # ephemeral emptyDir


def _mount(name: str, path: str, sub_path: str | None = None, ro: bool = False) -> dict:
    m = {"name": name, "mountPath": path}
    if sub_path:
        m["subPath"] = sub_path
    if ro:
        m["readOnly"] = True
    return m


def storage_volumes(p: PresentationSpec) -> list[dict]:
    if p.storage.layout == "personal-subfolder":
        return [{"name": "home", "persistentVolumeClaim": {"claimName": "personal-store"}}]
    if p.storage.layout == "per-presentation":
        return [{"name": "home", "persistentVolumeClaim": {"claimName": pvc_name_template(p)}}]
    return [{"name": "home", "emptyDir": {}}]


def pvc_name_template(p: PresentationSpec) -> str:
    return f"claim-{dns_label(p.key)}-{{user_server}}"


def home_mounts(p: PresentationSpec) -> list[dict]:
    """The student storage mounts of the notebook container, with the read-only phase applied."""
    home, ro = home_path(p), read_only(p)
    if p.storage.layout == "per-presentation" and ro:
        # The claim is the home; keep a scratch home and show only the course folder, read-only.
        mounts = [_mount("scratch", home)]
    else:
        mounts = [_mount("home", home, _store_subpath(p))]
    if ro:
        mounts.append(_mount("home", course_dir(p), _store_subpath(p, course_rel(p)), ro=True))
    for m in p.storage.extra_mounts:
        path = m.path.replace(p.storage.home, home, 1)
        if p.storage.layout == "ephemeral":
            mounts.append(_mount(f"mount-{m.name}", path, ro=m.read_only or ro))
        else:
            # Extra mounts live beside the course folder on the student's own storage, so they are archived
            # with it but not seeded over (and count towards its size: the catalog has no per-mount size).
            rel = posixpath.join(".hubfleet-mounts", p.key, m.name)
            mounts.append(_mount("home", path, _store_subpath(p, rel), ro=m.read_only or ro))
    return mounts


def material_volumes(p: PresentationSpec, shipped: Material) -> list[tuple[dict, str]]:
    """(volume, mount path) per distinct seed source of a seeding presentation: its content-named ConfigMap."""
    if not material.seeds(p):
        return []
    out, mounts = [], {}
    for i, source in enumerate(dict.fromkeys(s.source for s in p.seed)):
        path = material.mount_dir(source)
        if path in mounts:
            raise material.MaterialError(f"{p.key}: seed sources {mounts[path]!r} and {source!r} would both be "
                                         f"mounted at {path}; rename one of the directories")
        mounts[path] = source
        out.append((material.volume(f"hubfleet-material-{i}", source, material.files_of(shipped, source)), path))
    return out


def _volumes(p: PresentationSpec, lab_configmap: str | None, shipped: Material) -> list[dict]:
    vols = storage_volumes(p)
    if p.storage.layout == "per-presentation" and read_only(p):
        vols.append({"name": "scratch", "emptyDir": {}})
    if p.storage.layout == "ephemeral":
        vols += [{"name": f"mount-{m.name}", "emptyDir": {}} for m in p.storage.extra_mounts]
    if material.seeds(p):
        vols.append({"name": "hubfleet-seeding", "configMap": {"name": "hubfleet-seeding"}})
        vols += [vol for vol, _ in material_volumes(p, shipped)]
    if lab_configmap:
        vols.append({"name": "hubfleet-lab", "configMap": {"name": lab_configmap}})
    vols.append({"name": LAB_BRANDING, "configMap": {"name": LAB_BRANDING}})
    return vols


def seed_init_containers(p: PresentationSpec, image: str, options: RenderOptions, shipped: Material) -> list[dict]:
    """One init container per seed step, running the very seeding.py the local backend uses.

    Runs as root only to create files owned by the notebook user (--uid/--gid), before the notebook
    starts: no race with start.sh, and a failure shows in the pod's events. Not in the read-only phase.
    """
    if not material.seeds(p):
        return []
    mounts = [
        _mount("home", home_path(p), _store_subpath(p)),
        _mount("hubfleet-seeding", SEEDING_DIR, ro=True),
    ] + [_mount(vol["name"], path, ro=True) for vol, path in material_volumes(p, shipped)]
    out = []
    for i, step in enumerate(p.seed):
        out.append({
            "name": f"hubfleet-seed-{i}",
            "image": image,
            "command": seed_command(p, step.source, step.target, step.overwrite, options),
            "securityContext": {"runAsUser": 0, "runAsGroup": 0, "allowPrivilegeEscalation": False},
            "volumeMounts": mounts,
        })
    return out


def course_folder_init_containers(p: PresentationSpec, image: str, options: RenderOptions) -> list[dict]:
    """For a presentation that seeds nothing: make the course folder, owned by the notebook user, before the
    server starts (seeding.py makes it otherwise). Without it the container runtime creates the missing
    workingDir as root and start.sh chowns only the home, so the student could not save a file in their own
    course folder. Not in the read-only phase (the folder is mounted read-only as it is)."""
    if material.seeds(p) or read_only(p):
        return []
    owner = f"{options.nb_uid}:{options.nb_gid}"
    return [{
        "name": "hubfleet-course-folder",
        "image": image,
        "command": ["sh", "-c", 'mkdir -p -- "$1" && chown -- "$2" "$1"', "sh", course_dir(p), owner],
        "securityContext": {"runAsUser": 0, "runAsGroup": 0, "allowPrivilegeEscalation": False},
        "volumeMounts": [_mount("home", home_path(p), _store_subpath(p))],
    }]


def seed_command(p: PresentationSpec, source: str, target: str, policy: str, options: RenderOptions) -> list[str]:
    return [
        "python3", f"{SEEDING_DIR}/seeding.py",
        "--source", material.seed_dir(source),
        "--target", posixpath.normpath(posixpath.join(course_dir(p), target)),
        "--base", course_dir(p),  # the part of the target below the course folder is walked without following links
        "--policy", policy,
        "--uid", str(options.nb_uid), "--gid", str(options.nb_gid),
    ]


def environment(hub: HubSpec, p: PresentationSpec, options: RenderOptions) -> dict[str, str]:
    env = {
        "COURSE_CODE": p.course,
        "PRESENTATION": p.presentation,
        "HUBFLEET_HUB": hub.name,
        "HUBFLEET_COURSE_DIR": course_dir(p),
        "HUBFLEET_READ_ONLY": "true" if read_only(p) else "false",
        "JUPYTER_CONFIG_PATH": LAB_CONFIG_DIR,  # the fleet's branding (lab_files), mounted with every profile
    }
    if p.container_user == "username":
        # docker-stacks start.sh (the image must use it as ENTRYPOINT, as quay.io/jupyter/* images do):
        # started as root, it renames jovyan to NB_USER, moves HOME to /home/$NB_USER, chowns the home's top
        # directory and drops to NB_UID via sudo. NB_UID stays 1000 for every student: the store is shared
        # across hubs and uids are not coordinated, so ownership does not encode identity; CHOWN_HOME_OPTS is
        # deliberately not -R (a recursive chown walks a 5Gi home on NFS on every start).
        # ref: https://jupyter-docker-stacks.readthedocs.io/en/latest/using/common.html#user-related-configurations
        env.update({"NB_USER": ACCOUNT, "NB_UID": str(options.nb_uid), "NB_GID": str(options.nb_gid),
                    "CHOWN_HOME": "yes"})
    if read_only(p):
        env["JUPYTER_RUNTIME_DIR"] = "/tmp/jupyter-runtime"
    return env


def _cpu(value: str | None) -> float | None:
    return None if value is None else cpu_cores(value)


def _bytes(value: str | None) -> int | None:
    return None if value is None else memory_bytes(value)


def profile_entry(hub: HubSpec, prof: ProfileSpec, options: RenderOptions, lab_configmap: str | None,
                  shipped: Material) -> dict:
    p = next(x for x in hub.presentations if x.key == prof.presentation)
    mounts = home_mounts(p) + lab_branding_mounts()
    if lab_configmap:
        mounts += lab_mounts(lab_files(p))
    override = {
        "image": prof.image,
        "cpu_guarantee": _cpu(prof.cpu),
        "cpu_limit": _cpu(prof.cpu_limit or prof.cpu),
        # Bytes: KubeSpawner's traits read "1Gi" as an error and "2G" as 2 GiB (JupyterHub byte specifications);
        # the catalog's quantities are Kubernetes' (G = 10^9, Gi = 2^30), as on the local backend's cgroups.
        "mem_guarantee": _bytes(prof.memory),
        "mem_limit": _bytes(prof.memory_limit or prof.memory),
        "working_dir": course_dir(p),
        "notebook_dir": course_dir(p),  # a kernel started over REST without a path runs here, not in HOME
        "environment": environment(hub, p, options),
        "volumes": _volumes(p, lab_configmap, shipped),
        "volume_mounts": mounts,
        "init_containers": seed_init_containers(p, prof.image, options, shipped)
        + course_folder_init_containers(p, prof.image, options),
        "uid": 0 if p.container_user == "username" else options.nb_uid,
        "fs_gid": options.nb_gid,
        "storage_extra_labels": {"hubfleet.io/presentation": dns_label(p.key)},
    }
    if p.storage.layout == "per-presentation":
        override.update({"storage_pvc_ensure": True, "pvc_name_template": pvc_name_template(p),
                         "storage_capacity": p.storage.size or "5Gi", "storage_access_modes": ["ReadWriteOnce"]})
        if options.storage_class:
            override["storage_class"] = options.storage_class
    else:
        override["storage_pvc_ensure"] = False
    entry = {
        "display_name": prof.display_name,
        "slug": prof.name,
        "default": prof.default,
        "kubespawner_override": {k: v for k, v in override.items() if v is not None},
    }
    if prof.description:
        entry["description"] = prof.description
    return entry


def _storage(p: PresentationSpec) -> dict:
    """Hub-wide storage, mirroring the first presentation; each profile restates its own in full."""
    common = {"homeMountPath": home_path(p), "extraVolumes": [], "extraVolumeMounts": []}
    if p.storage.layout == "personal-subfolder":
        return {**common, "type": "static", "static": {"pvcName": "personal-store", "subPath": _store_subpath(p)}}
    if p.storage.layout == "per-presentation":
        return {**common, "type": "dynamic", "capacity": p.storage.size or "5Gi",
                "dynamic": {"pvcNameTemplate": pvc_name_template(p), "volumeNameTemplate": "home",
                            "storageAccessModes": ["ReadWriteOnce"]}}
    return {**common, "type": "none"}


@cache
def bulk_enrol_config() -> str:
    """The bulk enrolment endpoint for ``hub.extraConfig``: ``hubfleet.enrol.endpoint``'s source, then its
    ``register(c)``. The hub image has no hubfleet installed, so the module travels as text (it imports only
    JupyterHub, tornado and the standard library for that reason; the local hubs import the same file)."""
    source = resources.files("hubfleet.enrol").joinpath("endpoint.py").read_text(encoding="utf-8")
    return source + "\n\nregister(c)\n"


def load_roles(hub: HubSpec) -> dict:
    roles = {
        r.name: {"description": r.description, "scopes": list(r.scopes), "groups": list(r.groups),
                 "users": list(r.users)}
        for r in hub.roles
    }
    roles["hubfleet-service"] = {"description": "hubfleet's enrolment sync and lifecycle",
                                 "scopes": list(SERVICE_SCOPES), "services": ["hubfleet"]}
    return roles


def render_values(
    hub: HubSpec, fleet: FleetSpec, *, secrets_ref: str | None = None, options: RenderOptions = DEFAULT_OPTIONS,
    material: Material | None = None,
) -> dict:
    """z2jh 4.4.0 values for one hub. ``secrets_ref`` names the hub's Secret (default: options.secret_name).
    ``material`` is the seed material (``material.read_material``); a hub that seeds cannot render without it,
    since its profiles name the content-hashed ConfigMaps."""
    shipped = material or {}
    options = options_for(fleet, options)
    if secrets_ref:
        options = RenderOptions(**{**options.__dict__, "secret_name": secrets_ref})
    first = hub.presentations[0]
    # JupyterLab settings travel with each profile: kubespawner replaces a list trait from a profile, so the
    # chart's hub-wide singleuser.extraFiles mounts would never reach a pod that has a profile.
    profiles = [
        profile_entry(hub, prof, options, lab_configmap_name(_pres(hub, prof)) if lab_files(_pres(hub, prof))
                      else None, shipped)
        for prof in hub.profiles
    ]
    host = f"{hub.name}.{fleet.domain}"
    auth, auth_env = auth_config(hub, fleet, options)
    # Each student's server on a host of its own, {user}.{hub}.{domain}, so a page a student serves is another
    # origin than the hub and the portal (issue 16). The chart then starts its proxy with --host-routing; the
    # ingress takes the hub's host and every host below it, with one wildcard certificate (cert-manager needs a
    # DNS-01 solver for a wildcard). ref: https://z2jh.jupyter.org/en/stable/resources/reference.html#hub-config-jupyterhub-subdomain-host
    auth["JupyterHub"]["subdomain_host"] = f"https://{host}"
    hosts = [host, f"*.{host}"]
    policy = spawn_policy.policy_data([{"slug": p.name, "groups": spawn_groups(hub, p)} for p in hub.profiles],
                                      TOKEN_ENV, fleet.account_prefix or account_prefix(fleet.fleet))
    # While the hub hibernates (hub and proxy at 0 replicas) proxy-public has no endpoints, and ingress-nginx sends
    # the hub's hosts to the default-backend Service instead: the portal's waker (portal.waker_objects). While it
    # wakes, the proxy is ready a few seconds before JupyterHub and answers 503: custom-http-errors hands those to
    # the same backend (with X-Code, X-Namespace, X-Original-URI), whose page keeps reloading. Needs ingress-nginx
    # (archived upstream in March 2026; its annotations are also read by Traefik's ingress-nginx provider). Other
    # ingress controllers ignore both annotations and answer 503 for a sleeping hub; the portal's links still wake it.
    # ref: https://kubernetes.github.io/ingress-nginx/user-guide/nginx-configuration/annotations/#default-backend
    # ref: https://kubernetes.github.io/ingress-nginx/user-guide/custom-errors/
    # ref: https://github.com/traefik/traefik/pull/12637 (Traefik: default-backend and custom-http-errors)
    from .portal import uses_portal

    waker = {"nginx.ingress.kubernetes.io/default-backend": "hubfleet-waker",
             "nginx.ingress.kubernetes.io/custom-http-errors": "503"} if uses_portal(fleet) else {}
    ingress = {
        "enabled": True,
        "hosts": hosts,
        "annotations": {"cert-manager.io/cluster-issuer": options.cluster_issuer, **waker},
        "tls": [{"hosts": hosts, "secretName": f"{hub.name}-tls"}],
    }
    if options.ingress_class:
        ingress["ingressClassName"] = options.ingress_class
    return {
        "hub": {
            "config": auth,
            "existingSecret": options.secret_name,
            # The hub's database (users, groups, tokens, spawn state) outlives `helm uninstall` (a `stop`): `start`
            # brings the same hub back. `delete` removes it with the namespace.
            "db": {"type": "sqlite-pvc", "pvc": {"storage": "1Gi", "annotations": dict(KEEP)}},
            "extraEnv": {TOKEN_ENV: {"valueFrom": {"secretKeyRef": {"name": options.secret_name,
                                                                    "key": "hubfleet-api-token"}}},
                         **auth_env},
            "extraConfig": {"10-hubfleet-spawn-policy": spawn_policy.hub_config(policy),
                            "12-hubfleet-bulk-enrol": bulk_enrol_config(),
                            **idp_config(hub),
                            "20-hubfleet-branding": branding.HUB_CONFIG},
            "extraFiles": branding.template_files(),
            "templateVars": branding.template_vars(hub, fleet),
            "loadRoles": load_roles(hub),
            "labels": dict(MANAGED_BY),
        },
        "proxy": {"service": {"type": "ClusterIP"}},
        "ingress": ingress,
        "singleuser": {
            "cmd": "jupyterhub-singleuser",
            "defaultUrl": "/lab",
            "uid": 0 if first.container_user == "username" else options.nb_uid,
            "fsGid": options.nb_gid,
            "extraLabels": {**MANAGED_BY, "hubfleet.io/hub": hub.name},
            "extraEnv": {"HUBFLEET_HUB": hub.name},
            # Profiles restate init_containers in full, which would drop z2jh's iptables init container;
            # the singleuser NetworkPolicy (on by default, cloudMetadataServer egress denied) blocks it instead.
            # ref: https://z2jh.jupyter.org/en/stable/administrator/security.html#audit-cloud-metadata-server-access
            "cloudMetadata": {"blockWithIptables": False},
            "storage": _storage(first),
            "extraFiles": {},
            "profileList": profiles,
        },
        "cull": {
            "enabled": hub.culling.enabled,
            "users": False,
            "timeout": hub.culling.idle_timeout,
            "every": hub.culling.every,
            "maxAge": hub.culling.max_age,
        },
        # Fleet-level instead (render_fleet): these add per-release DaemonSets, Deployments and cluster RBAC.
        "scheduling": {
            "userScheduler": {"enabled": False},
            "podPriority": {"enabled": False},
            "userPlaceholder": {"enabled": False},
        },
        "prePuller": {"hook": {"enabled": False}, "continuous": {"enabled": False}},
    }


def spawn_groups(hub: HubSpec, prof: ProfileSpec) -> list[str]:
    """Groups that may start a profile: before its presentation opens (``provisioned``) only the course team, so
    staff can prepare while students are not admitted yet (the local backend's rule, membership.py)."""
    p = _pres(hub, prof)
    if p.phase == Phase.provisioned:
        return [g for g in prof.groups if g != p.group]
    return list(prof.groups)


def _pres(hub: HubSpec, prof: ProfileSpec) -> PresentationSpec:
    return next(p for p in hub.presentations if p.key == prof.presentation)
