"""Every state change of a request mails the requester and the approvers, through a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import datetime as dt
import email
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from hubfleet.requests.database import Database
from hubfleet.requests.gitwriter import CatalogRepo
from hubfleet.requests.notify import Mailer
from hubfleet.requests.workflow import RequestService
from request_support import catalog_repo

FORM = {"course": "TM351", "title": "Data management and analysis", "unit": "stem", "presentation": "2027J",
        "start": "2027-10-02", "end": "2028-06-08", "expected_students": "800", "enrolment": "none"}  # fmt: skip


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.Message]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802 - aiosmtpd's hook name
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def test_each_state_change_mails_requester_and_approvers_with_a_link(smtp, tmp_path: Path) -> None:  # noqa: ANN001
    inbox, port = smtp
    repo = catalog_repo(tmp_path)
    mailer = Mailer("127.0.0.1", port, "hubs@example.ac.uk", "example.ac.uk", "http://portal.localhost:8000")
    svc = RequestService(Database(f"sqlite:///{tmp_path / 'r.db'}"), repo, CatalogRepo(repo), mailer,
                         today=lambda: dt.date(2026, 12, 3))  # fmt: skip
    team = svc.access("mo3312")
    rid = svc.create(team, FORM, None)
    svc.move(team, rid, "submit")
    svc.move(svc.access("ua1001"), rid, "request-changes", "Say which image")
    svc.move(team, rid, "submit")
    svc.move(svc.access("rk4521"), rid, "approve")
    # The stem unit admin whose privilege ended (ua1999, until 2026-01-31) is not mailed.
    everyone = sorted(["mo3312@example.ac.uk", "ua1001@example.ac.uk", "platform-admin@example.ac.uk",
                       "rk4521@example.ac.uk"])  # fmt: skip
    assert [sorted(to) for to, _ in inbox.messages] == [everyone] * 4
    subjects = [m["Subject"] for _, m in inbox.messages]
    assert subjects == [f"[hub request #{rid}] TM351 2027J: {s}" for s in
                        ("Submitted, awaiting review", "Changes requested", "Submitted, awaiting review", "Approved")]
    changes = inbox.messages[1][1].get_payload()
    assert "Reason: Say which image" in changes and f"http://portal.localhost:8000/portal/requests/{rid}" in changes
    assert "Catalog commit" in inbox.messages[3][1].get_payload()
