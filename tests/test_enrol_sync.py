"""Enrolment sync against a real JupyterHub: bulk, incremental, idempotent, and never destructive."""

from __future__ import annotations

import datetime as dt
import socket
import textwrap
from pathlib import Path

import pytest

from hub_fixture import real_hub  # noqa: F401  (module-scoped real hub)
from hubfleet.catalog import load_catalog
from hubfleet.enrol.ldap_source import LdapDirectory
from hubfleet.enrol.membership import SourceError, managed_groups, resolve
from hubfleet.enrol.sync import run_sync
from hubfleet.plan import plan

TODAY = dt.date(2026, 11, 29)


def _catalog(root: Path, students: list[str], extra_source: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "tm351.csv").write_text("username,role\n" + "".join(f"{s},student\n" for s in students) + "tina,tutor\n")
    (root / "fleet.yaml").write_text(
        textwrap.dedent(
            f"""\
            fleet:
              name: sync-test
              topology: per-course
            courses:
              - code: TEST
                title: Sync test
                team: {{instructors: [ivan]}}
                presentations:
                  - id: 2026J
                    start: 2026-10-01
                    end: 2027-06-01
                    enrolment:
                      - csv: tm351.csv
                      - users: [walter]
                        role: student
            {extra_source}
            """
        )
    )
    return root


def _sync(hub, catalog: Path, **kw):
    loaded = load_catalog(catalog)
    spec = plan(loaded.catalog, TODAY)
    members = resolve(loaded, spec)
    endpoints = {"test": (hub.public_url, hub.api_token)}
    return run_sync(endpoints, members, managed_groups(loaded), **kw)[0]


def test_first_sync_creates_users_and_groups_then_second_makes_no_writes(real_hub, tmp_path):
    catalog = _catalog(tmp_path / "cat", ["amy", "ben", "cat"])
    first = _sync(real_hub, catalog)
    assert first.error is None
    assert sorted(first.create_users) == ["amy", "ben", "cat", "ivan", "tina", "walter"]
    client = real_hub.client()
    groups = {g["name"]: set(g["users"]) for g in client.groups()}
    assert groups["test-2026j"] == {"amy", "ben", "cat", "walter"}
    assert groups["test-2026j-tutors"] == {"tina"}
    assert groups["test-2026j-instructors"] == {"ivan"}

    second = _sync(real_hub, catalog)
    assert second.empty and second.writes == 0


def test_student_leaving_loses_group_but_keeps_user(real_hub, tmp_path):
    catalog = _catalog(tmp_path / "cat", ["amy", "ben", "cat"])
    _sync(real_hub, catalog)
    catalog = _catalog(tmp_path / "cat", ["amy", "cat"])
    changes = _sync(real_hub, catalog)
    assert changes.counts()["removed from groups"] == 1
    client = real_hub.client()
    assert "ben" not in {u for g in client.groups() if g["name"] == "test-2026j" for u in g["users"]}
    assert client.user("ben") is not None, "leaving a presentation must never delete the user (or their files)"


def test_dry_run_reports_without_writing(real_hub, tmp_path):
    catalog = _catalog(tmp_path / "cat", ["amy", "cat", "dan"])
    before = {g["name"]: set(g["users"]) for g in real_hub.client().groups()}
    changes = _sync(real_hub, catalog, dry_run=True)
    assert "dan" in changes.create_users and changes.writes == 0
    assert {g["name"]: set(g["users"]) for g in real_hub.client().groups()} == before


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_ldap_changes_nothing(real_hub, tmp_path):
    ldap = """\
              directory: {url: "ldap://127.0.0.1:PORT", base_dn: "dc=example,dc=ac,dc=uk"}
    """.replace("PORT", str(_closed_port()))
    catalog = _catalog(tmp_path / "cat", ["amy"])
    text = (catalog / "fleet.yaml").read_text().replace("  topology: per-course\n", "  topology: per-course\n" + textwrap.dedent(ldap).replace("directory", "  directory", 1))
    text = text.replace("      - users: [walter]", "      - ldap: {group: 'cn=test,ou=groups,dc=example,dc=ac,dc=uk'}\n          - users: [walter]")
    (catalog / "fleet.yaml").write_text(text)
    loaded = load_catalog(catalog)
    before = {g["name"]: set(g["users"]) for g in real_hub.client().groups()}
    with pytest.raises(SourceError, match="nothing was changed"):
        resolve(loaded, plan(loaded.catalog, TODAY))
    assert {g["name"]: set(g["users"]) for g in real_hub.client().groups()} == before


def test_ended_presentation_groups_are_removed(real_hub, tmp_path):
    catalog = _catalog(tmp_path / "cat", ["amy"])
    _sync(real_hub, catalog)
    loaded = load_catalog(catalog)
    spec = plan(loaded.catalog, dt.date(2027, 12, 1))  # long after the end: archived, hub not wanted
    assert not spec.hubs
    from hubfleet.enrol.membership import HubMembers

    changes = run_sync(
        {"test": (real_hub.public_url, real_hub.api_token)},
        {"test": HubMembers(hub="test")},
        managed_groups(loaded),
    )[0]
    assert {g.group for g in changes.groups if g.delete} == {"test-2026j", "test-2026j-tutors", "test-2026j-instructors"}
    names = {g["name"] for g in real_hub.client().groups()}
    assert not names & {"test-2026j", "test-2026j-tutors", "test-2026j-instructors"}
    assert real_hub.client().user("amy") is not None


def test_ldap_groups_sync_from_a_real_slapd_and_an_outage_changes_nothing(real_hub, tmp_path, monkeypatch):
    from ldap_server import SERVICE_DN, SERVICE_PASSWORD, TM351_GROUP, TM351_MEMBERS, TM351_TUTORS, TM351_TUTORS_GROUP, SlapdServer

    if not SlapdServer.available():
        pytest.skip("slapd is not installed: apt-get install -y slapd ldap-utils")
    monkeypatch.setenv("HUBFLEET_TEST_LDAP_PASSWORD", SERVICE_PASSWORD)
    with SlapdServer(tmp_path / "ldap") as server:
        root = tmp_path / "cat"
        root.mkdir()
        (root / "fleet.yaml").write_text(
            textwrap.dedent(
                f"""\
                fleet:
                  name: ldap-test
                  topology: per-course
                  directory:
                    url: {server.url}
                    base_dn: {server.base_dn}
                    bind_dn: {SERVICE_DN}
                    password_env: HUBFLEET_TEST_LDAP_PASSWORD
                courses:
                  - code: TEST
                    title: LDAP test
                    presentations:
                      - id: 2026J
                        start: 2026-10-01
                        end: 2027-06-01
                        enrolment:
                          - ldap: {{group: "{TM351_GROUP}"}}
                          - ldap: {{group: "{TM351_TUTORS_GROUP}"}}
                            role: tutor
                """
            )
        )
        changes = _sync(real_hub, root)
        assert changes.error is None
        groups = {g["name"]: set(g["users"]) for g in real_hub.client().groups()}
        assert groups["test-2026j"] == TM351_MEMBERS
        assert groups["test-2026j-tutors"] == TM351_TUTORS
        assert _sync(real_hub, root).writes == 0
    # slapd is gone now: the sync must refuse before writing, not read it as "everyone left".
    loaded = load_catalog(root)
    with pytest.raises(SourceError):
        resolve(loaded, plan(loaded.catalog, TODAY))
    assert {g["name"]: set(g["users"]) for g in real_hub.client().groups()} == groups
