"""The bulk enrolment endpoint inside a real JupyterHub 6 (``hubfleet.enrol.endpoint``), against the REST path.

Two real hubs (hub + node proxy): one offers the endpoint (registered as the local hub config does), one is a
plain hub, so `enrol sync` falls back to the REST API there. Same roster into both: the same users, groups,
roles and spawner rows must come out. Then the endpoint's guarantees: a crash (SIGKILL of the hub) half-way
through a request leaves none of it; a student's token is refused.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import wait_until
from hub_fixture import RealHub

from hubfleet.enrol.endpoint import HUBFLEET_ENROL_FAULT, HUBFLEET_ENROL_SCOPE
from hubfleet.enrol.membership import HubMembers
from hubfleet.enrol.sync import BULK, REST, run_sync
from hubfleet.hubapi.client import HubAPIError

pytestmark = pytest.mark.slow

STUDENTS = [f"st{i:04d}" for i in range(300)]
TUTORS = ["tutor1", "tutor2"]
GROUPS = {"c101-2026j": set(STUDENTS), "c101-2026j-tutors": set(TUTORS), "c101-2026j-instructors": {"prof"}}

_OFFER = f"""
from hubfleet.enrol.endpoint import register
register(c)
c.JupyterHub.load_roles[0]["scopes"].append({HUBFLEET_ENROL_SCOPE!r})
"""


def offering(root: Path, name: str) -> RealHub:
    hub = RealHub.create(root, name=name)
    with hub.config_path.open("a") as cfg:
        cfg.write(_OFFER)
    return hub


@pytest.fixture(scope="module")
def hubs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RealHub, RealHub]]:
    root = tmp_path_factory.mktemp("bulk")
    bulk, rest = offering(root, "bulk"), RealHub.create(root, name="rest")
    started: list[RealHub] = []
    try:
        for hub in (bulk, rest):
            hub.start()
            started.append(hub)
        yield bulk, rest
    finally:
        for hub in started:
            hub.stop()


def sync(hub: RealHub, groups: dict[str, set[str]]):
    everyone = set().union(*groups.values())
    members = HubMembers(hub=hub.name, groups=groups, roles={u: {"C101-2026J": "student"} for u in everyone})
    [result] = run_sync({hub.name: (hub.public_url, hub.api_token)}, {hub.name: members}, {hub.name: set(groups)})
    assert result.error is None, result.error
    return result


def end_state(hub: RealHub) -> dict:
    """Users (name, admin, roles, groups, servers), groups (members, roles), and the spawner and role rows."""
    with hub.client() as client:
        users = {u["name"]: (u["admin"], sorted(u["roles"]), sorted(u["groups"]), u.get("servers") or {}, u["kind"])
                 for u in client.users()}  # fmt: skip
        groups = {g["name"]: (sorted(g["users"]), sorted(g.get("roles") or [])) for g in client.groups()}
    db = sqlite3.connect(hub.state_dir / "jupyterhub.sqlite")
    try:
        spawners = sorted(db.execute("SELECT users.name, spawners.name FROM spawners JOIN users ON users.id = "
                                     "spawners.user_id").fetchall())  # fmt: skip
        role_rows = sorted(db.execute("SELECT users.name, roles.name FROM user_role_map JOIN users ON users.id = "
                                      "user_role_map.user_id JOIN roles ON roles.id = user_role_map.role_id").fetchall())
    finally:
        db.close()
    return {"users": users, "groups": groups, "spawners": spawners, "roles": role_rows}


def test_bulk_endpoint_and_rest_api_reach_the_same_end_state(hubs):
    bulk, rest = hubs
    first = sync(bulk, GROUPS), sync(rest, GROUPS)
    assert [r.method for r in first] == [BULK, REST]  # and the table says which (enrol_cmds.print_changes)
    assert first[0].writes == 1 and first[1].writes > 1  # one request for everything vs the REST path's several
    assert all(len(r.create_users) == len(STUDENTS) + 3 for r in first)
    state = end_state(bulk)
    assert state == end_state(rest)
    assert len(state["users"]) == len(STUDENTS) + 3 and state["users"]["st0007"][1] == ["user"]
    assert ("st0007", "") in state["spawners"] and ("st0007", "user") in state["roles"]
    # Idempotent: the same roster again writes nothing, on both paths.
    assert [sync(h, GROUPS).writes for h in hubs] == [0, 0]
    # A change: 10 leave, 10 join (one request and one transaction on the bulk path); the same end state again.
    changed = {**GROUPS, "c101-2026j": set(STUDENTS[10:]) | {f"new{i}" for i in range(10)}}
    assert [r.method for r in (sync(bulk, changed), sync(rest, changed))] == [BULK, REST]
    assert end_state(bulk) == end_state(rest)
    # What a sync compares with comes in the endpoint's one answer (version 2): the memberships the REST API lists.
    with bulk.client() as client:
        listed = client.bulk_enrol_info()["groups"]
    assert listed == {name: members for name, (members, _roles) in end_state(bulk)["groups"].items()}
    assert "new3" in listed["c101-2026j"] and "st0003" not in listed["c101-2026j"]


def test_the_endpoint_itself_is_idempotent_and_refuses_names_the_authenticator_refuses(hubs):
    bulk, _ = hubs
    with bulk.client() as client:
        body = (["idem1", "idem2"], {"idem-group": ["idem1", "idem2"]})
        assert client.bulk_enrol(*body)["created"] == ["idem1", "idem2"]
        again = client.bulk_enrol(*body)
        assert again == {"created": [], "groups_created": [], "added": {}, "removed": {}}
        # Leavers go in the same kind of request, idempotently too.
        assert client.bulk_enrol([], {}, {"idem-group": ["idem2"]})["removed"] == {"idem-group": 1}
        assert client.bulk_enrol([], {}, {"idem-group": ["idem2"]})["removed"] == {}
        assert client.group("idem-group")["users"] == ["idem1"] and client.user("idem2") is not None
        # A group with nobody in it is still a group: the listing a sync compares with has it, empty.
        assert client.bulk_enrol([], {"idem-empty": []})["groups_created"] == ["idem-empty"]
        listed = client.bulk_enrol_info()["groups"]
        assert (listed["idem-group"], listed["idem-empty"]) == (["idem1"], [])
        # JupyterHub's default validate_username refuses a name with a slash (as POST /users does): the whole
        # request is refused and nothing of it is written.
        with pytest.raises(HubAPIError) as refused:
            client.bulk_enrol(["fine-name", "bad/name"], {"idem-group": ["fine-name"]})
        assert refused.value.status == 400 and "bad/name" in refused.value.message
        assert client.user("fine-name") is None
        assert "fine-name" not in client.group("idem-group")["users"]


def test_a_student_token_cannot_call_the_endpoint(hubs):
    bulk, _ = hubs
    with bulk.client() as client:
        client.create_users(["eve"])
    browser = bulk.login("eve")
    xsrf = browser.cookies.get("_xsrf", "")
    made = browser.post(f"{bulk.base_path}hub/api/users/eve/tokens", json={"note": "mine"},
                        headers={"X-XSRFToken": xsrf})  # fmt: skip
    assert made.status_code == 201, made.text
    token = {"Authorization": f"token {made.json()['token']}"}
    url = f"{bulk.public_url}hub/api/hubfleet/enrol"
    assert httpx.get(url, headers=token).status_code == 403
    attempt = httpx.post(url, headers=token, json={"users": ["eve-friend"], "groups": {"c101-2026j": ["eve"]}})
    assert attempt.status_code == 403
    with bulk.client() as client:
        assert client.user("eve-friend") is None and "eve" not in client.group("c101-2026j")["users"]


def test_a_hub_killed_half_way_through_a_request_keeps_none_of_it(hubs):
    bulk, _ = hubs
    names = [f"crash{i:04d}" for i in range(500)]
    with bulk.client() as client:
        client.bulk_enrol(["before"], {"kept-group": ["before"]})
    bulk.stop()
    os.environ[HUBFLEET_ENROL_FAULT] = "kill"  # the hub inherits it: SIGKILL after every row is flushed, pre-commit
    try:
        bulk.start()
    finally:
        del os.environ[HUBFLEET_ENROL_FAULT]
    # The proxy answers 503 (or the connection drops) when the hub dies under the request. A generous timeout: the
    # request must end by the kill, not by the client giving up on a loaded machine.
    with bulk.client(timeout=180) as client, pytest.raises((httpx.HTTPError, HubAPIError)) as failed:
        client.bulk_enrol(names, {"crash-group": names, "kept-group": names[:5]})
    # It really was killed mid-request. The kernel closes a dying process's sockets (so the proxy answers) a moment
    # before the process is gone, hence a bounded wait rather than a look at this very instant.
    wait_until(lambda: bulk.records()["hub"] is None, 30, f"hub killed by the injected fault (the client saw {failed.value!r})")
    assert bulk.services(), "the killed hub's idle culler should have outlived it (services have their own session)"
    bulk.stop()  # reaps what is left (its proxy, its services)
    assert bulk.services() == []
    bulk.start()
    with bulk.client() as client:
        assert not any(u["name"].startswith("crash") for u in client.users())
        assert client.group("crash-group") is None
        assert client.group("kept-group")["users"] == ["before"]
        # And the same request, uninterrupted, writes all of it.
        result = client.bulk_enrol(names, {"crash-group": names})
        assert len(result["created"]) == 500 and len(client.group("crash-group")["users"]) == 500
