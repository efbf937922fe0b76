"""Sign-in throttling that cannot be dodged or turned on a classmate (issue 16 item 6), through the real front door.

Seen before the fix: 40 failed sign-ins, each with a made-up ``X-Forwarded-For``, were all answered 401 (the portal
believed the header, so every attempt came from a "new client"); and five failures by anyone locked the account
for 15 minutes, so a classmate could lock someone out before an exam.

Real front-door proxy (node CHP) and portal process; no hubs needed. Clients on the loopback connect from different
source addresses (all of 127/8 is the loopback), which is what the front door sees. The sprayer uses 127.0.0.1, the
front door's own address, as every local client did when the header was believed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import LoopbackTransport, front_door_only, portal_sign_in

from hubfleet.backends.local import process
from hubfleet.backends.local.frontdoor import FrontDoor
from hubfleet.backends.local.members import hash_password

PASSWORDS = {"alice": "alice-exam-pw", "bob": "bob-pw"}


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FrontDoor]:
    state = tmp_path_factory.mktemp("throttle") / "state"
    state.mkdir()
    book = state / "passwords.json"
    book.write_text(json.dumps({u: hash_password(p) for u, p in PASSWORDS.items()}))
    book.chmod(0o600)
    yield from front_door_only(state)


def client_from(door: FrontDoor, address: str) -> httpx.Client:
    return httpx.Client(base_url=door.url, transport=LoopbackTransport(local_address=address), timeout=30)


def test_made_up_forwarded_for_headers_do_not_dodge_the_throttle(door: FrontDoor) -> None:
    with client_from(door, "127.0.0.1") as sprayer:
        statuses = []
        for i in range(40):
            made_up = {"X-Forwarded-For": f"198.51.100.{i}"}
            statuses.append(portal_sign_in(sprayer, f"student{i:02d}", "Spring2026!", headers=made_up).status_code)
    assert set(statuses) <= {401, 429}
    assert 429 in statuses, statuses  # the spray from one machine was slowed down, whatever the headers said


def test_an_attackers_failures_do_not_lock_the_owner_out(door: FrontDoor) -> None:
    with client_from(door, "127.0.0.2") as attacker:
        statuses = [portal_sign_in(attacker, "alice", f"guess{i}", headers={"X-Forwarded-For": f"203.0.113.{i}"})
                    .status_code for i in range(40)]  # fmt: skip
        assert 429 in statuses, statuses
        refused = portal_sign_in(attacker, "alice", PASSWORDS["alice"])
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    # The owner, on their own machine, with the right password, right after: signed in.
    with client_from(door, "127.0.0.4") as owner:
        signed_in = portal_sign_in(owner, "alice", PASSWORDS["alice"])
        assert signed_in.status_code == 303, signed_in.text[:300]
        assert 'id="portal-user">alice<' in owner.get("/portal/").text


def test_the_portal_is_reachable_only_through_the_front_door(door: FrontDoor) -> None:
    record = process.read_alive(door.portal_pidfile)
    assert record is not None
    portal = psutil.Process(record.pid)
    listening = [c for c in portal.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening == []  # no TCP port a local process could post made-up headers to
    sockets = [c for c in portal.net_connections(kind="unix") if c.laddr]
    assert sockets, "the portal listens on a unix socket"
    folder = Path(sockets[0].laddr).parent
    assert folder.stat().st_mode & 0o077 == 0  # only the front door's account can connect
