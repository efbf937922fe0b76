"""The fleet dashboard (``/portal/dashboard/``): every hub a user may see, its health, and actions by role.

Rows come from ``fleetview.fleet_rows``; a user sees a hub when they are on the platform team, admin of a unit it
serves, or on the team of a course in it. Actions (apply now, sync enrolment, retry archive) are POST forms with the
CSRF token, allowed to the platform team and to the unit admin of every unit the hub serves
(``Access.may_act_on_hubs``); anyone else gets 403 and an audit row. An action runs the same CLI command an
operator would (``hubfleet apply`` / ``enrol sync --hub`` / ``lifecycle run``) as a background process, logged to
``<state>/portal/actions/``, so the dashboard holds no second copy of the reconcile logic; its outcome is recorded in
``<state>/portal/actions.json`` (the dashboard's "enrolment sync" column reads it).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from hubfleet.lifecycle.ledger import DEFAULT_NAME as LEDGER_NAME
from hubfleet.lifecycle.ledger import Ledger
from hubfleet.plan import plan
from hubfleet.requests.roles import Access
from hubfleet.web.auth import PORTAL_PREFIX
from hubfleet.web.csrf import CSRF_FIELD
from hubfleet.web.fleetview import HubRow, fleet_rows, read_actions
from hubfleet.web.requests_pages import csrf_ok, forbidden, page, service_of, who

__all__ = ["ACTIONS", "SubprocessRunner", "router"]

router = APIRouter()
ACTIONS = {"apply": "Apply now", "sync": "Sync enrolment", "retry-archive": "Retry archive"}
_LOCK = threading.Lock()


class SubprocessRunner:
    """Runs a dashboard action as the CLI command an operator would type, in the background."""

    def __init__(self, catalog: Path, state: Path) -> None:
        self.catalog, self.state = Path(catalog), Path(state)

    def port(self) -> list[str]:
        """``--port`` of the running front door (fleet.json's portal URL): an apply on another port would move it."""
        try:
            url = json.loads((self.state / "fleet.json").read_text()).get("portal_url") or ""
        except (OSError, ValueError):
            return []
        port = urlsplit(url).port
        return ["--port", str(port)] if port else []

    def command(self, action: str, hub: str) -> list[str]:
        base = [sys.executable, "-m", "hubfleet.cli.main"]
        where = [str(self.catalog), "--state-dir", str(self.state)]
        return {"apply": [*base, "apply", *where, *self.port(), "--yes"],
                "sync": [*base, "enrol", "sync", *where, "--hub", hub],
                "retry-archive": [*base, "lifecycle", "run", *where, *self.port()]}[action]  # fmt: skip

    def __call__(self, action: str, hub: str) -> None:
        logs = self.state / "portal" / "actions"
        logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        log = logs / f"{stamp}-{action}-{hub}.log"
        out = open(log, "wb")  # noqa: SIM115 - handed to the child, closed when it ends
        os.chmod(log, 0o600)
        proc = subprocess.Popen(self.command(action, hub), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip

        def wait() -> None:
            code = proc.wait()
            out.close()
            record_action(self.state, action, hub, code == 0, str(log))

        threading.Thread(target=wait, daemon=True).start()


def record_action(state: Path, action: str, hub: str, ok: bool, log: str) -> None:
    with _LOCK:
        data = read_actions(state)
        data.setdefault(action, {})[hub] = {"at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
                                            "ok": ok, "log": log}  # fmt: skip
        path = state / "portal" / "actions.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)


def _runner(request: Request) -> Callable[[str, str], None]:
    runner = getattr(request.app.state, "dashboard_runner", None)
    if runner is None:
        service = service_of(request)
        runner = request.app.state.dashboard_runner = SubprocessRunner(service.catalog_dir, request.app.state.source.state)
    return runner


def _sees(access: Access, row: HubRow) -> bool:
    courses = {p["key"].rsplit("-", 1)[0] for p in row.presentations}
    return access.platform or any(access.sees_unit(u) for u in row.units) or bool(courses & access.courses)


def _rows(request: Request, access: Access) -> list[HubRow]:
    service = service_of(request)
    rows = fleet_rows(service.loaded().catalog, service.today(), request.app.state.source.state, service.observe)
    return [r for r in rows if _sees(access, r)]


@router.get("/dashboard/", response_class=HTMLResponse)
def dashboard(request: Request, unit: str = "", phase: str = "", problem: str = "") -> Response:
    access = who(request, "dashboard", "dashboard")
    if isinstance(access, Response):
        return access
    rows = _rows(request, access)
    units = sorted({u for r in rows for u in r.units if u})
    shown = [r for r in rows if (not unit or unit in r.units) and (not phase or phase in r.phases)
             and (not problem or (problem in r.problems if problem != "any" else r.problems))]  # fmt: skip
    return page(request, "dashboard.html", user=access.user, access=access, rows=shown, total=len(rows),
                units=units, filters={"unit": unit, "phase": phase, "problem": problem}, actions=ACTIONS,
                today=service_of(request).today())  # fmt: skip


@router.get("/dashboard/hubs/{hub}", response_class=HTMLResponse)
def hub_page(request: Request, hub: str) -> Response:
    access = who(request, "dashboard-hub", f"hub:{hub}")
    if isinstance(access, Response):
        return access
    service = service_of(request)
    row = next((r for r in _rows(request, access) if r.name == hub), None)
    if row is None:
        service.audit(access.user, "dashboard-hub", f"hub:{hub}", False, "not a hub this user may see")
        return forbidden(request, access, f"{hub} is not a hub you can see.")
    spec = next((h for h in plan(service.loaded().catalog, service.today()).hubs if h.name == hub), None)
    archives = []
    state = request.app.state.source.state
    if (state / LEDGER_NAME).exists():
        keys = {p["key"] for p in row.presentations}
        with Ledger(state) as ledger:
            archives = [a for a in ledger.all() if a.presentation in keys and not a.superseded]
    return page(request, "dashboard_hub.html", user=access.user, access=access, row=row, spec=spec,
                archives=archives, trail=service.audit_trail(f"hub:{hub}"), actions=ACTIONS,
                may_act=access.may_act_on_hubs(row.units))  # fmt: skip


@router.post("/dashboard/hubs/{hub}/{action}", response_class=HTMLResponse)
def act(request: Request, hub: str, action: str, csrf_token: str = Form("", alias=CSRF_FIELD)) -> Response:
    access = who(request, action, f"hub:{hub}")
    if isinstance(access, Response):
        return access
    service = service_of(request)
    if action not in ACTIONS:
        return page(request, "error.html", status=404, user=access.user, message=f"no dashboard action {action!r}")
    if not csrf_ok(request, csrf_token):
        service.audit(access.user, action, f"hub:{hub}", False, "no valid form token (CSRF)")
        return forbidden(request, access, "That form did not come from this site's own page, so nothing was done.")
    row = next((r for r in _rows(request, access) if r.name == hub), None)
    if row is None or not access.may_act_on_hubs(row.units):
        service.audit(access.user, action, f"hub:{hub}", False, "only the platform team and the hub's unit admins act")
        return forbidden(request, access, f"{ACTIONS[action]} on {hub} is for the platform team and the admins of "
                         "the units it serves.")
    service.audit(access.user, action, f"hub:{hub}", True, "started")
    _runner(request)(action, hub)
    return RedirectResponse(f"{PORTAL_PREFIX}/dashboard/hubs/{hub}?started={action}", status_code=303)
