"""The life of a hub request: who may move it where, the audit log, the approval that commits to git.

States kept in the database::

    draft -> submitted -> changes-requested -> submitted -> approved | rejected      (withdrawn: by the requester)

After approval the request's state is *read*, not stored: once its course file is in the catalog the fleet runs,
it is the presentation's phase from the planner (scheduled, provisioned, open, read-only, archived, purged); on a
request branch not yet merged it stays "approved". A change request (new dates, more memory, a newer image) is a
request of kind ``change`` for a presentation already in the catalog and takes the same path.

Every action through the service is checked against ``roles.Access``; a refused one raises ``Forbidden`` (the
pages answer 403) *after* writing the refusal to the audit log in a transaction of its own, so it is recorded even
though nothing else happens. Approval is a conditional UPDATE (``WHERE id = ? AND version = ? AND state =
'submitted'``) as the first statement of its transaction: PostgreSQL locks the row, SQLite the database, so of two
concurrent approvals one updates a row and commits, the other updates none and is told it was already decided;
the git commit happens inside the winner's transaction, so a failed commit leaves the request submitted.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from hubfleet.catalog import LoadedCatalog, load_catalog
from hubfleet.catalog.naming import presentation_key
from hubfleet.lifecycle.ledger import DEFAULT_NAME as LEDGER_NAME
from hubfleet.lifecycle.ledger import Ledger
from hubfleet.plan.spec import timeline
from hubfleet.requests.courses import FORM_FIELDS, Checked, ObserveFn, check_request
from hubfleet.requests.database import Database
from hubfleet.requests.gitwriter import CatalogRepo, GitError
from hubfleet.requests.notify import Mailer
from hubfleet.requests.records import AuditEntry, Comment, HubRequest, Review, utcnow
from hubfleet.requests.roles import Access, access_for

__all__ = ["EDITABLE", "Forbidden", "Refused", "RequestService", "STATE_LABEL"]

EDITABLE = ("draft", "changes-requested")
STATE_LABEL = {
    "draft": "Draft", "submitted": "Submitted, awaiting review", "changes-requested": "Changes requested",
    "approved": "Approved", "rejected": "Rejected", "withdrawn": "Withdrawn", "scheduled": "Scheduled",
    "provisioned": "Provisioned (staff only)", "open": "Open", "read-only": "Read-only", "archived": "Archived",
    "purged": "Purged", "archive-due": "Ended, archive not done yet",
}
# action -> (states it applies to, state it leads to, who: "requester" | "reviewer")
_MOVES = {
    "submit": (("draft", "changes-requested"), "submitted", "requester"),
    "withdraw": (("draft", "submitted", "changes-requested"), "withdrawn", "requester"),
    "request-changes": (("submitted",), "changes-requested", "reviewer"),
    "reject": (("submitted",), "rejected", "reviewer"),
    "approve": (("submitted",), "approved", "reviewer"),
}


class Forbidden(Exception):
    """Not this user's to do (403); already in the audit log."""


class Refused(Exception):
    """Allowed in principle but not now: wrong state, invalid course file, already decided (409/400)."""

    def __init__(self, message: str, checked: Checked | None = None) -> None:
        super().__init__(message)
        self.checked = checked


@dataclass
class RequestService:
    db: Database
    catalog_dir: Path  # the folder catalog the fleet runs (a checkout of the catalog repository, or inside one)
    repo: CatalogRepo
    mailer: Mailer | None = None
    observe: ObserveFn | None = None  # the fleet's observed state, for the planner's storage guard
    today: Callable[[], dt.date] = dt.date.today
    state_dir: Path | None = None  # the local fleet's state dir, whose archive ledger confirms archived/purged

    # -- who ------------------------------------------------------------------------------------------------------

    def __post_init__(self) -> None:
        self._cache: tuple[tuple, LoadedCatalog] | None = None
        self._checked = 0.0  # when the cached catalog's files were last compared (monotonic)

    def _signature(self, rosters: Any) -> tuple:
        root = Path(self.catalog_dir)
        files = [root / "fleet.yaml", *sorted((root / "courses").glob("*.y*ml")), *(root / r for r in rosters)]
        out = []
        for f in files:
            try:
                st = f.stat()
            except OSError:
                out.append((str(f), None))
            else:
                out.append((str(f), st.st_mtime_ns, st.st_size))
        return tuple(out)

    def loaded(self) -> LoadedCatalog:
        """The catalog as the fleet runs it, loaded again only when one of its files changed (a dashboard of 500
        hubs must not re-read 500 course files and their rosters on every page)."""
        now = time.monotonic()
        if self._cache is not None:
            if now - self._checked < 1.0:  # one page asks several times: compare the files at most once a second
                return self._cache[1]
            if self._signature(self._cache[1].rosters) == self._cache[0]:
                self._checked = now
                return self._cache[1]
        loaded = load_catalog(self.catalog_dir)
        self._cache, self._checked = (self._signature(loaded.rosters), loaded), now
        return loaded

    def access(self, user: str | None) -> Access:
        return access_for(self.loaded().catalog, user, self.today())

    def audit(self, actor: str, action: str, target: str, allowed: bool, detail: str = "") -> None:
        with self.db.session() as s:
            s.add(AuditEntry(actor=actor or "(anonymous)", action=action, target=target, allowed=allowed,
                             detail=detail))  # fmt: skip

    def deny(self, actor: str, action: str, target: str, detail: str) -> Forbidden:
        self.audit(actor, action, target, False, detail)
        return Forbidden(detail)

    # -- reading ----------------------------------------------------------------------------------------------------

    def visible(self, access: Access) -> list[HubRequest]:
        with self.db.session() as s:
            rows = s.scalars(select(HubRequest).order_by(HubRequest.id.desc())).all()
            return [r for r in rows if r.requester == access.user or access.sees(r.course, r.unit)]

    def get(self, access: Access, request_id: int, action: str = "view") -> HubRequest:
        with self.db.session() as s:
            req = s.get(HubRequest, request_id)
            if req is not None:
                _ = req.reviews, req.comments  # loaded while the session is open
        if req is None or not (req.requester == access.user or access.sees(req.course, req.unit)):
            # The same answer for "not yours" and "does not exist": ids are not a way to probe other units.
            raise self.deny(access.user, action, f"request:{request_id}", "not a request this user may see")
        return req

    def audit_trail(self, target_prefix: str, limit: int = 200) -> list[AuditEntry]:
        with self.db.session() as s:
            q = select(AuditEntry).where(AuditEntry.target.like(f"{target_prefix}%")).order_by(AuditEntry.id.desc())
            return list(s.scalars(q.limit(limit)))

    def effective_state(self, req: HubRequest, phases: dict[tuple[str, str], str]) -> str:
        """The state to show: the database's, or once approved and in the running catalog, the planner's phase."""
        if req.state == "approved" and (req.course, req.presentation) in phases:
            return phases[(req.course, req.presentation)]
        return req.state

    def phases(self) -> dict[tuple[str, str], str]:
        catalog, today = self.loaded().catalog, self.today()
        phases = {(c.code, p.id): timeline(p.start, p.end, catalog.fleet.lifecycle).phase(today).value
                  for c in catalog.courses for p in c.presentations}  # fmt: skip
        retired = {k for k, v in phases.items() if v in ("archived", "purged")}
        ledger_file = self.state_dir / LEDGER_NAME if self.state_dir else None
        if retired and ledger_file is not None and ledger_file.exists():
            # The dates say archived or purged; the ledger says whether it happened. Until it has, the request
            # shows that its archive is still due (the dashboard lists the problem).
            with Ledger(ledger_file) as ledger:
                for course, pres in retired:
                    archived, purged = ledger.presentation_state(presentation_key(course, pres))
                    if not archived:
                        phases[(course, pres)] = "archive-due"
                    elif phases[(course, pres)] == "purged" and not purged:
                        phases[(course, pres)] = "archived"
        return phases

    # -- changing -----------------------------------------------------------------------------------------------

    def check(self, form: dict[str, str], roster: str | None, kind: str = "new") -> Checked:
        return check_request(self.catalog_dir, form, roster, self.today(), self.observe, kind)

    def create(self, access: Access, form: dict[str, str], roster: str | None, kind: str = "new") -> int:
        form = {k: str(form.get(k, "")) for k in FORM_FIELDS} | {"enrolment": form.get("enrolment") or "none"}
        course, unit = form["course"].strip(), form["unit"].strip() or None
        unit = access.course_units.get(course, unit)
        if not access.may_request(course, unit):
            raise self.deny(access.user, f"create-{kind}", f"course:{course}",
                            f"{access.user or 'anonymous'} is not on the team of {course} nor an admin of its unit")
        if kind == "change" and course not in access.course_units:
            raise Refused(f"{course} is not in the catalog; ask for a new presentation instead of a change")
        with self.db.session() as s:
            req = HubRequest(kind=kind, course=course, presentation=form["presentation"].strip(), unit=unit,
                             requester=access.user, state="draft", form=form, roster_csv=roster, version=1)
            s.add(req)
            s.flush()
            s.add(AuditEntry(actor=access.user, action=f"create-{kind}", target=f"request:{req.id}", allowed=True,
                             detail=f"{course} {req.presentation}"))
            return req.id

    def edit(self, access: Access, request_id: int, form: dict[str, str], roster: str | None) -> None:
        req = self.get(access, request_id, "edit")
        if req.requester != access.user:
            raise self.deny(access.user, "edit", f"request:{request_id}", "only the requester edits a request")
        if req.state not in EDITABLE:
            raise Refused(f"a {STATE_LABEL[req.state].lower()} request cannot be edited")
        form = {k: str(form.get(k, "")) for k in FORM_FIELDS} | {"enrolment": form.get("enrolment") or "none"}
        if form["course"].strip() != req.course:
            raise Refused("the course of a request cannot change; withdraw it and make a new one")
        with self.db.session() as s:
            n = s.execute(update(HubRequest).where(HubRequest.id == request_id, HubRequest.version == req.version)
                          .values(form=form, presentation=form["presentation"].strip(),
                                  roster_csv=roster if roster is not None else req.roster_csv,
                                  version=HubRequest.version + 1, updated_at=utcnow())).rowcount  # fmt: skip
            if n != 1:
                raise Refused("the request changed meanwhile; reload it and edit again")
            s.add(AuditEntry(actor=access.user, action="edit", target=f"request:{request_id}", allowed=True, detail=""))

    def comment(self, access: Access, request_id: int, body: str) -> None:
        self.get(access, request_id, "comment")
        if not body.strip():
            raise Refused("an empty comment says nothing; write one")
        with self.db.session() as s:
            s.add(Comment(request_id=request_id, author=access.user, body=body.strip()))
            s.add(AuditEntry(actor=access.user, action="comment", target=f"request:{request_id}", allowed=True,
                             detail=""))  # fmt: skip

    def move(self, access: Access, request_id: int, action: str, reason: str = "") -> HubRequest:
        """Submit, withdraw, request changes, reject or approve (the last commits the course file to git)."""
        if action not in _MOVES:
            raise Refused(f"unknown action {action!r}")
        req = self.get(access, request_id, action)
        sources, target, who = _MOVES[action]
        if who == "requester" and req.requester != access.user:
            raise self.deny(access.user, action, f"request:{request_id}", f"only the requester may {action}")
        if who == "reviewer" and not access.may_review(req.course, req.unit, req.requester):
            why = ("nobody reviews their own request" if req.requester == access.user
                   else f"{access.user} is not an admin of unit {req.unit or '(none)'} nor on the platform team")
            raise self.deny(access.user, action, f"request:{request_id}", why)
        if req.state not in sources:
            raise Refused(f"the request is {STATE_LABEL.get(req.state, req.state).lower()}; it cannot be "
                          f"{action.replace('-', ' ')}{'d' if action.endswith('e') else 'ed'} now")
        if action == "request-changes" and not reason.strip():
            raise Refused("say what should change: the reason goes to the requester")
        checked = None
        if action in ("submit", "approve"):
            # Checked against the catalog as it is *now*: another approval may have taken the hub name meanwhile.
            checked = self.check(req.form, req.roster_csv, req.kind)
            if not checked.ok:
                raise Refused("the course file this request would write does not validate", checked)
        with self.db.session() as s:
            values: dict[str, Any] = {"state": target, "version": HubRequest.version + 1, "updated_at": utcnow()}
            n = s.execute(update(HubRequest).where(HubRequest.id == request_id, HubRequest.version == req.version,
                                                   HubRequest.state == req.state).values(**values)).rowcount
            if n != 1:
                raise Refused("someone else acted on this request at the same moment; reload it to see what happened")
            if action == "approve":
                assert checked is not None
                written = self._commit(req, checked)
                self._cache = None  # our own commit changed the catalog: read it again, whatever the clock says
                s.execute(update(HubRequest).where(HubRequest.id == request_id)
                          .values(commit=written.commit, branch=written.branch))  # fmt: skip
            if who == "reviewer":
                s.add(Review(request_id=request_id, reviewer=access.user, decision=action, reason=reason.strip()))
            s.add(AuditEntry(actor=access.user, action=action, target=f"request:{request_id}", allowed=True,
                             detail=reason.strip()))  # fmt: skip
        done = self.get(access, request_id)
        self._notify(done, action, access.user, reason)
        return done

    def _commit(self, req: HubRequest, checked: Checked):  # noqa: ANN202
        settings = self.loaded().catalog.fleet.requests
        branch = settings.main_branch if settings.commit_to == "main" else f"hub-request/{req.id}"
        what = "change to" if req.kind == "change" else "new presentation"
        message = (f"Hub request #{req.id}: {what} {req.course} {req.presentation}\n\n"
                   f"Requested by {req.requester}; approved through the hubfleet portal.\nHubfleet-Request: {req.id}\n")
        try:
            # The catalog may be a folder inside the repository: paths in the commit are the repository's.
            top = Path(self.repo.toplevel())
            prefix = Path(self.catalog_dir).resolve().relative_to(top.resolve())
            files = {str(prefix / rel) if str(prefix) != "." else rel: text for rel, text in checked.files.items()}
            return self.repo.commit_files(files, message, branch=branch, base=settings.main_branch)
        except (GitError, ValueError) as exc:
            # The request stays submitted (this transaction rolls back): fix the repository and approve again.
            raise Refused(f"could not commit to the catalog repository: {exc}") from None

    # -- mail ---------------------------------------------------------------------------------------------------

    def approvers(self, req: HubRequest) -> list[str]:
        catalog = self.loaded().catalog
        today = self.today()
        unit_admins = [a.username for u in catalog.fleet.units if u.id == req.unit for a in u.admins
                       if today <= a.until]  # fmt: skip
        return sorted(set(unit_admins) | set(catalog.fleet.platform_team))

    def _notify(self, req: HubRequest, action: str, actor: str, reason: str) -> None:
        if self.mailer is None:
            return
        label = STATE_LABEL.get(req.state, req.state)
        subject = f"[hub request #{req.id}] {req.course} {req.presentation}: {label}"
        lines = [f"{actor} did '{action}' on hub request #{req.id} ({req.course} {req.presentation}).",
                 f"It is now: {label}."]
        if reason.strip():
            lines.append(f"Reason: {reason.strip()}")
        if req.commit:
            lines.append(f"Catalog commit {req.commit[:12]} on branch {req.branch}.")
        lines.append(f"See it at {self.mailer.link(req.id)}")
        self.mailer.send([req.requester, *self.approvers(req)], subject, "\n".join(lines) + "\n")

    def count(self) -> int:
        with self.db.session() as s:
            return s.scalar(select(func.count()).select_from(HubRequest)) or 0
