"""The notebook user, the home mount, the root dir and the working dir agree for every username (issue 9, item 3).

Unpatched KubeSpawner 7.0.0 (the z2jh 4.4.0 hub image's pin) builds each pod here, in-process: the rendered profile
list and spawn policy are loaded into a real traitlets Config, as the chart's jupyterhub_config.py does, then
``load_user_options`` applies the profile and ``get_pod_manifest`` builds the pod with KubeSpawner's own template
expansion and JupyterHub's own ``notebook_dir`` formatting. No API server is needed for that; the z2jh tier runs the
same pods for real. Whether a name is a login docker-stacks' ``start.sh`` can give the notebook user is asked of the
real ``usermod`` (shadow 4.13, as in the Ubuntu 24.04 the quay.io/jupyter images are built on).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import kubernetes_asyncio.config.kube_config as kube_config
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jupyterhub.auth import Authenticator
from kubernetes_asyncio.client import ApiClient
from kubespawner import KubeSpawner
from test_k8s_backend import write_catalog
from test_k8s_render import fleet_spec, shipped
from traitlets.config import Config

from hubfleet.backends.kubernetes.manifests import render_manifests
from hubfleet.backends.kubernetes.material import read_material
from hubfleet.backends.kubernetes.labsettings import LAB_CONFIG_DIR, LAB_OVERRIDES, LAB_PAGE_CONFIG, lab_files
from hubfleet.backends.kubernetes.values import render_values
from hubfleet.catalog import load_catalog
from hubfleet.catalog.naming import USERNAME_MAX, dns_label, is_username, storage_name, unix_account
from hubfleet.catalog.quantities import memory_bytes
from hubfleet.plan import plan

NAMES = ["ada", "alice.smith", "Alice.Smith", "josé", "a.smith@example.ac.uk", "élodie", "12345678",
         "firstname.lastname@student.example.ac.uk", "alice-2esmith"]
_ALPHABET = st.sampled_from(list("abcdexyz0189.-_@+") + ["é", "ß", "ø", "ж", "中"])
usernames = st.text(_ALPHABET, min_size=1, max_size=USERNAME_MAX).map(str.lower).filter(is_username)


@pytest.fixture(scope="module", autouse=True)
def kubeconfig(tmp_path_factory):
    """KubeSpawner loads a kubeconfig when constructed; this one points nowhere and is never called."""
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n"
                    "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
                    "current-context: x\n")
    saved = kube_config.KUBE_CONFIG_DEFAULT_LOCATION
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = str(path)
    os.environ.setdefault("HUBFLEET_API_TOKEN", "test-token")
    yield
    kube_config.KUBE_CONFIG_DEFAULT_LOCATION = saved


def hub_config(values: dict) -> Config:
    """The KubeSpawner config z2jh's jupyterhub_config.py makes of these values (the parts a pod is built from),
    then the hub's extraConfig run on it."""
    c = Config()
    storage = values["singleuser"]["storage"]
    c.KubeSpawner.profile_list = values["singleuser"]["profileList"]
    c.KubeSpawner.environment = dict(values["singleuser"]["extraEnv"])
    c.KubeSpawner.cmd = [values["singleuser"]["cmd"]]
    volumes, mounts = {}, {}
    if storage["type"] == "static":
        volumes = {"home": {"name": "home", "persistentVolumeClaim": {"claimName": "personal-store"}}}
        mounts = {"home": {"name": "home", "mountPath": storage["homeMountPath"], "subPath": storage["static"]["subPath"]}}
    if storage["type"] == "dynamic":  # as the chart does: the hub-wide claim template, mounted as {pvc_name}
        c.KubeSpawner.pvc_name_template = storage["dynamic"]["pvcNameTemplate"]
        volumes = {"home": {"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}}
        mounts = {"home": {"name": "home", "mountPath": storage["homeMountPath"]}}
    files = values["singleuser"].get("extraFiles") or {}
    if files:  # as the chart does: one Secret volume "files", a subPath mount per file
        volumes["files"] = {"name": "files", "secret": {"secretName": "singleuser",
                                                        "items": [{"key": k, "path": k} for k in files]}}
        for i, (key, details) in enumerate(files.items()):
            mounts[f"{i}-files"] = {"mountPath": details["mountPath"], "subPath": key, "name": "files"}
    c.KubeSpawner.volumes, c.KubeSpawner.volume_mounts = volumes, mounts
    for name, code in sorted(values["hub"]["extraConfig"].items()):
        if "spawn-policy" in name:
            exec(compile(code, name, "exec"), {"c": c})
    return c


def pod_for(values: dict, username: str, groups: list[str], profile: str | None = None, claim: list | None = None
            ) -> dict:
    """The pod KubeSpawner makes for ``username`` (normalised as JupyterHub does) with ``profile``; ``claim``
    receives the name of the claim KubeSpawner would create."""
    name = Authenticator().normalize_username(username)
    user = SimpleNamespace(name=name, id=1, url=f"/user/{name}/", admin=False,
                           groups=[SimpleNamespace(name=g) for g in groups])

    async def build():
        spawner = KubeSpawner(config=hub_config(values), user=user, _mock=True)
        spawner.user_options = {"profile": profile} if profile else {}
        try:
            await spawner.load_user_options()
            if claim is not None:
                claim.append(spawner.get_pvc_manifest().metadata.name)
            return ApiClient().sanitize_for_serialization(await spawner.get_pod_manifest())
        finally:
            await spawner.api.api_client.close()

    return asyncio.run(build())


def valid_login(name: str) -> bool:
    """shadow's own check, as start.sh meets it: usermod validates the new login before it looks the user up."""
    out = subprocess.run(["usermod", "-l", name, "hubfleet-no-such-user"], capture_output=True, text=True)
    return "invalid user name" not in out.stderr


def agreement(pod: dict, username: str, prefix: str, course: str) -> tuple[str, str]:
    """Assert that every per-user name in the pod agrees; return (notebook user, root dir)."""
    name = Authenticator().normalize_username(username)
    (main,) = pod["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in main["env"]}
    login = env["NB_USER"]
    assert login == unix_account(prefix, name)  # the same account the local backend gives this student
    home = f"/home/{login}"
    root = env["JUPYTERHUB_ROOT_DIR"]
    assert root == main["workingDir"] == env["HUBFLEET_COURSE_DIR"] == f"{home}/{course}"
    homes = [m for c in [main, *pod["spec"].get("initContainers", [])] for m in c["volumeMounts"]
             if m["name"] == "home"]
    assert homes and all(m["mountPath"].startswith(home) for m in homes)
    assert all(m["subPath"].startswith(f"home/{storage_name(name)}") for m in homes)
    assert {m["mountPath"] for m in homes if m["subPath"] == f"home/{storage_name(name)}"} == {home}
    for init in pod["spec"].get("initContainers", []):
        target = init["command"][init["command"].index("--target") + 1]
        assert target == root or target.startswith(root + "/")  # seeding writes where the server starts
    text = json.dumps(pod)
    assert "{" + "hubfleet_" not in text and "{username}" not in text  # nothing left for anyone to expand
    return login, root


@pytest.fixture(scope="module")
def seeded():
    spec = fleet_spec("per-presentation")
    return spec, render_values(spec.hub("tm351-2026b"), spec, material=shipped(spec))


@pytest.mark.parametrize("username", NAMES)
def test_notebook_user_home_root_and_working_dir_agree(seeded, username):
    spec, values = seeded
    pod = pod_for(values, username, ["tm351-2026b"])
    login, _ = agreement(pod, username, spec.account_prefix, "TM351-2026B")
    assert valid_login(login)
    assert pod["spec"]["initContainers"], "the seeded presentation seeds"


def test_why_the_notebook_user_is_the_account_and_not_the_storage_name():
    # A storage name is a safe path component, but not always a login: usermod refuses a leading '-' and more
    # than 32 characters, and docker-stacks' start.sh cannot start the server then.
    assert not valid_login(storage_name("élodie")) and not valid_login(storage_name("firstname.lastname@example.ac.uk"))
    assert valid_login(unix_account("hf8d93-", "élodie"))


def test_read_only_phase_mounts_the_course_folder_where_the_server_starts():
    spec = fleet_spec("per-presentation")
    hub = spec.hub("tm351-2025j")
    assert hub.presentations[0].phase.value == "read-only"
    pod = pod_for(render_values(hub, spec, material=shipped(spec)), "josé", ["tm351-2025j"])
    _, root = agreement(pod, "josé", spec.account_prefix, "TM351-2025J")
    (main,) = pod["spec"]["containers"]
    (course,) = [m for m in main["volumeMounts"] if m["mountPath"] == root]
    assert course["readOnly"] and course["subPath"] == f"home/{storage_name('josé')}/TM351-2025J"


def test_each_presentation_of_a_shared_hub_starts_in_its_own_folder():
    spec = fleet_spec("per-course")
    hub = spec.hub("tm351")
    values = render_values(hub, spec, material=shipped(spec))
    groups = [p.group for p in hub.presentations]
    for prof in hub.profiles:
        pod = pod_for(values, "Alice.Smith", groups, prof.name)
        agreement(pod, "Alice.Smith", spec.account_prefix, prof.presentation)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(username=usernames)
def test_agreement_holds_for_any_username(seeded, username):
    spec, values = seeded
    login, _ = agreement(pod_for(values, username, ["tm351-2026b"]), username, spec.account_prefix, "TM351-2026B")
    assert valid_login(login)


def test_the_usermod_check_is_real():
    assert Path("/usr/sbin/usermod").exists() or Path("/sbin/usermod").exists()
    assert valid_login("ada") and not valid_login("-ada") and not valid_login("a" * 33)


@pytest.mark.parametrize("topology", ["per-presentation", "per-course"])
def test_every_server_gets_its_presentations_jupyterlab_settings(topology):
    # kubespawner replaces list traits from a profile, so anything only in the hub-wide config (the chart's
    # singleuser.extraFiles) never reaches a pod: the settings must travel with each profile.
    spec = fleet_spec(topology)
    checked = 0
    for hub in spec.hubs:
        values = render_values(hub, spec, material=shipped(spec))
        objects = {o["metadata"]["name"]: o for o in render_manifests(hub, spec, material=shipped(spec))}
        for prof in hub.profiles:
            pres = next(p for p in hub.presentations if p.key == prof.presentation)
            wanted = lab_files(pres)
            pod = pod_for(values, "ada", [pres.group], prof.name)
            (main,) = pod["spec"]["containers"]
            volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
            seen = {}
            for m in main["volumeMounts"]:
                if m["mountPath"] == LAB_PAGE_CONFIG or m["mountPath"] in LAB_OVERRIDES:
                    cm = objects[volumes[m["name"]]["configMap"]["name"]]
                    seen[m["mountPath"]] = json.loads(cm["data"][m["subPath"]])
            expected = {}
            if "page_config.json" in wanted:
                expected[LAB_PAGE_CONFIG] = wanted["page_config.json"]
            if "overrides.json" in wanted:
                expected.update({path: wanted["overrides.json"] for path in LAB_OVERRIDES})
            assert seen == expected, (hub.name, prof.name)
            checked += bool(expected)
    assert checked  # the fixture's courses do configure JupyterLab


def test_every_server_gets_the_fleets_branding_in_jupyterlab():
    # One branding source (fleet.yaml) for the portal, the hub pages and JupyterLab: every profile's pod mounts the
    # hub's branding ConfigMap where its JUPYTER_CONFIG_PATH looks, with custom CSS switched on.
    spec = fleet_spec("per-presentation")
    for hub in spec.hubs:
        values = render_values(hub, spec, material=shipped(spec))
        objects = {o["metadata"]["name"]: o for o in render_manifests(hub, spec, material=shipped(spec))}
        for prof in hub.profiles:
            pres = next(p for p in hub.presentations if p.key == prof.presentation)
            pod = pod_for(values, "ada", [pres.group], prof.name)
            (main,) = pod["spec"]["containers"]
            env = {e["name"]: e.get("value") for e in main["env"]}
            assert env["JUPYTER_CONFIG_PATH"] == LAB_CONFIG_DIR
            volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
            files = {}
            for m in main["volumeMounts"]:
                if m["mountPath"].startswith(LAB_CONFIG_DIR + "/"):
                    cm = objects[volumes[m["name"]]["configMap"]["name"]]
                    files[m["mountPath"].removeprefix(LAB_CONFIG_DIR + "/")] = cm["data"][m["subPath"]]
                    assert m["readOnly"]
            assert set(files) == {"custom/custom.css", "jupyter_server_config.json"}, (hub.name, prof.name)
            css = files["custom/custom.css"]
            assert hub.branding.primary_color in css and hub.branding.name in css
            assert f'url("https://portal.{spec.domain}/branding/logo")' in css  # the example has a logo
            config = json.loads(files["jupyter_server_config.json"])
            assert config["LabApp"]["custom_css"] is True
            assert config["ServerApp"]["tornado_settings"]["static_custom_path"] == [f"{LAB_CONFIG_DIR}/custom"]


def test_each_presentation_of_a_shared_hub_mounts_the_claim_kubespawner_creates(tmp_path):
    # Per-presentation storage on a hub of two presentations: one claim per student per presentation, and the
    # claim kubespawner creates is the one the pod mounts (it used to create the first presentation's only).
    root = write_catalog(tmp_path / "catalog")
    course = (root / "courses" / "TM351.yaml").read_text()
    (root / "courses" / "TM351.yaml").write_text(course.replace("presentations:\n", "presentations:\n  - {id: 2026B, "
                                                 "start: 2026-10-03, end: 2027-06-10, enrolment: [{users: [alice]}]}\n"))
    catalog = load_catalog(root).catalog
    spec = plan(catalog.model_copy(update={"fleet": catalog.fleet.model_copy(update={"topology": "per-course"})}),
                dt.date(2026, 11, 1))
    hub = spec.hub("tm351")
    assert len(hub.presentations) == 2 and {p.storage.layout for p in hub.presentations} == {"per-presentation"}
    values = render_values(hub, spec, material=read_material(root, spec))
    created = {}
    for prof in hub.profiles:
        claim: list = []
        pod = pod_for(values, "josé", [p.group for p in hub.presentations], prof.name, claim)
        mounted = {v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
                   if v["name"] == "home" and "persistentVolumeClaim" in v}
        assert mounted == set(claim), prof.name
        created[prof.presentation] = claim[0]
    assert len(set(created.values())) == 2 and all(dns_label(k) in name for k, name in created.items())


def test_every_profile_of_the_example_spawns_with_the_memory_the_catalog_says():
    # KubeSpawner's memory traits take JupyterHub byte specifications (K/M/G/T, binary), not Kubernetes quantities:
    # a course's "memory: 1Gi" failed every spawn at load_user_options, and "2G" meant 2 GiB, not 2 GB.
    root = Path(__file__).parent.parent / "examples" / "university"
    catalog = load_catalog(root).catalog
    spec = plan(catalog.model_copy(update={"fleet": catalog.fleet.model_copy(update={"backend": "kubernetes"})}),
                dt.date(2027, 1, 15))
    material = read_material(root, spec)
    seen = set()
    for hub in spec.hubs:
        values = render_values(hub, spec, material=material)
        for prof in hub.profiles:
            pres = next(p for p in hub.presentations if p.key == prof.presentation)
            pod = pod_for(values, "ada", [pres.group], prof.name)
            resources = pod["spec"]["containers"][0]["resources"]
            assert resources["requests"]["memory"] == memory_bytes(prof.memory)
            assert resources["limits"]["memory"] == memory_bytes(prof.memory_limit or prof.memory)
            seen.add(prof.memory)
    assert any(m.endswith("i") for m in seen) and any(not m.endswith("i") for m in seen)  # both kinds of unit
