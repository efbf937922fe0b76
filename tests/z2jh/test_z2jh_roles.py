"""The z2jh tier through the example university's calendar: roles, the read-only phase, every presentation.

One chart hub (the example planned with ``topology: central``, see ``z2jh_roles_support``) is moved through the
calendar's dates up to 25 Sep 2026 (``z2jh_calendar``; the later dates are walked by ``test_z2jh_calendar_winter.py``
and ``test_z2jh_calendar_summer.py`` on hubs of their own) with real helm upgrades, a fresh hub pod each time and
hubfleet's enrolment sync; then the read-only and roles tests move it to 25 Nov 2026. The tests are in calendar
order so the hub only moves forward; each test asks for the dates it needs, so any one runs alone.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from hubfleet.hubapi.tls import tls_context
from z2jh_calendar import D, calendar, dates, has_server, signed_in, students, wait_ready, wait_stopped, walk  # noqa: F401
from z2jh_roles_support import run_code, storage_path

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------------- every presentation, each phase


@pytest.mark.parametrize(**dates(D(2025, 1, 1), D(2026, 9, 25)))  # before the read-only and roles tests' dates
def test_every_presentation_in_each_phase(calendar, date, expected):
    """Up to 25 Sep 2026 (later dates: ``test_z2jh_calendar_winter.py``, ``..._summer.py``), see `walk`."""
    walk(calendar, date, expected)


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

