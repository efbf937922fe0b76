"""The z2jh tier at a read-only date: A233-2026B ended on 2026-11-12; for 30 days its students may sign in and
take their files, not change them. The course folder is mounted read-only over itself by the rendered pod (the
process kubelet remounts it read-only, as a kubelet does for ``readOnly: true``)."""

from __future__ import annotations

import datetime as dt

import pytest
from z2jh_hubs import ChartHub, Student

pytestmark = pytest.mark.slow

HUB = "a233-2026b"
READ_ONLY = dt.date(2026, 11, 20)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    running = ChartHub(tmp_path_factory.mktemp("z2jh-ro"), HUB, at=READ_ONLY)
    yield running
    running.stop()


def test_the_course_folder_refuses_writes_but_the_student_still_gets_in(hub):
    name = sorted(u for u in hub.api("GET", f"groups/{HUB}").json()["users"] if u.isalnum())[0]
    student = Student(hub, name)
    try:
        student.sign_in()
        assert student.start().status_code == 200
        assert student.open_lab().status_code == 200, student.pod_logs()
        listing = student.contents("GET", "")
        assert listing.status_code == 200, listing.text
        note = {"type": "file", "format": "text", "content": "too late\n"}
        refused = student.contents("PUT", "late-notes.txt", json=note)
        assert refused.status_code >= 400 and "Read-only file system" in refused.text, refused.text
        assert "late-notes.txt" not in {
            f["name"] for f in student.contents("GET", "").json()["content"]}
        pod = hub.user_pod(name)["spec"]["containers"][0]
        assert any(m.get("readOnly") and m["mountPath"] == pod["workingDir"] for m in pod["volumeMounts"])
    finally:
        student.close()
