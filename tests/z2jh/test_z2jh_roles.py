"""The z2jh tier through the example university's calendar: roles, the read-only phase, every presentation.

One chart hub (the example planned with ``topology: central``, see ``z2jh_roles_support``) is moved through the
dates below with real helm upgrades, a fresh hub pod each time and hubfleet's enrolment sync. The tests are in
calendar order so the hub mostly moves forward; each test asks for the dates it needs, so any one runs alone.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
import pytest

from hubfleet.hubapi.tls import tls_context
from z2jh_roles_support import HUB, Browser, CalendarHub, run_code, storage_path

pytestmark = pytest.mark.slow

D = dt.date
# The example's presentations with a hub on each date, and their phase (14 days' provisioning, 30 read-only).
# Together the dates put every presentation in each of its hub phases at least once.
CALENDAR: list[tuple[dt.date, dict[str, str]]] = [
    (D(2025, 9, 25), {"TM351-2025J": "provisioned"}),
    (D(2026, 2, 1), {"TM351-2025J": "open", "A233-2026B": "provisioned"}),
    (D(2026, 6, 25), {"TM351-2025J": "read-only", "A233-2026B": "open", "DSS-2026": "provisioned"}),
    (D(2026, 7, 8), {"TM351-2025J": "read-only", "A233-2026B": "open", "DSS-2026": "open"}),
    (D(2026, 8, 20), {"A233-2026B": "open", "DSS-2026": "read-only"}),
    (D(2026, 9, 25), {"A233-2026B": "open", "A233-2026J": "provisioned", "DD211-2026J": "provisioned",
                      "M269-2026J": "provisioned", "TM351-2026J": "provisioned"}),
    (D(2026, 11, 25), {"A233-2026B": "read-only", "A233-2026J": "open", "DD211-2026J": "open", "M269-2026J": "open",
                       "TM351-2026J": "open", "SWC-dec26": "provisioned"}),
    (D(2026, 12, 8), {"A233-2026B": "read-only", "A233-2026J": "open", "DD211-2026J": "open", "M269-2026J": "open",
                      "TM351-2026J": "open", "SWC-dec26": "open"}),
    (D(2026, 12, 20), {"A233-2026J": "open", "DD211-2026J": "open", "M269-2026J": "open", "TM351-2026J": "open",
                       "SWC-dec26": "read-only"}),
    (D(2027, 1, 25), {"A233-2026J": "open", "DD211-2026J": "open", "M269-2026J": "open", "TM351-2026J": "open",
                      "DD211-2027B": "provisioned", "M269-2027B": "provisioned"}),
    (D(2027, 6, 25), {"A233-2026J": "read-only", "DD211-2026J": "read-only", "M269-2026J": "read-only",
                      "TM351-2026J": "read-only", "DD211-2027B": "open", "M269-2027B": "open",
                      "DSS-2027": "provisioned"}),
    (D(2027, 7, 8), {"A233-2026J": "read-only", "DD211-2026J": "read-only", "M269-2026J": "read-only",
                     "TM351-2026J": "read-only", "DD211-2027B": "open", "M269-2027B": "open", "DSS-2027": "open"}),
    (D(2027, 8, 20), {"DD211-2027B": "open", "M269-2027B": "open", "DSS-2027": "read-only"}),
    (D(2027, 10, 1), {"DD211-2027B": "read-only", "M269-2027B": "read-only"}),
]
SEEDED = {"A233": {"corpus"}, "TM351": {"README.md"}, "DSS": {"welcome.ipynb"}}  # a name the seed puts in the folder


@pytest.fixture(scope="module")
def calendar(tmp_path_factory):
    hub = CalendarHub(tmp_path_factory.mktemp("z2jh-roles"))
    yield hub
    hub.stop()


def students(hub: CalendarHub, key: str) -> list[str]:
    """The presentation's students (its group less its team), in roster order."""
    p = hub.presentation(key)
    return [u for u in hub.members(p.group) if u not in {*p.instructors, *p.tutors}]


def signed_in(hub: CalendarHub, name: str) -> Browser:
    person = Browser(hub, name)
    assert person.sign_in().status_code == 200
    return person


def wait_ready(hub: CalendarHub, name: str, timeout: float = 180) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not (hub.api("GET", f"users/{name}").json().get("servers", {}).get("") or {}).get("ready"):
        assert time.monotonic() < deadline, f"{name}'s server never became ready:\n" + hub.hub_log()[-3000:]
        time.sleep(0.5)


def wait_stopped(hub: CalendarHub, name: str, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while has_server(hub, name) or hub.user_pod(name):
        assert time.monotonic() < deadline, f"{name}'s server did not stop"
        time.sleep(0.3)


def has_server(hub: CalendarHub, name: str) -> bool:
    return bool(hub.api("GET", f"users/{name}").json().get("servers"))


# ------------------------------------------------------------------------------- every presentation, each phase


EARLY = [(d, e) for d, e in CALENDAR if d <= D(2026, 9, 25)]  # before the read-only and roles tests' dates
LATE = [(d, e) for d, e in CALENDAR if d > D(2026, 9, 25)]


@pytest.mark.parametrize("date,expected", EARLY, ids=[d.isoformat() for d, _ in EARLY])
def test_every_presentation_in_each_phase(calendar, date, expected):
    """On each date the hub serves exactly the presentations whose phase wants one. For each presentation in a
    phase not seen on an earlier date: provisioned, its students are refused a server and its tutor lands in the
    course folder; open, a student lands in their course folder with the seeded material, and what they save is
    in the course folder on their storage; read-only, a student lands in their course folder and cannot write."""
    hub = calendar
    hub.at(date)
    assert {k: v.value for k, v in hub.phases().items()} == expected
    seen = {(k, p) for d, exp in CALENDAR if d < date for k, p in exp.items()}
    cells = [(k, p) for k, p in expected.items() if (k, p) not in seen]
    # Presentations gone since an earlier date (archived): their students are refused a server now.
    gone = {k for d, exp in CALENDAR if d < date for k in exp} - set(expected)
    current = {g for k in expected for g in (hub.presentation(k).group, hub.presentation(k).tutor_group,
                                             hub.presentation(k).instructor_group)}
    for key, name in sorted(hub.spawned):
        if key in gone and not current & set(hub.api("GET", f"users/{name}").json()["groups"]):
            student = Browser(hub, name)
            try:
                student.sign_in()
                refused = student.http.post(f"/hub/api/users/{name}/server", json={},
                                            headers={"X-XSRFToken": student.hub_xsrf()})
                assert refused.status_code == 403, f"{name} of archived {key} got {refused.status_code}"
            finally:
                student.close()
    failures = []
    for key, phase in cells:
        try:
            check_cell(hub, key, phase)
        except AssertionError as exc:
            failures.append(f"{key} {phase} on {date}: {exc}")
    assert not failures, "\n".join(failures)


def _groups(p) -> tuple[str, str, str]:
    return (p.group, p.tutor_group, p.instructor_group)


def check_cell(hub: CalendarHub, key: str, phase: str) -> None:
    p = hub.presentation(key)
    if phase == "provisioned":
        # A student enrolled on this presentation only (one also on an open presentation starts that one).
        others = {g for k in hub.phases() if k != key for g in _groups(hub.presentation(k))}
        name = next(u for u in students(hub, key)
                    if not others & set(hub.api("GET", f"users/{u}").json()["groups"]))
        student = Browser(hub, name)
        try:
            # Only the team may prepare: a student signs in but gets no server (JupyterHub's scope check
            # refuses before any spawn starts; the sign-in's redirect to the spawn page is that 403 too).
            student.sign_in()
            assert student.http.get("/hub/home").status_code == 200, f"student {name} is not signed in"
            refused = student.http.post(f"/hub/api/users/{name}/server", json={"profile": hub.profile(key)},
                                        headers={"X-XSRFToken": student.hub_xsrf()})
            assert refused.status_code == 403, f"student {name} got {refused.status_code}"
            assert not has_server(hub, name)
        finally:
            student.close()
        name = p.tutors[0] if p.tutors else p.instructors[0]
    else:
        name = students(hub, key)[0]
    person = signed_in(hub, name)
    folder = hub.course_dir(key, name)
    try:
        assert person.start(hub.profile(key)).status_code == 200
        lab = person.open_lab()
        assert lab.status_code == 200 and "JupyterLab" in lab.text, person.pod_logs()
        root = person.contents("GET", "")
        assert root.status_code == 200, root.text
        names = {f["name"] for f in root.json()["content"]}
        pod = hub.user_pod(name)
        assert pod["spec"]["containers"][0]["workingDir"] == folder
        course = p.course
        if phase == "read-only":
            if p.storage.layout == "ephemeral":  # a workshop keeps nothing: the folder is there, empty
                assert names == set(), names
            elif (key, name) in hub.spawned:  # they had the folder while it was open: it is all still there
                assert SEEDED.get(course, set()) <= names and "hubfleet-check.txt" in names, names
            refused = person.contents("PUT", "late.txt", json={"type": "file", "format": "text", "content": "x"})
            assert refused.status_code >= 400, refused.text
            assert not storage_path(hub, name, f"{folder}/late.txt").exists()
        else:
            assert SEEDED.get(course, set()) <= names, f"seeded material missing from {sorted(names)}"
            saved = person.contents("PUT", "hubfleet-check.txt",
                                    json={"type": "file", "format": "text", "content": f"{key} {name}\n"})
            assert saved.status_code == 201, saved.text
            # The server's root is the course folder on the student's storage: the file is there.
            assert storage_path(hub, name, f"{folder}/hubfleet-check.txt").read_text() == f"{key} {name}\n"
            hub.spawned.add((key, name))
    finally:
        person.close()
        if hub.user_pod(name) is not None or has_server(hub, name):
            hub.stop_server(name)


# ------------------------------------------------------------------------------------------------ read-only


def test_read_only_presentation_opens_with_the_students_files_and_refuses_writes(calendar):
    """A233-2026B: the student works while it is open; after its end they can still open their folder and read
    everything (the seeded corpus and their own notes), but neither the contents API nor a kernel can write."""
    hub = calendar
    key = "A233-2026B"
    hub.at(D(2026, 9, 25))  # open
    name = students(hub, key)[0]
    folder = hub.course_dir(key, name)
    student = signed_in(hub, name)
    try:
        assert student.start(hub.profile(key)).status_code == 200
        assert student.open_lab().status_code == 200, student.pod_logs()
        assert "README.md" in {f["name"] for f in student.contents("GET", "corpus").json()["content"]}
        note = {"type": "file", "format": "text", "content": "Persuasion, ch. 1: Sir Walter's vanity.\n"}
        assert student.contents("PUT", "my-notes.txt", json=note).status_code == 201
    finally:
        student.close()

    hub.at(D(2026, 11, 25))  # read-only
    assert hub.phases()[key] == "read-only"
    student = signed_in(hub, name)
    try:
        assert student.start(hub.profile(key)).status_code == 200
        lab = student.open_lab()
        assert lab.status_code == 200 and "JupyterLab" in lab.text, student.pod_logs()
        readme = student.contents("GET", "corpus/README.md")
        assert readme.status_code == 200 and readme.json()["content"], readme.text
        mine = student.contents("GET", "my-notes.txt")
        assert mine.status_code == 200 and mine.json()["content"] == note["content"]
        # Writes to the course folder are refused: a change, a new file, a deletion.
        changed = {**note, "content": "rewritten after the end\n"}
        assert student.contents("PUT", "my-notes.txt", json=changed).status_code >= 400
        assert student.contents("PUT", "new.txt", json=note).status_code >= 400
        assert student.contents("DELETE", "corpus/README.md").status_code >= 400
        assert student.contents("GET", "my-notes.txt").json()["content"] == note["content"]
        assert student.contents("GET", "corpus/README.md").status_code == 200
        assert storage_path(hub, name, f"{folder}/my-notes.txt").read_text() == note["content"]
        # ...and so does a kernel (started in the course folder).
        headers = {"Authorization": f"token {student.token()}"}
        kernel = student.http.post(student.server + "api/kernels", json={"name": "python3"}, headers=headers)
        assert kernel.status_code == 201, kernel.text
        url = f"ws://{httpx.URL(hub.url).netloc.decode()}/user/{name}/api/kernels/{kernel.json()['id']}/channels"
        headers["Host"] = httpx.URL(student.server).host
        out = asyncio.run(run_code(url, headers, "import os\nprint(os.getcwd())\n"
                                                 "open('my-notes.txt', 'w').write('from a kernel')"))
        assert out.splitlines()[0] == folder
        assert "Read-only file system" in out or "Permission denied" in out, out
        assert storage_path(hub, name, f"{folder}/my-notes.txt").read_text() == note["content"]
    finally:
        student.close()
        hub.stop_all_servers()


# ---------------------------------------------------------------------------------------------------- roles


def test_instructor_and_tutor_can_do_what_their_roles_allow_and_nothing_more(calendar):
    """On 25 Nov 2026 the hub serves A233-2026J and DD211-2026J (among others). A233's instructor starts, opens
    and stops an A233-2026J student's server but not a DD211-2026J student's; A233's tutor opens an A233
    student's server but can neither start nor stop it; a student cannot see another student or their server."""
    hub = calendar
    hub.at(D(2026, 11, 25))
    key, other_key = "A233-2026J", "DD211-2026J"
    a233 = hub.presentation(key)
    instructor, tutor = a233.instructors[0], a233.tutors[0]
    ours, classmate = students(hub, key)[:2]
    theirs = next(u for u in students(hub, other_key) if u not in hub.members(a233.group))
    outside = (403, 404)  # JupyterHub 5.5: 404 when the caller has the scope for others, 403 when not at all

    staff = {n: signed_in(hub, n) for n in (instructor, tutor, classmate)}
    tokens = {n: person.token() for n, person in staff.items()}

    def as_(name: str, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, f"{hub.api_url}/{path}", headers={"Authorization": f"token {tokens[name]}"},
                             timeout=60, verify=tls_context(), **kwargs)

    try:
        # The instructor starts their student's server, opens it, and stops it.
        assert as_(instructor, "POST", f"users/{ours}/server").status_code in (201, 202)
        wait_ready(hub, ours)
        opened = staff[instructor].open_server_of(ours)
        assert opened.status_code == 200, opened.text[:2000]
        assert "corpus" in {f["name"] for f in opened.json()["content"]}  # the student's A233 folder
        assert as_(instructor, "DELETE", f"users/{ours}/server").status_code in (202, 204)
        wait_stopped(hub, ours)
        # ...but not the server of a student of another presentation on the same hub.
        assert as_(instructor, "POST", f"users/{theirs}/server").status_code in outside
        assert not has_server(hub, theirs)
        assert as_(instructor, "GET", f"users/{theirs}").status_code in outside

        # The tutor can neither start nor stop an A233 student's server, but can open it.
        assert as_(tutor, "POST", f"users/{ours}/server").status_code in outside
        assert hub.api("POST", f"users/{ours}/server").status_code in (201, 202)  # started by the platform
        wait_ready(hub, ours)
        opened = staff[tutor].open_server_of(ours)
        assert opened.status_code == 200, opened.text[:2000]
        assert "corpus" in {f["name"] for f in opened.json()["content"]}
        assert as_(tutor, "DELETE", f"users/{ours}/server").status_code in outside
        assert (hub.api("GET", f"users/{ours}").json()["servers"][""] or {}).get("ready")

        # A classmate sees neither the student nor their server.
        assert as_(classmate, "GET", f"users/{ours}").status_code in outside
        assert as_(classmate, "DELETE", f"users/{ours}/server").status_code in outside
        refused = staff[classmate].open_server_of(ours)
        assert refused.status_code in outside and "corpus" not in refused.text

        # The instructor cannot open the other presentation's student's running server either.
        assert hub.api("POST", f"users/{theirs}/server").status_code in (201, 202)
        wait_ready(hub, theirs)
        refused = staff[instructor].open_server_of(theirs)
        assert refused.status_code in outside, refused.text[:2000]
    finally:
        for person in staff.values():
            person.close()
        hub.stop_all_servers()


@pytest.mark.parametrize("date,expected", LATE, ids=[d.isoformat() for d, _ in LATE])
def test_every_presentation_in_each_phase_later(calendar, date, expected):
    """As `test_every_presentation_in_each_phase`, after the read-only and roles tests (the hub only moves
    forward: going back in time would drop presentations that hold student files, which apply refuses)."""
    test_every_presentation_in_each_phase(calendar, date, expected)
