"""The z2jh tier: the Zero-to-JupyterHub 4.4.0 chart's own hub, rendered by real helm from hubfleet's values.

One hub per module (A233-2026J of the example university: seeded material, personal-subfolder storage, two
profiles), started from the chart's Deployments by the process kubelet: the chart's ``jupyterhub_config.py``
runs unchanged under the hub image's pins (JupyterHub 5.5.0, KubeSpawner 7.0.0) and KubeSpawner spawns
against the served fake API server; students reach JupyterLab through the chart's proxy (node CHP).
What the tier fakes and why: ``hubfleet.testing.kubeapi`` / ``kubelet`` / ``chart`` and ``z2jh_hubs``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import httpx
import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from z2jh_hubs import ChartHub, Student, run_code

from hubfleet.catalog.naming import account_prefix, normalise_username, unix_account

pytestmark = pytest.mark.slow

HUB = "a233-2026j"


def account(hub: ChartHub, name: str) -> str:
    """The notebook user in the container: the fleet's Unix account of the student (docker-stacks' NB_USER)."""
    spec = hub.fleet.spec
    return unix_account(spec.account_prefix or account_prefix(spec.fleet), name)


def course_dir(hub: ChartHub, name: str) -> str:
    return f"/home/{account(hub, name)}/A233-2026J"


# Usernames KubeSpawner escapes (issue 9 item 3): a capital and a dot, a non-ASCII letter, an e-mail login.
ESCAPED = ["Alice.Smith", "josé", "jane.doe@example.ac.uk"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    running = ChartHub(tmp_path_factory.mktemp("z2jh"), HUB,
                       extra_students=[("A233-2026J.csv", name) for name in ESCAPED])
    yield running
    running.stop()


def members(hub: ChartHub) -> list[str]:
    return sorted(hub.api("GET", f"groups/{HUB}").json()["users"])


def enrolled(hub: ChartHub) -> list[str]:
    """The example's own students (the roster's ab1234-style logins), sorted."""
    return [u for u in members(hub) if u.isalnum() and u.isascii()]


def test_enrolment_sync_creates_the_students_and_a_second_run_writes_nothing(hub):
    from hubfleet.enrol.sync import BULK

    first = hub.changes[0].counts()
    assert first["users created"] > 200 and first["added to groups"] >= first["users created"]
    # Through the bulk enrolment endpoint the chart hub runs from hub.extraConfig: one write for all of it.
    assert hub.changes[0].method == BULK and hub.changes[0].writes == 1
    from hubfleet.enrol.sync import sync_spec

    again = sync_spec(hub.fleet.loaded, hub.fleet.spec, lambda name: (hub.api_url, hub.token), hubs={HUB})
    assert sum(again[0].counts().values()) == 0


def test_student_lands_in_the_seeded_course_folder_and_an_edit_survives_a_restart(hub):
    name = enrolled(hub)[0]
    student = Student(hub, name)
    try:
        assert student.sign_in().status_code == 200
        assert student.start("python").status_code == 200
        lab = student.open_lab()
        assert lab.status_code == 200 and "JupyterLab" in lab.text, student.pod_logs()
        # The fleet's branding in JupyterLab's top bar, from the hub's branding ConfigMap (as the local backend).
        assert "custom/custom.css" in lab.text, student.pod_logs()
        css = student.http.get(f"{student.server}custom/custom.css")
        branding = hub.fleet.spec.hub(HUB).branding
        assert css.status_code == 200 and branding.primary_color in css.text and branding.name in css.text
        # No "install" buttons in the Extension Manager: a course's extensions come from the catalog.
        page = json.loads(re.search(r'id="jupyter-config-data"[^>]*>(.*?)</script>', lab.text, re.S).group(1))
        assert page["extensionManager"]["name"] == "read-only" and page["extensionManager"]["can_install"] is False
        # The server's root is the course folder: the seeded corpus is there (seed target "corpus").
        corpus = student.contents("GET", "corpus")
        assert corpus.status_code == 200, corpus.text
        assert {"README.md", "austen-persuasion-ch1.txt"} <= {f["name"] for f in corpus.json()["content"]}
        readme = student.contents("GET", "corpus/README.md").json()["content"]
        edited = readme + "\nMy notes: chapter 1 first.\n"
        put = student.contents("PUT", "corpus/README.md",
                               json={"type": "file", "format": "text", "content": edited})
        assert put.status_code == 200, put.text

        hub.stop_server(name)
        assert student.start("python").status_code == 200
        assert student.open_lab().status_code == 200, student.pod_logs()
        # Seeding ran again on the new pod (policy "never") and kept the student's edit.
        assert student.contents("GET", "corpus/README.md").json()["content"] == edited
    finally:
        student.close()


@pytest.mark.parametrize("login", ESCAPED)
def test_escaped_usernames_land_in_their_seeded_folder_and_keep_an_edit(hub, login):
    """Issue 9 item 3: the home mount, the root dir and the working dir agree for names KubeSpawner escapes."""
    name = normalise_username(login)
    assert name in members(hub)
    student = Student(hub, name, login)
    try:
        student.sign_in()
        assert student.start().status_code == 200
        assert student.open_lab().status_code == 200, student.pod_logs()
        pod = hub.user_pod(name)["spec"]["containers"][0]
        assert pod["workingDir"] == course_dir(hub, name)
        assert {"README.md", "austen-persuasion-ch1.txt"} <= {
            f["name"] for f in student.contents("GET", "corpus").json()["content"]}
        note = {"type": "file", "format": "text", "content": f"{login} was here\n"}
        assert student.contents("PUT", "notes.txt", json=note).status_code == 201
        hub.stop_server(name)
        student.start()
        assert student.open_lab().status_code == 200, student.pod_logs()
        assert student.contents("GET", "notes.txt").json()["content"] == f"{login} was here\n"
    finally:
        student.close()


def test_a_kernel_runs_through_the_proxy_websocket(hub):
    name = enrolled(hub)[1]
    student = Student(hub, name)
    try:
        student.sign_in()
        student.start()
        assert student.open_lab().status_code == 200, student.pod_logs()
        token = student.token()
        headers = {"Authorization": f"token {token}"}
        kernel = student.http.post(student.server + "api/kernels", json={"name": "python3"}, headers=headers)
        assert kernel.status_code == 201, kernel.text
        # The websocket goes to the proxy pod with the user's host, as the ingress would send it.
        url = f"ws://{httpx.URL(hub.url).netloc.decode()}/user/{name}/api/kernels/{kernel.json()['id']}/channels"
        headers["Host"] = httpx.URL(student.server).host
        # The chart's proxy (node CHP) passes the kernel protocol's subprotocol through to the server.
        assert asyncio.run(subprotocol(url, headers)) == "v1.kernel.websocket.jupyter.org"
        out = asyncio.run(run_code(url, headers, "import getpass, os; print(getpass.getuser(), os.getcwd(), 6 * 7)"))
        # As the student's account, in the course folder (a kernel started with no path runs in the cwd).
        assert out.split() == [account(hub, name), course_dir(hub, name), "42"]
    finally:
        student.close()


def test_twenty_refused_spawns_in_a_row_leave_the_hub_running(hub):
    """A signed-in user in no presentation group gets no server, 20 times, and the hub stays up (z2jh makes it
    exit after consecutiveFailureLimit=5 spawn failures, so refusals must not be spawn failures)."""
    outsider = "zz9999"
    assert hub.api("POST", f"users/{outsider}").status_code == 201  # exists, enrolled nowhere
    student = Student(hub, outsider)
    try:
        student.sign_in()
        statuses = []
        for _ in range(20):
            form = student.http.post("/hub/spawn", data={"_xsrf": student.hub_xsrf()})
            api = student.http.post(f"/hub/api/users/{outsider}/server", json={},
                                    headers={"X-XSRFToken": student.hub_xsrf()})
            statuses += [form.status_code, api.status_code]
        assert "consecutive spawns failed" not in hub.hub_log() and "Aborting" not in hub.hub_log()
        assert hub.hub_running() and httpx.get(f"{hub.url}/hub/api/", timeout=10).status_code == 200
        # Refused by JupyterHub's scope check before any spawn started; signed in all along.
        assert statuses == [403] * 40
        assert hub.api("GET", f"users/{outsider}").json()["servers"] == {}
        assert student.http.get("/hub/home").status_code == 200
    finally:
        student.close()
    # ...and a student asking for a profile that is not theirs gets their own default, not a refusal.
    name = enrolled(hub)[2]
    student = Student(hub, name)
    try:
        student.sign_in()
        assert student.start("no-such-profile").status_code == 200
        assert student.open_lab().status_code == 200, student.pod_logs()
        assert hub.user_pod(name)["spec"]["containers"][0]["image"] == "ghcr.io/example-university/a233-python:2026.1"
    finally:
        student.close()


def test_the_server_starts_in_the_course_folder(hub):
    """Issue 9 item 3: working_dir from a profile was left as the literal ``/home/{username}/...``."""
    name = enrolled(hub)[0]
    pod = hub.user_pod(name)
    if pod is None:
        student = Student(hub, name)
        student.sign_in()
        student.start()
        student.open_lab()
        student.close()
        pod = hub.user_pod(name)
    assert pod["spec"]["containers"][0]["workingDir"] == course_dir(hub, name)


async def subprotocol(url: str, headers: dict) -> str | None:
    conn = await websocket_connect(HTTPRequest(url, headers=headers, request_timeout=60),
                                   subprotocols=["v1.kernel.websocket.jupyter.org"])
    try:
        return conn.selected_subprotocol
    finally:
        conn.close()


def test_tutor_and_instructor_can_do_what_their_roles_allow_and_no_more(hub):
    """Staff are in the profiles' groups, so the refusal rule leaves them their own servers; over students'
    servers an instructor may stop them, a tutor may not, and both get 404 for users outside the course."""
    student = enrolled(hub)[5]
    outsider = "zz8888"
    assert hub.api("POST", f"users/{outsider}").status_code == 201
    assert hub.api("POST", f"users/{student}/server", json={}).status_code in (201, 202)
    instructor, tutor = Student(hub, "ef4410"), Student(hub, "hc3391")
    try:
        for staff in (tutor, instructor):
            staff.sign_in()
            assert staff.start().status_code == 200
            assert staff.open_lab().status_code == 200, staff.pod_logs()
        while not (hub.api("GET", f"users/{student}").json()["servers"].get("") or {}).get("ready"):
            time.sleep(0.5)

        def as_staff(who: Student, method: str, path: str) -> int:
            return who.http.request(method, f"/hub/api/{path}", headers={"X-XSRFToken": who.hub_xsrf()}).status_code

        assert as_staff(tutor, "GET", f"users/{student}") == 200
        # Outside the tutor's scopes: JupyterHub answers 404, and the student's server keeps running.
        assert as_staff(tutor, "DELETE", f"users/{student}/server") == 404
        assert hub.api("GET", f"users/{student}").json()["servers"][""]["ready"]
        assert as_staff(tutor, "GET", f"users/{outsider}") == 404
        assert as_staff(instructor, "GET", f"users/{outsider}") == 404
        assert as_staff(instructor, "DELETE", f"users/{student}/server") in (202, 204)
    finally:
        tutor.close()
        instructor.close()


def test_a_students_token_cannot_call_the_bulk_enrolment_endpoint(hub):
    student = Student(hub, enrolled(hub)[1])
    try:
        assert student.sign_in().status_code == 200
        token = {"Authorization": f"token {student.token()}"}
        url = f"{hub.api_url}/hubfleet/enrol"
        assert httpx.get(url, headers=token).status_code == 403
        refused = httpx.post(url, headers=token, json={"users": ["z2jh-intruder"], "groups": {HUB: ["z2jh-intruder"]}})
        assert refused.status_code == 403
        assert hub.api("GET", "users/z2jh-intruder").status_code == 404
    finally:
        student.close()
