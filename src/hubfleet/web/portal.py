"""The fleet portal behind the front door: the public list of hubs, sign-in, "your courses", and the fleet's
embedded OpenID Connect provider (``oidc.py``) that every hub signs in through.

URL layout, and why: ``/`` is the public page (every hub and its presentations, and a sign-in link); everything
that needs to know who you are lives under ``/portal/`` (``/portal/`` is "your courses", ``/portal/login``,
``/portal/oauth/...``), because the session cookie is scoped to ``/portal`` so it never reaches a student's own
server under ``/hubs/`` (see ``auth.py``). Routers of other features mount under ``/portal`` for the same reason.

It reads ``<state>/fleet.json`` (written by the local backend at every apply and reconcile) and the hub dirs on each
request, so it never needs a restart and holds no state of its own beyond three secrets generated once in
``<state>/portal/`` (session secret, access-token secret, signing key). Run detached by the front door as
``python -m hubfleet.web.portal --state <state> --port <port>``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from hubfleet.backends.local.secrets import ensure_secret
from hubfleet.web import oidc
from hubfleet.web.auth import PORTAL_PREFIX, SessionSigner, current_user
from hubfleet.web.directory import UserDirectory

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

# Phases in the order a student meets them; the page sorts and labels by this.
PHASE_LABEL = {
    "scheduled": "Scheduled",
    "provisioned": "Preparing (staff only)",
    "open": "Open",
    "read-only": "Read-only: download your work",
    "archived": "Archived",
    "purged": "Removed",
}
ROLE_LABEL = {"student": "Student", "tutor": "Tutor", "instructor": "Instructor", "admin": "Platform admin"}


@dataclass(frozen=True)
class PortalSource:
    """Where the portal reads the fleet from."""

    state: Path

    def fleet(self) -> dict[str, Any]:
        try:
            return json.loads((self.state / "fleet.json").read_text())
        except (FileNotFoundError, ValueError):
            # Before the first apply (or mid-write on a filesystem without atomic rename): an empty fleet, not a 500.
            return {"fleet": "hubfleet", "branding": {"name": "hubfleet", "primary_color": "#0b4f8a"}, "hubs": []}


def _date(text: str | None) -> str:
    if not text:
        return ""
    return dt.date.fromisoformat(text).strftime("%-d %b %Y")


def _safe_next(target: str | None) -> str:
    """Only back into the portal itself: a login form must not be an open redirect to anywhere."""
    if not target:
        return f"{PORTAL_PREFIX}/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(f"{PORTAL_PREFIX}/") or "\\" in target:
        return f"{PORTAL_PREFIX}/"
    return target


def create_app(source: PortalSource) -> FastAPI:
    app = FastAPI(title="hubfleet portal", docs_url=None, redoc_url=None, openapi_url=None)
    TEMPLATES.env.filters["date"] = _date
    secrets_dir = source.state / "portal"
    directory = UserDirectory(source.state)
    app.state.source = source
    app.state.directory = directory
    app.state.templates = TEMPLATES
    app.state.session_signer = SessionSigner(secrets_dir / "session_secret")
    app.state.oidc = oidc.Provider(
        directory, oidc.load_or_create_key(secrets_dir / "oidc_signing_key.json"), ensure_secret(secrets_dir / "token_secret")
    )

    def page_context(**extra: Any) -> dict[str, Any]:
        fleet = source.fleet()
        return {"fleet": fleet, "branding": fleet.get("branding", {}), "phase_label": PHASE_LABEL,
                "role_label": ROLE_LABEL, "prefix": PORTAL_PREFIX, **extra}  # fmt: skip

    app.state.page_context = page_context

    def render(request: Request, template: str, status: int = 200, **extra: Any) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, template, page_context(**extra), status_code=status)

    # -- public, at the root ---------------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        return render(request, "portal.html", hubs=source.fleet().get("hubs", []), user=None, root="")

    @app.get("/api/fleet")
    def fleet_json() -> JSONResponse:
        return JSONResponse(source.fleet())

    @app.get("/branding/logo")
    def logo() -> FileResponse:
        # Only the one file the catalog names is served; the path comes from fleet.json, never from the request.
        path = (source.fleet().get("branding") or {}).get("logo_path")
        if not path or not Path(path).is_file():
            raise HTTPException(404, "no logo")
        return FileResponse(path, media_type=mimetypes.guess_type(path)[0] or "application/octet-stream")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # -- signed-in pages, under /portal --------------------------------------------------------------------------

    portal = APIRouter()

    @portal.get("/", response_class=HTMLResponse)
    def your_courses(request: Request) -> HTMLResponse:
        user = current_user(request)
        if user is None:
            # Anonymous: the public list with the sign-in link, as at "/".
            return render(request, "portal.html", hubs=source.fleet().get("hubs", []), user=None, root="/")
        up = {h["name"]: h.get("up", False) for h in source.fleet().get("hubs", [])}
        courses = directory.enrolments(user)
        return render(request, "courses.html", user=user, courses=courses, up=up,
                      staff=any(c.role != "student" for c in courses))  # fmt: skip

    @portal.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str | None = None) -> Response:  # noqa: A002 - the query parameter's name
        if current_user(request) is not None:
            return RedirectResponse(_safe_next(next), status_code=303)
        return render(request, "login.html", next=_safe_next(next), error=None, username="", demo=directory.demo_mode())

    @portal.post("/login", response_class=HTMLResponse)
    def login(
        request: Request, username: str = Form(""), password: str = Form(""), next: str = Form(""),  # noqa: A002
    ) -> Response:
        name = username.strip().lower()
        if not directory.verify(name, password) or not directory.exists(name):
            # One message for "no such user" and "wrong password": the form must not reveal who exists.
            return render(request, "login.html", status=401, next=_safe_next(next), username=username,
                          error="Invalid username or password.", demo=directory.demo_mode())  # fmt: skip
        response = RedirectResponse(_safe_next(next), status_code=303)
        app.state.session_signer.login(response, name, secure=request.url.scheme == "https")
        return response

    @portal.api_route("/logout", methods=["GET", "POST"], response_class=HTMLResponse)
    def logout(request: Request) -> Response:
        response = RedirectResponse("/", status_code=303)
        app.state.session_signer.logout(response)
        return response

    app.include_router(portal, prefix=PORTAL_PREFIX)
    app.include_router(oidc.router, prefix=PORTAL_PREFIX)
    try:
        # Students' archive downloads (the lifecycle feature); optional so the portal runs without it.
        from hubfleet.web.archives import router as archives_router
    except ImportError:
        pass
    else:
        app.include_router(archives_router, prefix=PORTAL_PREFIX)
    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the hubfleet portal for one state dir.")
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    app = create_app(PortalSource(args.state.resolve()))
    # proxy_headers: it sits behind the front-door proxy; access log off, CHP already logs every request.
    # One worker on purpose: oidc.py keeps its one-time authorization codes in this process.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, proxy_headers=True)


if __name__ == "__main__":
    main()
