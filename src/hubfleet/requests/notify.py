"""Email on every state change of a request, to the requester and the approvers, with a link to the request.

Plain SMTP with the standard library (``smtplib``): the fleet's mail relay is configured in the request settings
(host, port, sender, and the domain that turns a username into an address). A relay that is down must not undo a
review, so a failed send is logged and reported, never raised into the workflow.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage

__all__ = ["Mailer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Mailer:
    host: str
    port: int
    sender: str
    mail_domain: str  # username -> username@mail_domain
    base_url: str  # e.g. http://portal.localhost:8000 ; links are {base_url}/portal/requests/{id}

    def address(self, username: str) -> str:
        return username if "@" in username else f"{username}@{self.mail_domain}"

    def send(self, to: list[str], subject: str, body: str) -> bool:
        recipients = sorted({self.address(u) for u in to if u})
        if not recipients:
            return True
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = self.sender, ", ".join(recipients), subject
        msg.set_content(body)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=10) as smtp:
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("could not mail %s about %r: %s", recipients, subject, exc)
            return False
        return True

    def link(self, request_id: int) -> str:
        return f"{self.base_url.rstrip('/')}/portal/requests/{request_id}"
