"""The portal's hub-request pages: ask for a hub, review it, approve it into the catalog (``/portal/requests/``).

Server-rendered forms (FastAPI + Jinja), usable without JavaScript; every POST carries the portal's CSRF token
(``csrf.py``) and is refused (403, nothing changed) without it. Who sees and does what is ``requests.roles``;
every refusal is a 403 page and a row in the audit log (``RequestService.deny``).

Mounted by ``portal.create_app`` through :func:`mount`, which reads the settings (:class:`RequestSettings`): the
catalog folder the fleet runs, the database URL, and the mail relay. Without a catalog the pages are not mounted.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hubfleet.requests.courses import FORM_FIELDS, Checked, existing_presentation
from hubfleet.requests.database import Database, default_url
from hubfleet.requests.gitwriter import CatalogRepo
from hubfleet.requests.notify import Mailer
from hubfleet.requests.roles import Access
from hubfleet.requests.workflow import EDITABLE, STATE_LABEL, Forbidden, Refused, RequestService
from hubfleet.web.auth import PORTAL_PREFIX, current_user
from hubfleet.web.csrf import CSRF_FIELD

__all__ = ["RequestSettings", "mount", "router"]

router = APIRouter()
_NO_STORE = {"Cache-Control": "no-store"}
_FORGED = "That form did not come from this site's own page (or it expired), so nothing was changed. Reload and retry."
MAX_ROSTER_BYTES = 5 << 20


@dataclass(frozen=True)
class RequestSettings:
    catalog: Path
    database_url: str
    mailer: Mailer | None = None

    @classmethod
    def for_state(cls, state: Path) -> "RequestSettings | None":
        """``<state>/portal/requests.json`` if present ({catalog, database_url, smtp: {host, port, sender,
        mail_domain}, base_url}); else the catalog the default state dir sits in (``<catalog>/.hubfleet``)."""
        file = state / "portal" / "requests.json"
        conf: dict[str, Any] = json.loads(file.read_text()) if file.is_file() else {}
        catalog = Path(conf.get("catalog") or state.parent)
        if not (catalog / "fleet.yaml").is_file():
            return None
        smtp = conf.get("smtp")
        mailer = Mailer(smtp["host"], int(smtp.get("port", 25)), smtp.get("sender", "hubfleet@localhost"),
                        smtp.get("mail_domain", "localhost"), conf.get("base_url", "")) if smtp else None  # fmt: skip
        return cls(catalog=catalog, database_url=conf.get("database_url") or default_url(state), mailer=mailer)


def mount(app: FastAPI, settings: RequestSettings | None = None, *, observe: Any = None,
          today: Any = None) -> RequestService | None:  # fmt: skip
    """Add the request pages (and the dashboard) to the portal app."""
    state = app.state.source.state
    settings = settings or RequestSettings.for_state(state)
    if settings is None:
        return None
    if observe is None:
        observe = _local_observer(settings.catalog, state)
    service = RequestService(Database(settings.database_url), settings.catalog, CatalogRepo(settings.catalog),
                             settings.mailer, observe, **({"today": today} if today else {}),
                             state_dir=state)  # fmt: skip
    app.state.requests = service
    app.include_router(router, prefix=PORTAL_PREFIX)
    from hubfleet.web.dashboard import router as dashboard_router

    app.include_router(dashboard_router, prefix=PORTAL_PREFIX)
    return service


def _local_observer(catalog: Path, state: Path):  # noqa: ANN202
    """The local fleet's observed state (for the planner's storage guard), or an empty fleet before the first up."""

    def observe():  # noqa: ANN202
        from hubfleet.backends.local.fleetstate import FleetPaths, observe_state
        from hubfleet.plan import FleetState

        if not (state / "hubs").is_dir():
            return FleetState()
        return observe_state(FleetPaths(state), state / "storage", own_proxy=False)

    return observe


# -- helpers shared with the dashboard -----------------------------------------------------------------------------


def service_of(request: Request) -> RequestService:
    return request.app.state.requests


def page(request: Request, template: str, status: int = 200, **extra: Any) -> HTMLResponse:
    """A portal page with the fleet's branding and a CSRF token for its forms."""
    csrf = request.app.state.csrf
    token, nonce = csrf.issue(request)
    ctx = request.app.state.page_context(csrf_token=token, state_label=STATE_LABEL, **extra)
    response = request.app.state.templates.TemplateResponse(request, template, ctx, status_code=status,
                                                            headers=_NO_STORE)  # fmt: skip
    csrf.set_cookie(request, response, nonce)
    return response


def who(request: Request, action: str, target: str) -> Access | Response:
    """The signed-in user's access; a redirect to sign in, or a 403 page (audited) for someone with no role here."""
    user = current_user(request)
    if user is None:
        return RedirectResponse(f"{PORTAL_PREFIX}/login?next={request.url.path}", status_code=303)
    service = service_of(request)
    access = service.access(user)
    if not access.anyone:
        service.audit(user, action, target, False, "no role in hub requests or the dashboard")
        return forbidden(request, access, "Hub requests and the fleet dashboard are for course teams, unit admins "
                         "and the platform team.")
    return access


def forbidden(request: Request, access: Access, message: str) -> HTMLResponse:
    return page(request, "error.html", status=403, user=access.user or None, message=message,
                back=f"{PORTAL_PREFIX}/", back_label="Back to your courses")  # fmt: skip


def csrf_ok(request: Request, token: str) -> bool:
    return request.app.state.csrf.check(request, token)


# -- pages -----------------------------------------------------------------------------------------------------------


@router.get("/requests/", response_class=HTMLResponse)
def list_requests(request: Request) -> Response:
    access = who(request, "list", "requests")
    if isinstance(access, Response):
        return access
    service = service_of(request)
    phases = service.phases()
    rows = [(r, service.effective_state(r, phases)) for r in service.visible(access)]
    return page(request, "requests.html", user=access.user, access=access, rows=rows)


def _form_page(request: Request, access: Access, *, form: dict[str, str], kind: str, checked: Checked | None,
               request_id: int | None = None, status: int = 200, message: str = "") -> HTMLResponse:  # fmt: skip
    service = service_of(request)
    catalog = service.loaded().catalog
    lifecycle = catalog.fleet.lifecycle
    return page(request, "request_form.html", status=status, user=access.user, access=access, form=form, kind=kind,
                checked=checked, request_id=request_id, units=catalog.fleet.units, message=message,
                lifecycle=lifecycle, implied=_implied(form, lifecycle))  # fmt: skip


def _implied(form: dict[str, str], lifecycle: Any) -> list[tuple[str, str]]:
    """The lifecycle dates the start and end imply, shown beside them."""
    from hubfleet.plan.spec import timeline

    try:
        line = timeline(dt.date.fromisoformat(form.get("start", "")), dt.date.fromisoformat(form.get("end", "")),
                        lifecycle)  # fmt: skip
    except ValueError:
        return []
    return [("Hub up for staff", line.provision_on.isoformat()), ("Open to students", line.start.isoformat()),
            ("Read-only (download only)", line.read_only_on.isoformat()),
            ("Archived, hub removed", line.archive_on.isoformat()), ("Archives purged", line.purge_on.isoformat())]


@router.get("/requests/new", response_class=HTMLResponse)
def new_form(request: Request, course: str = "", presentation: str = "", change: bool = False) -> Response:
    access = who(request, "new-form", "requests")
    if isinstance(access, Response):
        return access
    service = service_of(request)
    form = {k: "" for k in FORM_FIELDS} | {"enrolment": "roster"}
    if change:
        if not access.may_request(course, None):
            service.audit(access.user, "change-form", f"course:{course}", False, "not their course nor their unit's")
            return forbidden(request, access, f"Changes to {course} are asked for by its team or its unit's admins.")
        form |= existing_presentation(service.catalog_dir, course, presentation)
        if not form.get("presentation"):
            return page(request, "error.html", status=404, user=access.user, message=f"{course} {presentation} is "
                        "not in the catalog.", back=f"{PORTAL_PREFIX}/requests/", back_label="Back to requests")
    else:
        form["course"] = course
    return _form_page(request, access, form=form, kind="change" if change else "new", checked=None)


async def _posted(request: Request) -> tuple[dict[str, str], str | None, str, str]:
    data = await request.form()
    form = {k: str(data.get(k) or "") for k in FORM_FIELDS}
    form["enrolment"] = str(data.get("enrolment") or "none")
    roster = None
    upload = data.get("roster")
    if isinstance(upload, UploadFile) or hasattr(upload, "read"):
        raw = await upload.read(MAX_ROSTER_BYTES + 1)
        if raw:
            roster = raw[:MAX_ROSTER_BYTES].decode("utf-8-sig", errors="replace")
    return form, roster, str(data.get(CSRF_FIELD) or ""), str(data.get("do") or "save")


@router.post("/requests/new", response_class=HTMLResponse)
async def create(request: Request) -> Response:
    access = who(request, "create", "requests")
    if isinstance(access, Response):
        return access
    form, roster, token, do = await _posted(request)
    kind = "change" if (await request.form()).get("kind") == "change" else "new"
    if not csrf_ok(request, token):
        service_of(request).audit(access.user, "create", "requests", False, "no valid form token (CSRF)")
        return _form_page(request, access, form=form, kind=kind, checked=None, status=403, message=_FORGED)
    service = service_of(request)
    try:
        rid = service.create(access, form, roster, kind)
    except Forbidden as exc:
        return forbidden(request, access, str(exc))
    except Refused as exc:
        return _form_page(request, access, form=form, kind=kind, checked=None, status=409, message=str(exc))
    return await _after_save(request, access, rid, do)


async def _after_save(request: Request, access: Access, rid: int, do: str) -> Response:
    service = service_of(request)
    if do == "submit":
        try:
            service.move(access, rid, "submit")
        except Refused as exc:
            return RedirectResponse(f"{PORTAL_PREFIX}/requests/{rid}/edit?problem=1", status_code=303) \
                if exc.checked else RedirectResponse(f"{PORTAL_PREFIX}/requests/{rid}", status_code=303)
        return RedirectResponse(f"{PORTAL_PREFIX}/requests/{rid}", status_code=303)
    return RedirectResponse(f"{PORTAL_PREFIX}/requests/{rid}/edit", status_code=303)


@router.get("/requests/{rid}/edit", response_class=HTMLResponse)
def edit_form(request: Request, rid: int) -> Response:
    access = who(request, "edit-form", f"request:{rid}")
    if isinstance(access, Response):
        return access
    service = service_of(request)
    try:
        req = service.get(access, rid, "edit-form")
    except Forbidden as exc:
        return forbidden(request, access, str(exc))
    checked = service.check(req.form, req.roster_csv, req.kind)
    return _form_page(request, access, form=req.form, kind=req.kind, checked=checked, request_id=rid)


@router.post("/requests/{rid}/edit", response_class=HTMLResponse)
async def edit(request: Request, rid: int) -> Response:
    access = who(request, "edit", f"request:{rid}")
    if isinstance(access, Response):
        return access
    form, roster, token, do = await _posted(request)
    service = service_of(request)
    if not csrf_ok(request, token):
        service.audit(access.user, "edit", f"request:{rid}", False, "no valid form token (CSRF)")
        return _form_page(request, access, form=form, kind="new", checked=None, request_id=rid, status=403,
                          message=_FORGED)  # fmt: skip
    try:
        service.edit(access, rid, form, roster)
    except Forbidden as exc:
        return forbidden(request, access, str(exc))
    except Refused as exc:
        return _form_page(request, access, form=form, kind="new", checked=None, request_id=rid, status=409,
                          message=str(exc))  # fmt: skip
    return await _after_save(request, access, rid, do)


@router.get("/requests/{rid}", response_class=HTMLResponse)
def view(request: Request, rid: int, message: str = "") -> Response:
    access = who(request, "view", f"request:{rid}")
    if isinstance(access, Response):
        return access
    service = service_of(request)
    try:
        req = service.get(access, rid)
    except Forbidden as exc:
        return forbidden(request, access, str(exc))
    # Checked against today's catalog while it is still a proposal; once approved, the catalog holds it already
    # (checking again would only find the request's own presentation there).
    checked = service.check(req.form, req.roster_csv, req.kind) if req.state in ("draft", "submitted",
                                                                                 "changes-requested") else None
    state = service.effective_state(req, service.phases())
    return page(request, "request.html", user=access.user, access=access, req=req, state=state, checked=checked,
                editable=req.state in EDITABLE and req.requester == access.user, message=message,
                reviewer=access.may_review(req.course, req.unit, req.requester),
                trail=service.audit_trail(f"request:{rid}"))  # fmt: skip


@router.post("/requests/{rid}/action", response_class=HTMLResponse)
def act(request: Request, rid: int, action: str = Form(...), reason: str = Form(""),
        csrf_token: str = Form("", alias=CSRF_FIELD)) -> Response:  # fmt: skip
    access = who(request, action, f"request:{rid}")
    if isinstance(access, Response):
        return access
    service = service_of(request)
    if not csrf_ok(request, csrf_token):
        service.audit(access.user, action, f"request:{rid}", False, "no valid form token (CSRF)")
        return forbidden(request, access, _FORGED)
    try:
        service.move(access, rid, action, reason)
    except Forbidden as exc:
        return forbidden(request, access, str(exc))
    except Refused as exc:
        req = service.get(access, rid)
        return page(request, "request.html", status=409, user=access.user, access=access, req=req,
                    state=service.effective_state(req, service.phases()), checked=exc.checked, message=str(exc),
                    editable=req.state in EDITABLE and req.requester == access.user,
                    reviewer=access.may_review(req.course, req.unit, req.requester),
                    trail=service.audit_trail(f"request:{rid}"))  # fmt: skip
    return RedirectResponse(f"{PORTAL_PREFIX}/requests/{rid}", status_code=303)


@router.post("/requests/{rid}/comment", response_class=HTMLResponse)
def comment(request: Request, rid: int, body: str = Form(""), csrf_token: str = Form("", alias=CSRF_FIELD)) -> Response:
    access = who(request, "comment", f"request:{rid}")
    if isinstance(access, Response):
        return access
    service = service_of(request)
    if not csrf_ok(request, csrf_token):
        service.audit(access.user, "comment", f"request:{rid}", False, "no valid form token (CSRF)")
        return forbidden(request, access, _FORGED)
    try:
        service.comment(access, rid, body)
    except Forbidden as exc:
        return forbidden(request, access, str(exc))
    except Refused as exc:
        return RedirectResponse(f"{PORTAL_PREFIX}/requests/{rid}?{urlencode({'message': str(exc)})}", status_code=303)
    return RedirectResponse(f"{PORTAL_PREFIX}/requests/{rid}", status_code=303)
