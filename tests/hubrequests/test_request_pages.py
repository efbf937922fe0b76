"""The request pages and the dashboard over HTTP: the form's errors beside their fields, roles (403 + audit), CSRF,
a bad roster row named, the dashboard's rows, filters and actions by role."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from hubfleet.requests.records import AuditEntry, HubRequest
from request_support import git, portal_with_requests, sign_in


TODAY = dt.date(2026, 12, 3)
FORM = {"course": "TM351", "title": "Data management and analysis", "unit": "stem", "presentation": "2027J",
        "start": "2027-10-02", "end": "2028-06-08", "expected_students": "800", "memory": "3G",
        "enrolment": "roster", "instructors": "mo3312"}  # fmt: skip
ROSTER = b"username,role\nst0001,student\nst0002,student\n"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def signed_in(client_factory, user: str):  # noqa: ANN001, ANN201
    client = client_factory()
    assert sign_in(client, user).status_code == 303
    return client


def token(client, path: str) -> str:  # noqa: ANN001
    page = client.get(path)
    assert page.status_code == 200, page.text[:500]
    return _TOKEN.search(page.text).group(1)


def post_form(client, path: str, form: dict, roster: bytes | None, do: str, csrf: str):  # noqa: ANN001, ANN201
    files = {"roster": ("roster.csv", roster, "text/csv")} if roster is not None else {"roster": ("", b"", "text/csv")}
    return client.post(path, data=form | {"do": do, "csrf_token": csrf, "kind": "new"}, files=files)


@pytest.fixture
def portal(tmp_path: Path):  # noqa: ANN201
    return portal_with_requests(tmp_path, f"sqlite:///{tmp_path / 'requests.db'}", TODAY)


def test_a_bad_date_is_shown_beside_its_field_then_fixed_and_submitted(portal) -> None:  # noqa: ANN001
    app, service, repo, state, client_factory, _ = portal
    team = signed_in(client_factory, "mo3312")
    created = post_form(team, "/portal/requests/new", FORM | {"end": "2027-09-01"}, ROSTER, "submit",
                        token(team, "/portal/requests/new"))  # fmt: skip
    assert created.status_code == 303 and created.headers["location"].endswith("/edit?problem=1")
    page = team.get(created.headers["location"])
    end_input = re.search(r'<input id="f-end"[^>]*>', page.text).group(0)
    assert 'aria-invalid="true"' in end_input and 'aria-describedby="end-error"' in end_input
    error = re.search(r'<ul class="field-error" id="end-error" role="alert"><li>([^<]+)</li>', page.text).group(1)
    assert error.endswith("courses[TM351].presentations[2027J].end: end 2027-09-01 is not after start 2027-10-02; "
                          "fix one of the dates")
    rid = int(created.headers["location"].split("/")[-2])
    fixed = post_form(team, f"/portal/requests/{rid}/edit", FORM, None, "submit", _TOKEN.search(page.text).group(1))
    assert fixed.status_code == 303 and fixed.headers["location"] == f"/portal/requests/{rid}"
    view = team.get(fixed.headers["location"])
    assert 'id="request-state">Submitted, awaiting review<' in view.text
    assert "Hub <strong>tm351-2027j</strong>" in view.text  # the plan preview
    # ... and the simulator's prediction for the hub's life (provisioned before the start, archived after the
    # read-only months), in the fleet's topology
    cost = re.search(r'<p id="cost">Predicted cost: <strong>USD ([\d,]+)</strong> from (\S+) to (\S+) ', view.text)
    assert cost and int(cost.group(1).replace(",", "")) > 0, view.text[:3000]
    assert cost.group(2) < "2027-10-02" < "2028-06-08" < cost.group(3)  # from before the start to after the end
    with service.db.session() as s:
        assert s.get(HubRequest, rid).roster_csv == ROSTER.decode()  # the first upload is kept through the edit


def test_a_bad_roster_row_is_named_beside_the_roster(portal) -> None:  # noqa: ANN001
    app, service, repo, state, client_factory, _ = portal
    team = signed_in(client_factory, "mo3312")
    bad = b"username,role\nst0001,student\nNot A User!,student\n"
    created = post_form(team, "/portal/requests/new", FORM, bad, "save", token(team, "/portal/requests/new"))
    page = team.get(created.headers["location"])
    error = re.search(r'id="roster-error" role="alert"><li>([^<]+)</li>', page.text).group(1)
    assert error.startswith("enrolments/TM351-2027J.csv:3:1: "), error


def test_roles_refuse_with_403_and_every_refusal_is_audited(portal) -> None:  # noqa: ANN001
    app, service, repo, state, client_factory, ran = portal
    team = signed_in(client_factory, "mo3312")
    created = post_form(team, "/portal/requests/new", FORM, ROSTER, "submit", token(team, "/portal/requests/new"))
    rid = int(created.headers["location"].rsplit("/", 1)[-1])
    view_token = token(team, f"/portal/requests/{rid}")
    # The course team may not approve their own request, nor act on the dashboard.
    assert team.post(f"/portal/requests/{rid}/action", data={"action": "approve", "csrf_token": view_token}).status_code == 403
    dash_token = token(team, "/portal/dashboard/")
    assert team.post("/portal/dashboard/hubs/tm351-2026j/apply", data={"csrf_token": dash_token}).status_code == 403
    change = team.get("/portal/requests/new?change=1&course=TM351&presentation=2026J").text
    assert re.search(r'<input id="f-start" name="start" type="text" value="2026-10-03"', change)  # as the catalog says
    other = signed_in(client_factory, "ef4410")  # A233's team (arts)
    assert "TM351" not in other.get("/portal/requests/").text
    assert other.get(f"/portal/requests/{rid}").status_code == 403
    other_token = token(other, "/portal/requests/")
    assert other.post(f"/portal/requests/{rid}/action", data={"action": "approve", "csrf_token": other_token}).status_code == 403
    assert other.get("/portal/requests/new?change=1&course=TM351&presentation=2026J").status_code == 403
    student = signed_in(client_factory, "st0001")
    assert student.get("/portal/requests/").status_code == 403 and student.get("/portal/dashboard/").status_code == 403
    # A unit admin without the form's token changes nothing.
    admin = signed_in(client_factory, "ua1001")
    assert admin.post(f"/portal/requests/{rid}/action", data={"action": "approve"}).status_code == 403
    assert ran == []
    with service.db.session() as s:
        assert s.get(HubRequest, rid).state == "submitted"
        refused = [(e.actor, e.action, e.target) for e in s.scalars(select(AuditEntry).where(AuditEntry.allowed.is_(False)))]
    assert refused == [("mo3312", "approve", f"request:{rid}"), ("mo3312", "apply", "hub:tm351-2026j"),
                       ("ef4410", "view", f"request:{rid}"), ("ef4410", "approve", f"request:{rid}"),
                       ("ef4410", "change-form", "course:TM351"),
                       ("st0001", "list", "requests"), ("st0001", "dashboard", "dashboard"),
                       ("ua1001", "approve", f"request:{rid}")]  # fmt: skip
    # The unit admin, with the token, approves: one commit on main with the request id.
    approve_token = token(admin, f"/portal/requests/{rid}")
    assert admin.post(f"/portal/requests/{rid}/action", data={"action": "approve", "csrf_token": approve_token}).status_code == 303
    assert f"Hub request #{rid}" in git(repo, "log", "-1", "--format=%s", "main")
    approved = admin.get(f"/portal/requests/{rid}").text
    assert 'id="request-state">Scheduled<' in approved and 'class="error"' not in approved


def test_dashboard_rows_filters_and_actions_by_role(portal) -> None:  # noqa: ANN001
    app, service, repo, state, client_factory, ran = portal
    platform = signed_in(client_factory, "rk4521")
    page = platform.get("/portal/dashboard/")
    hubs = re.findall(r'<tr id="hub-([^"]+)">', page.text)
    assert "tm351-2026j" in hubs and "a233-2026j" in hubs
    assert "read-only on 2027-06-11" in re.search(r'<tr id="hub-tm351-2026j">.*?</tr>', page.text, re.S).group(0)
    arts = re.findall(r'<tr id="hub-([^"]+)">', platform.get("/portal/dashboard/?unit=arts").text)
    assert arts and all(h.startswith(("a233", "dd211")) for h in arts)
    # Nothing runs in this state dir: every wanted hub is down, which is a problem the filter finds.
    assert set(re.findall(r'<tr id="hub-([^"]+)">', platform.get("/portal/dashboard/?problem=down").text)) == set(hubs)
    hub_page = platform.get("/portal/dashboard/hubs/tm351-2026j")
    assert 'id="action-apply"' in hub_page.text and "/hub/admin" in hub_page.text
    csrf = _TOKEN.search(hub_page.text).group(1)
    done = platform.post("/portal/dashboard/hubs/tm351-2026j/sync", data={"csrf_token": csrf})
    assert done.status_code == 303 and ran == [("sync", "tm351-2026j")]
    team = signed_in(client_factory, "ef4410")
    mine = re.findall(r'<tr id="hub-([^"]+)">', team.get("/portal/dashboard/").text)
    assert mine and all(h.startswith("a233") for h in mine)
    assert 'id="action-apply"' not in team.get(f"/portal/dashboard/hubs/{mine[0]}").text
    assert team.get("/portal/dashboard/hubs/tm351-2026j").status_code == 403
    arts_admin = signed_in(client_factory, "ua2002")
    assert 'id="action-apply"' in arts_admin.get(f"/portal/dashboard/hubs/{mine[0]}").text


def test_dashboard_actions_run_the_operators_own_commands_on_the_running_front_door(tmp_path: Path) -> None:
    import json
    import sys

    from hubfleet.web.dashboard import SubprocessRunner

    (tmp_path / "fleet.json").write_text(json.dumps({"portal_url": "http://portal.localhost:41234"}))
    runner = SubprocessRunner(tmp_path / "catalog", tmp_path)
    where = [str(tmp_path / "catalog"), "--state-dir", str(tmp_path)]
    cli = [sys.executable, "-m", "hubfleet.cli.main"]
    assert runner.command("apply", "h") == [*cli, "apply", *where, "--port", "41234", "--yes"]
    assert runner.command("sync", "h") == [*cli, "enrol", "sync", *where, "--hub", "h"]
    assert runner.command("retry-archive", "h") == [*cli, "lifecycle", "run", *where, "--port", "41234"]


def test_a_failed_enrolment_sync_from_the_dashboard_shows_as_a_problem(portal) -> None:  # noqa: ANN001
    from hubfleet.web.dashboard import SubprocessRunner
    from request_support import wait_until

    app, service, repo, state, client_factory, _ = portal
    app.state.dashboard_runner = SubprocessRunner(repo, state)  # the real command, against a fleet that is not up
    platform = signed_in(client_factory, "rk4521")
    csrf = token(platform, "/portal/dashboard/hubs/tm351-2026j")
    assert platform.post("/portal/dashboard/hubs/tm351-2026j/sync", data={"csrf_token": csrf}).status_code == 303
    wait_until(lambda: (state / "portal" / "actions.json").exists(), timeout=120, what="the sync to finish")
    page = platform.get("/portal/dashboard/?problem=sync").text
    assert re.findall(r'<tr id="hub-([^"]+)">', page) == ["tm351-2026j"]
    assert "failed" in re.search(r'<tr id="hub-tm351-2026j">.*?</tr>', page, re.S).group(0)


def test_comments_are_shown_to_both_sides_and_need_the_form_token(portal) -> None:  # noqa: ANN001
    app, service, repo, state, client_factory, _ = portal
    team = signed_in(client_factory, "mo3312")
    created = post_form(team, "/portal/requests/new", FORM, ROSTER, "submit", token(team, "/portal/requests/new"))
    rid = int(created.headers["location"].rsplit("/", 1)[-1])
    admin = signed_in(client_factory, "ua1001")
    assert admin.post(f"/portal/requests/{rid}/comment", data={"body": "forged"}).status_code == 403
    csrf = token(admin, f"/portal/requests/{rid}")
    assert admin.post(f"/portal/requests/{rid}/comment", data={"body": "Which rooms?", "csrf_token": csrf}).status_code == 303
    empty = admin.post(f"/portal/requests/{rid}/comment", data={"body": " ", "csrf_token": csrf})
    assert "an empty comment says nothing" in admin.get(empty.headers["location"]).text
    page = team.get(f"/portal/requests/{rid}").text
    assert "Which rooms?" in page and "forged" not in page
    trail = [(e.actor, e.action, e.allowed) for e in service.audit_trail(f"request:{rid}")]
    assert ("ua1001", "comment", False) in trail and ("ua1001", "comment", True) in trail


def test_the_timetable_field_becomes_the_presentations_timetable_and_a_bad_line_is_named(portal) -> None:  # noqa: ANN001
    app, service, repo, state, client_factory, _ = portal
    team = signed_in(client_factory, "mo3312")
    bad = FORM | {"timetable": "tue 19:00 90m 30%\nfunday 10:00 1h"}
    created = post_form(team, "/portal/requests/new", bad, ROSTER, "save", token(team, "/portal/requests/new"))
    page = team.get(created.headers["location"])
    box = re.search(r'<textarea id="f-timetable"[^>]*>', page.text).group(0)
    assert 'aria-invalid="true"' in box  # the schema's own message, beside the field
    error = re.search(r'<ul class="field-error" id="timetable-error" role="alert"><li>([^<]+)</li>', page.text).group(1)
    assert "timetable.weekly[1].weekday: must be" in error  # the second line, in validate's words
    rid = int(created.headers["location"].split("/")[-2])
    good = FORM | {"timetable": "tue 19:00 90m 30%\n2028-01-11 18:00 2h 50% TMA02 surgery"}
    post_form(team, f"/portal/requests/{rid}/edit", good, None, "save", _TOKEN.search(page.text).group(1))
    view = team.get(f"/portal/requests/{rid}")
    course_file = re.search(r'<pre id="course-file">(.*?)</pre>', view.text, re.S).group(1)
    assert "timetable:" in course_file and "weekday: tue" in course_file and "TMA02 surgery" in course_file
