"""The example university's calendar on one chart hub, for the z2jh tier's calendar tests.

The calendar is walked in three files (``test_z2jh_roles.py`` up to 25 Sep 2026 with the read-only and roles
tests, ``test_z2jh_calendar_winter.py`` and ``test_z2jh_calendar_summer.py`` after), each on a hub of its own, so
the walk runs on three test workers at once. A hub that first appears mid-calendar is what a fleet installed on
that date gets; what carries over from one date to the next (a student's files from the open phase into the
read-only one, an archived presentation's students refused) is checked within each file's stretch of dates.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from z2jh_roles_support import Browser, CalendarHub, storage_path


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
    """One calendar hub per test file (a file's dates run in order on it)."""
    hub = CalendarHub(tmp_path_factory.mktemp("z2jh-calendar"))
    yield hub
    hub.stop()


def dates(first: dt.date, last: dt.date) -> dict:
    """``pytest.mark.parametrize`` arguments for the calendar's dates from ``first`` to ``last``."""
    cells = [(d, e) for d, e in CALENDAR if first <= d <= last]
    return {"argnames": "date,expected", "argvalues": cells, "ids": [d.isoformat() for d, _ in cells]}


def stretch(first: dt.date, last: dt.date):
    """The test of a file that walks the calendar from ``first`` to ``last`` on its own hub (the `calendar`
    fixture, which that file imports): `walk` on each date, in order."""

    @pytest.mark.slow
    @pytest.mark.parametrize(**dates(first, last))
    def test_every_presentation_in_each_phase(calendar, date, expected):
        walk(calendar, date, expected)

    return test_every_presentation_in_each_phase


def students(hub: CalendarHub, key: str) -> list[str]:
    """The presentation's students (its group less its team), in roster order."""
    p = hub.presentation(key)
    return [u for u in hub.members(p.group) if u not in {*p.instructors, *p.tutors}]


def signed_in(hub: CalendarHub, name: str) -> Browser:
    person = Browser(hub, name)
    assert person.sign_in().status_code == 200
    return person


def wait_ready(hub: CalendarHub, name: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not (hub.api("GET", f"users/{name}").json().get("servers", {}).get("") or {}).get("ready"):
        assert time.monotonic() < deadline, f"{name}'s server never became ready:\n" + hub.hub_log()[-3000:]
        time.sleep(0.5)


def wait_stopped(hub: CalendarHub, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while has_server(hub, name) or hub.user_pod(name):
        assert time.monotonic() < deadline, f"{name}'s server did not stop"
        time.sleep(0.3)


def has_server(hub: CalendarHub, name: str) -> bool:
    return bool(hub.api("GET", f"users/{name}").json().get("servers"))

def walk(calendar: CalendarHub, date: dt.date, expected: dict[str, str]) -> None:
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
