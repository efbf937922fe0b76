"""Kubernetes renderers: golden files, the chart schema, kubernetes-validate, and the behaviour neither can check.

Regenerate the golden files with ``UPDATE_GOLDEN=1 pytest tests/test_k8s_render.py``.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubfleet.backends.kubernetes import spawn_policy
from hubfleet.backends.kubernetes.fleet import render_fleet
from hubfleet.backends.kubernetes.gitops import dump_yaml, render_gitops, render_tree
from hubfleet.backends.kubernetes.manifests import render_manifests
from hubfleet.backends.kubernetes.material import LABEL as MATERIAL_LABEL
from hubfleet.backends.kubernetes.material import LIMIT_BYTES, File, MaterialError, read_material
from hubfleet.backends.kubernetes.validation import (
    SchemaNotFound,
    check_custom_resource,
    validate_chart_values,
    validate_manifest,
)
from hubfleet.backends.kubernetes.values import course_dir, render_values
from hubfleet.catalog import load_catalog
from hubfleet.catalog.model import Catalog
from hubfleet.catalog.naming import account_prefix, storage_name, unix_account
from hubfleet.plan import plan

FIXTURE = Path(__file__).parent / "fixtures" / "k8s-catalog"
GOLDEN = Path(__file__).parent / "golden" / "k8s"
DATE = dt.date(2026, 7, 1)  # TM351-2025J read-only, TM351-2026B and M269-2026B open
TOPOLOGIES = ("per-presentation", "per-course")


def fleet_spec(topology: str, catalog: Catalog | None = None, date: dt.date = DATE):
    catalog = catalog or load_catalog(FIXTURE).catalog
    fleet = catalog.fleet.model_copy(update={"topology": topology, "backend": "kubernetes"})
    return plan(catalog.model_copy(update={"fleet": fleet}), date)


def shipped(spec):
    """The fixture catalog's seed material, read as `hubfleet render` and apply read it."""
    return read_material(FIXTURE, spec)


@pytest.fixture(scope="module", params=TOPOLOGIES)
def spec(request):
    return fleet_spec(request.param)


# ------------------------------------------------------------------------------------------ golden files


@pytest.mark.parametrize("topology", TOPOLOGIES)
def test_golden(topology):
    tree = render_tree(fleet_spec(topology), "argocd", material=shipped(fleet_spec(topology)))
    root = GOLDEN / topology
    if os.environ.get("UPDATE_GOLDEN"):
        shutil.rmtree(root, ignore_errors=True)
        for rel, content in tree.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(dump_yaml(content), encoding="utf-8")
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*.yaml")}
    assert on_disk == set(tree), "golden files out of date: UPDATE_GOLDEN=1 pytest tests/test_k8s_render.py"
    for rel, content in tree.items():
        assert dump_yaml(content) == (root / rel).read_text(encoding="utf-8"), rel


# ------------------------------------------------------------------------------------- schema + validate


def test_values_pass_chart_schema(spec):
    for hub in spec.hubs:
        assert validate_chart_values(render_values(hub, spec, material=shipped(spec))) == [], hub.name


def test_manifests_pass_kubernetes_validate(spec):
    pytest.importorskip("kubernetes_validate")
    objects = render_fleet(spec) + [o for hub in spec.hubs for o in render_manifests(hub, spec, material=shipped(spec))]
    for obj in objects:
        assert validate_manifest(obj, "1.32.0") == []


@pytest.mark.parametrize("kind", ["argocd", "flux"])
def test_gitops_objects_are_well_formed_and_pinned(spec, kind):
    pytest.importorskip("kubernetes_validate")
    for hub in spec.hubs:
        doc = render_gitops(hub, spec, kind, material=shipped(spec))
        assert (doc["apiVersion"], doc["kind"]) == ("v1", "List")  # what kubectl apply -f takes as one doc
        for obj in doc["items"]:
            with pytest.raises(SchemaNotFound):  # CRDs: kubernetes-validate has no schema, check the shape
                validate_manifest(obj)
            assert check_custom_resource(obj) == []
            if obj["kind"] == "Application":
                src = obj["spec"]["source"]
                assert (src["repoURL"], src["chart"], src["targetRevision"]) == (
                    "https://hub.jupyter.org/helm-chart/", "jupyterhub", "4.4.0")
                assert obj["spec"]["destination"]["namespace"] == hub.name
                assert "CreateNamespace=true" in obj["spec"]["syncPolicy"]["syncOptions"]
                assert validate_chart_values(src["helm"]["valuesObject"]) == []
            elif obj["kind"] == "HelmRelease":
                assert obj["apiVersion"] == "helm.toolkit.fluxcd.io/v2"
                assert obj["spec"]["chart"]["spec"]["version"] == "4.4.0"
                assert validate_chart_values(obj["spec"]["values"]) == []
            else:
                assert (obj["apiVersion"], obj["kind"]) == ("source.toolkit.fluxcd.io/v1", "HelmRepository")


# ------------------------------------------------------------------------------ the in-hub spawn policy


class _Section(dict):
    """Just enough of traitlets' Config: attribute access to keys, sections created on demand."""

    def __getattr__(self, key):
        if key[0].isupper():
            return self.setdefault(key, _Section())
        return self[key]

    def __setattr__(self, key, value):
        self[key] = value


def _exec_policy(values: dict, env: dict | None = None) -> dict:
    c = _Section()
    c.KubeSpawner.profile_list = values["singleuser"]["profileList"]
    ns = {"c": c}
    os.environ.setdefault("HUBFLEET_API_TOKEN", "test-token")
    exec(compile(values["hub"]["extraConfig"]["10-hubfleet-spawn-policy"], "extraConfig", "exec"), ns)
    return c


def _user(name, *groups, admin=False):
    return SimpleNamespace(name=name, admin=admin, groups=[SimpleNamespace(name=g) for g in groups])


def test_profiles_filtered_by_group_and_a_foreign_profile_is_never_started():
    import logging

    from tornado import web

    spec = fleet_spec("per-course")
    hub = spec.hub("tm351")
    assert len(hub.presentations) == 2
    c = _exec_policy(render_values(hub, spec, material=shipped(spec)))
    listing = c.KubeSpawner.profile_list
    mine = {p["slug"] for p in listing(SimpleNamespace(user=_user("ada", "tm351-2026b")))}
    assert mine == {p.name for p in hub.profiles if p.presentation == "TM351-2026B"}
    theirs = {p.name for p in hub.profiles if p.presentation == "TM351-2025J"}
    assert theirs and not mine & theirs
    hook = c.KubeSpawner.pre_spawn_hook
    hook(SimpleNamespace(user=_user("ada", "tm351-2026b"), user_options={"profile": sorted(mine)[0]}))
    hook(SimpleNamespace(user=_user("ada", "tm351-2026b"), user_options={}))  # default profile: fine
    # A foreign profile (only a hand-made request can name one) is dropped, not refused: a refusal during a
    # spawn counts as a spawn failure and z2jh's hub exits after 5 (tests/z2jh has the real hub's side).
    asked = SimpleNamespace(user=_user("ada", "tm351-2026b"), log=logging.getLogger("t"),
                            user_options={"profile": sorted(theirs)[0], f"profile-option-{sorted(theirs)[0]}--x": "y"})
    hook(asked)
    assert asked.user_options == {}
    asked.user_options = {"profile": sorted(theirs)[0]}
    assert {p["slug"] for p in listing(asked)} == mine and asked.user_options == {}
    with pytest.raises(web.HTTPError) as err:  # enrolled nowhere: the unfiltered base config is no fallback
        hook(SimpleNamespace(user=_user("eve"), user_options={}))
    assert err.value.status_code == 403
    assert listing(SimpleNamespace(user=_user("eve"))) == []
    # Staff see their presentation's profiles through their own groups; platform admins see every profile.
    tutor = {p["slug"] for p in listing(SimpleNamespace(user=_user("tom", "tm351-2025j-tutors")))}
    assert tutor == theirs
    assert len(listing(SimpleNamespace(user=_user("root", admin=True)))) == len(hub.profiles)
    assert [s["name"] for s in c.JupyterHub.services] == ["hubfleet"]


@given(st.text(max_size=200))
def test_inlined_escape_equals_the_library_one(name):
    os.environ.setdefault("HUBFLEET_API_TOKEN", "test-token")
    ns: dict = {"c": _Section()}
    exec(_HUB_CONFIG, ns)
    assert ns["hubfleet_escape"](name) == storage_name(name)
    assert ns["hubfleet_account"](name) == unix_account(_PREFIX, name)


_PREFIX = account_prefix("example-university")
_HUB_CONFIG = spawn_policy.hub_config(spawn_policy.policy_data([], "HUBFLEET_API_TOKEN", _PREFIX))


# ----------------------------------------------------------------------------------------------- seeding


def materialise(cm: dict, volume: dict, mount: Path) -> None:
    """Project a ConfigMap volume the way kubelet's atomic writer does: the files in a hidden timestamped
    directory, ``..data`` a symlink to it, and each top-level name a symlink into ``..data``."""
    payload = {k: v.encode() for k, v in cm.get("data", {}).items()}
    payload.update({k: base64.b64decode(v) for k, v in cm.get("binaryData", {}).items()})
    stamp = mount / "..2026_07_01_12_00_00.000000001"
    items = volume["configMap"].get("items") or [{"key": k, "path": k} for k in payload]
    for item in items:
        dest = stamp / item["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(payload[item["key"]])
        dest.chmod(item.get("mode", 0o644))
    (mount / "..data").symlink_to(stamp.name)
    for top in {item["path"].split("/")[0] for item in items}:
        (mount / top).symlink_to(f"..data/{top}")


def pod_run(root: Path, hub, spec, material, home: Path) -> list[list[str]]:
    """The first profile's seed commands, with every ConfigMap volume its init containers mount (seeding.py,
    the material) laid out under ``root`` as kubelet would, and the student's home at ``home``."""
    override = render_values(hub, spec, material=material)["singleuser"]["profileList"][0]["kubespawner_override"]
    objects = {o["metadata"]["name"]: o for o in render_manifests(hub, spec, material=material)}
    volumes = {v["name"]: v for v in override["volumes"]}
    swap = {f"/home/{spawn_policy.ACCOUNT}": str(home)}
    for init in override["init_containers"]:
        for m in init["volumeMounts"]:
            if m["name"] == "home":
                continue
            swap[m["mountPath"]] = str(root / m["mountPath"].lstrip("/"))
            mount = root / m["mountPath"].lstrip("/")
            if not mount.exists():
                mount.mkdir(parents=True)
                materialise(objects[volumes[m["name"]]["configMap"]["name"]], volumes[m["name"]], mount)
    commands = []
    for init in override["init_containers"]:
        argv = []
        for arg in init["command"]:
            for old, new in sorted(swap.items(), key=lambda kv: -len(kv[0])):
                arg = arg.replace(old, new)
            argv.append(arg)
        if os.geteuid() != 0:  # --uid/--gid chown to the notebook user, which only root may do
            argv = argv[: argv.index("--uid")]
        commands.append(argv)
    return commands


def tree_of(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".hubfleet-seed.json"}


def test_rendered_seed_command_seeds_the_material_configmap_as_kubelet_mounts_it(tmp_path):
    spec = fleet_spec("per-presentation")
    hub = spec.hub("tm351-2026b")
    pres = hub.presentations[0]
    material = shipped(spec)
    (init,) = render_values(hub, spec, material=material)["singleuser"]["profileList"][0][
        "kubespawner_override"]["init_containers"]
    assert init["command"][init["command"].index("--policy") + 1] == "if-unchanged"
    home = tmp_path / "home" / "ada"
    home.mkdir(parents=True)
    (argv,) = pod_run(tmp_path / "pod-1", hub, spec, material, home)
    run = lambda cmd: subprocess.run(cmd, capture_output=True, text=True, check=True)  # noqa: E731

    # Why the command reads <mount>/..data: the mount's visible entries are symlinks, which seeding.py skips,
    # and the real files sit in kubelet's timestamped directory, which would be copied under its own name.
    mount = Path(argv[argv.index("--source") + 1]).parent
    root_target = tmp_path / "from-mount-root"
    run([*argv[:argv.index("--source")], "--source", str(mount), "--target", str(root_target),
         "--policy", "never"])
    assert tree_of(root_target) and all(rel.startswith("..2026") for rel in tree_of(root_target))

    run(argv)
    target = Path(course_dir(pres).replace(f"/home/{spawn_policy.ACCOUNT}", str(home)))
    assert tree_of(target) == tree_of(FIXTURE / "material" / "TM351")  # the catalog's tree, byte for byte
    (target / "README.md").write_text("my notes\n")
    run(argv)  # a restart: the student's edit survives
    assert (target / "README.md").read_text() == "my notes\n"

    # The course team updates the material: a new ConfigMap, and the next spawn seeds it if-unchanged.
    v2 = {**material, "material/TM351": {
        **material["material/TM351"],
        "README.md": File(b"readme v2\n"),
        "notebooks/01-intro.md": File(b"intro v2\n"),
        "bin/check.sh": File(b"#!/bin/sh\necho ok\n", executable=True),
        "data/logo.png": File(bytes(range(256))),
    }}
    (argv2,) = pod_run(tmp_path / "pod-2", hub, spec, v2, home)
    run(argv2)
    assert (target / "README.md").read_text() == "my notes\n"  # the student's edit is theirs
    assert (target / "notebooks" / "01-intro.md").read_text() == "intro v2\n"  # untouched: updated
    assert (target / "data" / "logo.png").read_bytes() == bytes(range(256))  # binaryData round-trips
    assert os.access(target / "bin" / "check.sh", os.X_OK)  # the item's mode keeps scripts runnable


def test_material_configmaps_are_valid_content_named_and_referenced():
    pytest.importorskip("kubernetes_validate")
    spec = fleet_spec("per-presentation")
    hub = spec.hub("tm351-2026b")
    odd = {"material/TM351": {"README.md": File(b"readme\n"), "a b/ü.txt": File("ü\n".encode()),
                              "..hidden": File(b"x"), "nested/deep/run.sh": File(b"#!/bin/sh\n", True),
                              "img.png": File(b"\x89PNG\r\n\x1a\n\x00")}}
    odd["material/TM351"].pop("..hidden")  # a top-level '..name' is refused (kubelet reserves it): see below
    cms = [o for o in render_manifests(hub, spec, material=odd) if o["metadata"]["labels"].get(MATERIAL_LABEL)]
    (cm,) = cms
    assert validate_manifest(cm) == []
    assert cm["immutable"] is True and set(cm["binaryData"]) == {"img.png"}
    key_ok = re.compile(r"^[-._a-zA-Z0-9]+$")
    assert all(key_ok.match(k) and not k.startswith("..") for k in {**cm["data"], **cm["binaryData"]})
    assert re.fullmatch(r"hubfleet-material-material-tm351-[0-9a-f]{8}", cm["metadata"]["name"])
    override = render_values(hub, spec, material=odd)["singleuser"]["profileList"][0]["kubespawner_override"]
    (vol,) = [v for v in override["volumes"] if v["name"].startswith("hubfleet-material-")]
    assert vol["configMap"]["name"] == cm["metadata"]["name"]
    assert sorted(i["path"] for i in vol["configMap"]["items"]) == sorted(odd["material/TM351"])
    assert {i["key"] for i in vol["configMap"]["items"]} == {**cm["data"], **cm["binaryData"]}.keys()
    # The pod the profile makes passes the API's schema, material volume and mounts included.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "jupyter-ada"},
           "spec": {"initContainers": override["init_containers"], "volumes": override["volumes"],
                    "containers": [{"name": "notebook", "image": "img", "volumeMounts": override["volume_mounts"]}]}}
    assert validate_manifest(pod) == []
    # A content change is a new name, and the profile follows it.
    changed = {"material/TM351": {**odd["material/TM351"], "README.md": File(b"readme v2\n")}}
    (cm2,) = [o for o in render_manifests(hub, spec, material=changed) if o["metadata"]["labels"].get(MATERIAL_LABEL)]
    assert cm2["metadata"]["name"] != cm["metadata"]["name"]
    override2 = render_values(hub, spec, material=changed)["singleuser"]["profileList"][0]["kubespawner_override"]
    assert cm2["metadata"]["name"] in {v.get("configMap", {}).get("name") for v in override2["volumes"]}
    with pytest.raises(MaterialError, match="reserved"):
        render_manifests(hub, spec, material={"material/TM351": {"..hidden": File(b"x")}})


def test_oversized_material_is_a_clear_error_at_render_time(tmp_path):
    spec = fleet_spec("per-presentation")
    hub = spec.hub("tm351-2026b")
    big = {"material/TM351": {"data.csv": File(b"x" * LIMIT_BYTES)}}
    for render in (render_values, render_manifests):
        with pytest.raises(MaterialError, match=r"'material/TM351'.*limited to 900 KiB.*course image"):
            render(hub, spec, material=big)
    with pytest.raises(MaterialError, match="was not read"):  # rendering a seeding hub without its material
        render_values(hub, spec)
    # Read from disk: stops at the limit instead of loading the file, and the CLI says why with exit 2.
    catalog = tmp_path / "catalog"
    shutil.copytree(FIXTURE, catalog)
    (catalog / "material" / "TM351" / "data.csv").write_bytes(b"x" * (LIMIT_BYTES + 1))
    with pytest.raises(MaterialError, match="'material/TM351'"):
        read_material(catalog, spec)
    result = _render_cli(catalog, tmp_path / "out")
    assert result.exit_code == 2 and "900 KiB" in result.output


def test_read_material_ships_regular_files_inside_the_source_only(tmp_path):
    (tmp_path / "material" / "TM351" / "sub").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("not course material\n")
    (tmp_path / "material" / "TM351" / "sub" / "a.py").write_text("print(1)\n")
    (tmp_path / "material" / "TM351" / "run.sh").write_text("#!/bin/sh\n")
    (tmp_path / "material" / "TM351" / "run.sh").chmod(0o755)
    (tmp_path / "material" / "TM351" / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (tmp_path / "material" / "TM351" / "up").symlink_to(tmp_path)
    files = read_material(tmp_path, fleet_spec("per-presentation").hub("tm351-2026b"))["material/TM351"]
    assert files == {"sub/a.py": File(b"print(1)\n"), "run.sh": File(b"#!/bin/sh\n", True)}


# ------------------------------------------------------------------------------------ roles and phases


def test_role_scopes_are_filtered_to_a_group_and_only_the_platform_team_is_admin(spec):
    for hub in spec.hubs:
        values = render_values(hub, spec, material=shipped(spec))
        roles = values["hub"]["loadRoles"]
        students = {p.group for p in hub.presentations}
        for name, role in roles.items():
            if name == "hubfleet-service":
                assert role["services"] == ["hubfleet"] and not role.get("users") and not role.get("groups")
                assert "admin-ui" not in role["scopes"] and "access:servers" not in role["scopes"]
                continue
            group = name.rsplit("-", 1)[0]
            assert group in students
            assert role["scopes"] and all(s.endswith(f"!group={group}") for s in role["scopes"]), name
        assert values["hub"]["config"]["Authenticator"]["admin_users"] == ["platform-admin"]
        assert values["hub"]["config"]["Authenticator"]["allow_all"] is False


def test_read_only_phase_mounts_the_course_folder_read_only_and_does_not_seed():
    spec = fleet_spec("per-presentation")
    for hub in spec.hubs:
        pres = hub.presentations[0]
        for profile in render_values(hub, spec, material=shipped(spec))["singleuser"]["profileList"]:
            o = profile["kubespawner_override"]
            at_course = [m for m in o["volume_mounts"] if m["mountPath"] == course_dir(pres)]
            if pres.phase.value == "read-only":
                assert at_course and all(m.get("readOnly") for m in at_course)
                assert all(m.get("readOnly") for m in o["volume_mounts"] if m["mountPath"].startswith(course_dir(pres)))
                assert o["init_containers"] == []
            else:
                assert not any(m.get("readOnly") for m in o["volume_mounts"] if m["name"] == "home")
                assert o["init_containers"], hub.name
    assert {h.presentations[0].phase.value for h in spec.hubs} == {"read-only", "open"}


def test_per_presentation_layout_is_a_dynamic_claim_named_after_the_presentation():
    spec = fleet_spec("per-presentation")
    storage = render_values(spec.hub("m269-2026b"), spec, material=shipped(spec))["singleuser"]["storage"]
    assert storage["type"] == "dynamic" and storage["capacity"] == "2Gi"
    assert "m269-2026b" in storage["dynamic"]["pvcNameTemplate"]
    assert storage["homeMountPath"] == "/home/jovyan"  # container_user: jovyan
    store = render_values(spec.hub("tm351-2026b"), spec, material=shipped(spec))["singleuser"]["storage"]
    assert store["type"] == "static" and store["static"]["pvcName"] == "personal-store"


# ----------------------------------------------------------------------------- fleet-level objects


CLUSTER_WIDE = {"DaemonSet", "ClusterRole", "ClusterRoleBinding", "PriorityClass"}
# What a z2jh release adds cluster-wide (or per node) when these are on: DaemonSets, cluster RBAC, priorities.
PER_RELEASE_FEATURES = [("scheduling", "userScheduler"), ("scheduling", "podPriority"),
                        ("scheduling", "userPlaceholder"), ("prePuller", "hook"), ("prePuller", "continuous")]


def _synthetic(n: int) -> Catalog:
    courses = [{"code": f"C{i:03d}", "title": f"Course {i}",
                "images": [{"name": "default", "image": f"ghcr.io/example/img:{i % 3}"}],
                "presentations": [{"id": "2026J", "start": "2026-10-01", "end": "2027-06-01",
                                   "expected_students": 100}]}
               for i in range(n)]
    return Catalog.model_validate({"fleet": {"name": "uni", "backend": "kubernetes", "domain": "example.org",
                                             "kubernetes": {"personal_store": {"server": "10.0.0.5"}},
                                             "platform_team": ["admin"]}, "courses": courses})


def _cluster_footprint(n: int) -> tuple[int, int]:
    spec = fleet_spec("per-presentation", _synthetic(n), dt.date(2026, 11, 1))
    assert len(spec.hubs) == n
    tree = render_tree(spec, material=shipped(spec))
    objects = [o for content in tree.values() if isinstance(content, list) for o in content]
    kinds = sum(o["kind"] in CLUSTER_WIDE for o in objects)
    enabled = sum(bool(v[a][b].get("enabled")) for k, v in tree.items() if k.endswith("values.yaml")
                  for a, b in PER_RELEASE_FEATURES)
    return kinds, enabled


def test_fleet_level_objects_do_not_grow_with_the_number_of_hubs():
    # One shared pre-puller, the controller's two ClusterRoles and one ClusterRoleBinding, and the waker's
    # ClusterRole (bound per hub namespace, never cluster-wide); nothing per hub.
    assert _cluster_footprint(2) == _cluster_footprint(50) == (5, 0)
    fleet = render_fleet(fleet_spec("per-presentation", _synthetic(50), dt.date(2026, 11, 1)))
    (puller,) = [o for o in fleet if o["kind"] == "DaemonSet"]
    images = [c["image"] for c in puller["spec"]["template"]["spec"]["initContainers"]]
    assert images == sorted({f"ghcr.io/example/img:{i}" for i in range(3)})  # distinct images, once each


# ------------------------------------------------------------------------------------------------ CLI


def test_render_command_writes_the_tree(tmp_path):
    import typer
    from typer.testing import CliRunner

    from hubfleet.cli import k8s_cmds

    app = typer.Typer()
    app.command()(k8s_cmds.render)
    app.command()(lambda: None)  # two commands, so typer keeps the command name as in main.py
    result = _render_cli(FIXTURE, tmp_path, "--gitops", "flux")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "_fleet" / "manifests.yaml").is_file()
    for hub in ("tm351-2025j", "tm351-2026b", "m269-2026b"):
        assert {p.name for p in (tmp_path / hub).iterdir()} == {"values.yaml", "manifests.yaml", "flux.yaml"}
    from ruamel.yaml import YAML

    docs = list(YAML(typ="safe").load_all((tmp_path / "tm351-2026b" / "manifests.yaml").read_text()))
    assert docs[0]["kind"] == "Namespace" and docs[0]["metadata"]["name"] == "tm351-2026b"
    material = [d for d in docs if (d["metadata"].get("labels") or {}).get(MATERIAL_LABEL)]
    assert [d["data"]["README.md"] for d in material] == ["readme\n"]  # the catalog's material, read by the CLI
    bad = CliRunner().invoke(app, ["render", str(FIXTURE), "--out", str(tmp_path), "--gitops", "helmfile"])
    assert bad.exit_code == 2


def _render_cli(catalog: Path, out: Path, *extra: str):
    import typer
    from typer.testing import CliRunner

    from hubfleet.cli import k8s_cmds

    app = typer.Typer()
    app.command()(k8s_cmds.render)
    app.command()(lambda: None)  # two commands, so typer keeps the command name as in main.py
    return CliRunner().invoke(app, ["render", str(catalog), "--out", str(out), "--at", "2026-07-01", *extra])
