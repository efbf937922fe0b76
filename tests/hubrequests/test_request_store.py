"""Requests in the database (SQLite and a real PostgreSQL): migrations, roles, review, the approval's git commit."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, select

from hubfleet.catalog import load_catalog
from hubfleet.requests.database import Database, migrate
from hubfleet.requests.gitwriter import CatalogRepo
from hubfleet.requests.records import AuditEntry, Base
from hubfleet.requests.workflow import Forbidden, Refused, RequestService
from hubfleet.testing.postgres import PostgresServer

from request_support import catalog_repo, git


# The database fixtures live here, not in a tests/hubrequests/conftest.py: that module would be imported as
# "conftest" too and shadow tests/conftest.py for the other files' `from conftest import ...`.
@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database test runs twice: on SQLite (the embedded default) and on the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'requests.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"t_{uuid.uuid4().hex[:12]}")


TODAY = dt.date(2026, 12, 3)
FORM = {"course": "TM351", "title": "Data management and analysis", "unit": "stem", "presentation": "2027J",
        "start": "2027-10-02", "end": "2028-06-08", "expected_students": "800",
        "image": "ghcr.io/example-university/tm351:2027J", "memory": "3G", "enrolment": "roster",
        "instructors": "mo3312", "tutors": "tw5521"}  # fmt: skip
ROSTER = "username,role\nst0001,student\nst0002,student\n"


def validate_output(repo: Path, files: dict[str, str]) -> list[str]:
    """What `hubfleet validate` prints for the catalog with these files written in, file names catalog-relative."""
    copy = repo.parent / "validate-copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns(".git"))
    for rel, text in files.items():
        (copy / rel).write_text(text)
    run = subprocess.run([sys.executable, "-m", "hubfleet.cli.main", "validate", "."], cwd=copy, capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert run.returncode == 2, run.stdout + run.stderr
    return [line.removeprefix("./") for line in (run.stdout + run.stderr).splitlines()]


def service(db_url: str, tmp_path: Path, commit_to: str = "main") -> tuple[RequestService, Path]:
    repo = catalog_repo(tmp_path, commit_to)
    return RequestService(Database(db_url), repo, CatalogRepo(repo), today=lambda: TODAY), repo


def test_migrations_build_the_models_schema_and_run_twice(db_url: str) -> None:
    migrate(db_url)
    migrate(db_url)  # idempotent: an upgraded database stays as it is
    db = Database(db_url)
    try:
        assert set(inspect(db.engine).get_table_names()) >= {"hub_requests", "reviews", "comments", "audit_log"}
        with db.engine.connect() as conn:
            drift = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert drift == [], f"the models and the migrations disagree: {drift}"
    finally:
        db.dispose()


def test_review_round_trip_commits_the_course_file(db_url: str, tmp_path: Path) -> None:
    svc, repo = service(db_url, tmp_path)
    team, admin, platform = svc.access("mo3312"), svc.access("ua1001"), svc.access("rk4521")
    assert "course team (TM351)" in team.role_names and admin.units == {"stem"} and platform.platform
    rid = svc.create(team, FORM | {"end": "2027-09-01"}, ROSTER)  # ends before it starts
    with pytest.raises(Refused) as bad:
        svc.move(team, rid, "submit")
    [shown] = bad.value.checked.field_errors["end"]
    assert shown.endswith("courses[TM351].presentations[2027J].end: end 2027-09-01 is not after start 2027-10-02; "
                          "fix one of the dates")
    assert shown in validate_output(repo, bad.value.checked.files)  # word for word what `hubfleet validate` says
    svc.edit(team, rid, FORM, None)
    svc.move(team, rid, "submit")
    with pytest.raises(Refused, match="say what should change"):
        svc.move(admin, rid, "request-changes")
    svc.move(admin, rid, "request-changes", "Please expect 900 students")
    svc.edit(team, rid, FORM | {"expected_students": "900"}, None)
    svc.move(team, rid, "submit")
    before = git(repo, "rev-list", "--count", "main")
    done = svc.move(platform, rid, "approve")
    assert int(git(repo, "rev-list", "--count", "main")) == int(before) + 1
    assert f"Hub request #{rid}" in git(repo, "log", "-1", "--format=%B", "main")
    assert set(git(repo, "show", "--name-only", "--format=", "main").split()) == {
        "courses/TM351.yaml", "enrolments/TM351-2027J.csv"}
    assert git(repo, "status", "--porcelain") == ""  # committed, not an untracked edit
    # Only the new presentation is added: the course team's comments and layout are kept, no line is rewritten.
    assert git(repo, "diff", "--numstat", "main~1", "main", "--", "courses/TM351.yaml").split()[:2] == ["16", "0"]
    pres = next(p for c in load_catalog(repo).catalog.courses if c.code == "TM351" for p in c.presentations
                if p.id == "2027J")  # fmt: skip
    assert (pres.expected_students, pres.start, str(pres.resources.memory)) == (900, dt.date(2027, 10, 2), "3G")
    assert done.state == "approved" and done.commit == git(repo, "rev-parse", "main")
    assert [r.decision for r in done.reviews] == ["request-changes", "approve"]
    assert svc.effective_state(done, svc.phases()) == "scheduled"


def test_course_team_cannot_see_others_or_approve_and_every_refusal_is_audited(db_url: str, tmp_path: Path) -> None:
    svc, repo = service(db_url, tmp_path)
    stem_team, arts_team = svc.access("mo3312"), svc.access("ef4410")  # TM351 (stem), A233 (arts)
    arts_admin, expired = svc.access("ua2002"), svc.access("ua1999")
    rid = svc.create(stem_team, FORM, ROSTER)
    svc.move(stem_team, rid, "submit")
    assert svc.visible(arts_team) == [] and svc.visible(arts_admin) == []
    attempts = [(arts_team, "view"), (arts_team, "approve"), (stem_team, "approve"), (arts_admin, "approve"),
                (expired, "approve"), (svc.access("st0001"), "view")]  # fmt: skip
    for who, action in attempts:
        with pytest.raises(Forbidden):
            svc.get(who, rid) if action == "view" else svc.move(who, rid, action)
    with pytest.raises(Forbidden):
        svc.create(arts_team, FORM | {"presentation": "2028J"}, None)  # not their course
    with svc.db.session() as s:
        refused = s.scalars(select(AuditEntry).where(AuditEntry.allowed.is_(False))).all()
        assert [(e.actor, e.action) for e in refused] == [
            ("ef4410", "view"), ("ef4410", "approve"), ("mo3312", "approve"), ("ua2002", "approve"),
            ("ua1999", "approve"), ("st0001", "view"), ("ef4410", "create-new")]
    assert svc.move(svc.access("ua1001"), rid, "approve").state == "approved"


def test_concurrent_approvals_of_one_request_commit_once(db_url: str, tmp_path: Path) -> None:
    svc, repo = service(db_url, tmp_path, commit_to="branch")
    team = svc.access("mo3312")
    rid = svc.create(team, FORM, ROSTER)
    svc.move(team, rid, "submit")
    reviewers = [svc.access("ua1001"), svc.access("rk4521")] * 2
    start, outcomes = threading.Barrier(len(reviewers)), []

    def approve(who) -> None:  # noqa: ANN001
        start.wait()
        try:
            outcomes.append(svc.move(who, rid, "approve").state)
        except Refused as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=approve, args=(r,)) for r in reviewers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("approved") == 1, outcomes
    assert git(repo, "rev-list", "--count", f"main..hub-request/{rid}") == "1"
    assert git(repo, "branch", "--list", "--format=%(refname:short)") == f"hub-request/{rid}\nmain"
    with svc.db.session() as s:
        assert len(s.scalars(select(AuditEntry).where(AuditEntry.action == "approve")).all()) == 1


def test_a_request_taking_an_existing_hub_name_is_refused_with_the_validators_words(db_url: str, tmp_path: Path) -> None:
    svc, repo = service(db_url, tmp_path)
    admin = svc.access("ua1001")
    # "tm351" is another course code whose hub would be tm351-2026j, the hub TM351 2026J already has.
    rid = svc.create(admin, FORM | {"course": "tm351", "presentation": "2026J", "unit": "stem"}, None)
    with pytest.raises(Refused) as refused:
        svc.move(admin, rid, "submit")
    text = "\n".join(sum(refused.value.checked.field_errors.values(), refused.value.checked.errors))
    assert "hub name 'tm351-2026j' is already used by" in text


def test_a_change_request_goes_through_review_and_one_that_would_orphan_files_is_refused(tmp_path: Path) -> None:
    from hubfleet.plan import FleetState, plan

    repo = catalog_repo(tmp_path)
    running = FleetState.of(plan(load_catalog(repo).catalog, TODAY))  # every presentation of today holds files
    svc = RequestService(Database(f"sqlite:///{tmp_path / 'r.db'}"), repo, CatalogRepo(repo),
                         observe=lambda: running, today=lambda: TODAY)  # fmt: skip
    team, admin = svc.access("mo3312"), svc.access("ua1001")
    from hubfleet.requests.courses import existing_presentation

    current = existing_presentation(repo, "TM351", "2026J")
    assert (current["start"], current["image"]) == ("2026-10-03", "ghcr.io/example-university/tm351:2026J")
    moved = svc.create(team, current | {"storage_layout": "per-presentation"}, None, kind="change")
    with pytest.raises(Refused) as refused:
        svc.move(team, moved, "submit")
    assert refused.value.checked.errors == [
        "refused: TM351-2026J: changing storage from personal-subfolder (home/{username}) to per-presentation "
        "(presentations/TM351-2026J/{username}) would leave students' files behind; keep the layout for this "
        "presentation and change it for the next one."]
    more = svc.create(team, current | {"memory": "4G"}, None, kind="change")
    svc.move(team, more, "submit")
    svc.move(admin, more, "approve")
    pres = next(p for c in load_catalog(repo).catalog.courses if c.code == "TM351" for p in c.presentations
                if p.id == "2026J")  # fmt: skip
    assert str(pres.resources.memory) == "4G" and pres.enrolment[0].csv == "enrolments/TM351-2026J.csv"
    assert pres.seed is None and pres.team.tutors == ["gb2290", "an6614"]  # the rest of the presentation is kept
    assert git(repo, "show", "--name-only", "--format=", "main").split() == ["courses/TM351.yaml"]


def test_rejected_and_withdrawn_requests_leave_the_catalog_untouched(tmp_path: Path) -> None:
    svc, repo = service(f"sqlite:///{tmp_path / 'r.db'}", tmp_path)
    team, admin = svc.access("mo3312"), svc.access("ua1001")
    head = git(repo, "rev-parse", "main")
    rejected = svc.create(team, FORM, ROSTER)
    svc.move(team, rejected, "submit")
    svc.move(admin, rejected, "reject", "No budget this year")
    withdrawn = svc.create(team, FORM | {"presentation": "2028J", "start": "2028-10-07", "end": "2029-06-07"}, None)
    svc.move(team, withdrawn, "submit")
    svc.move(team, withdrawn, "withdraw")
    with pytest.raises(Refused, match="cannot be approved now"):
        svc.move(admin, rejected, "approve")
    assert git(repo, "rev-parse", "main") == head and git(repo, "status", "--porcelain") == ""
    assert git(repo, "branch", "--list", "--format=%(refname:short)") == "main"


def test_approval_into_a_folder_that_is_no_git_repository_is_refused_and_stays_submitted(tmp_path: Path) -> None:
    svc, repo = service(f"sqlite:///{tmp_path / 'r.db'}", tmp_path)
    shutil.rmtree(repo / ".git")
    team = svc.access("mo3312")
    rid = svc.create(team, FORM, ROSTER)
    svc.move(team, rid, "submit")
    with pytest.raises(Refused, match="could not commit to the catalog repository: git rev-parse"):
        svc.move(svc.access("ua1001"), rid, "approve")
    assert svc.get(team, rid).state == "submitted" and not (repo / "enrolments" / "TM351-2027J.csv").exists()


def test_a_commit_that_fails_in_the_checkout_leaves_no_edit_behind(tmp_path: Path) -> None:
    svc, repo = service(f"sqlite:///{tmp_path / 'r.db'}", tmp_path)
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'catalog policy: no commits today' >&2\nexit 1\n")
    hook.chmod(0o755)
    team = svc.access("mo3312")
    rid = svc.create(team, FORM, ROSTER)
    svc.move(team, rid, "submit")
    with pytest.raises(Refused, match="no commits today"):
        svc.move(svc.access("rk4521"), rid, "approve")
    assert git(repo, "status", "--porcelain") == "" and svc.get(team, rid).state == "submitted"


def test_after_its_dates_a_request_shows_what_the_archive_ledger_says(tmp_path: Path) -> None:
    from hubfleet.lifecycle.ledger import Ledger

    repo = catalog_repo(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    svc = RequestService(Database(f"sqlite:///{tmp_path / 'r.db'}"), repo, CatalogRepo(repo),
                         today=lambda: TODAY, state_dir=state)  # fmt: skip
    team = svc.access("mo3312")
    # A presentation that ended in June 2025: archived by its dates (since 2025-07-12), purged since 2026-07-12.
    rid = svc.create(team, FORM | {"presentation": "2024J", "start": "2024-10-05", "end": "2025-06-11"}, None)
    svc.move(team, rid, "submit")
    done = svc.move(svc.access("ua1001"), rid, "approve")
    assert svc.effective_state(done, svc.phases()) == "purged"  # no ledger at all: the dates are all there is
    with Ledger(state) as ledger:
        ledger.record("TM351-2024J", "st0001", "file:///a/st0001.tar.gz", "0" * 64, 1)
    assert svc.effective_state(done, svc.phases()) == "archive-due"  # its archive is not verified
    with Ledger(state) as ledger:
        ledger.mark_verified("TM351-2024J", "st0001", "0" * 64)
        ledger.mark_presentation_archived("TM351-2024J")
    assert svc.effective_state(done, svc.phases()) == "archived"  # archived, not purged yet
