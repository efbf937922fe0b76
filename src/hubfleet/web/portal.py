"""The fleet portal behind the front door: the public list of hubs, sign-in, "your courses", and the fleet's
embedded OpenID Connect provider (``oidc.py``) that every hub signs in through.

It is served on a host of its own, ``portal.<domain>`` (see ``backends/local/hosts.py``): every other host that
reaches it (the bare ``<domain>``, an unknown name) is redirected there, except the provider's machine endpoints,
which the hubs call at the portal's private address. So no student's server shares its origin.

URL layout, and why: ``/`` is the public page (every hub and its presentations, and a sign-in link); everything
that needs to know who you are lives under ``/portal/`` (``/portal/`` is "your courses", ``/portal/login``,
``/portal/oauth/...``), because the session cookie is scoped to ``/portal`` so it never reaches a student's own
server under ``/hubs/`` (see ``auth.py``). Routers of other features mount under ``/portal`` for the same reason.

It reads ``<state>/fleet.json`` (written by the local backend at every apply and reconcile) and the hub dirs on each
request, so it never needs a restart and holds no state of its own beyond three secrets generated once in
``<state>/portal/`` (session secret, access-token secret, signing key) and, in memory, the OIDC codes and the
failed sign-in counters. Run detached by the front door as ``python -m hubfleet.web.portal --state <state> --port
<port>``.

Its two browser forms that change state, sign-in and sign-out, carry a CSRF token (``csrf.py``); a GET never
changes state: ``GET /portal/logout`` (where a hub's "sign out" lands, as the provider's end_session_endpoint)
only asks to confirm, and the confirmation is a POST. Failed sign-ins are slowed down per (username, client)
(``throttle.py``); the client is the address the front door saw (``client_address``), never a header a client wrote.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import mimetypes
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, FastAPI, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from fastapi.templating import Jinja2Templates

from hubfleet.backends.local.secrets import ensure_secret
from hubfleet.web import oidc
from hubfleet.web.auth import PORTAL_PREFIX, SessionSigner, current_user
from hubfleet.web.csrf import CSRF_FIELD, CsrfGuard
from hubfleet.web.devices import DeviceCookies
from hubfleet.web.directory import UserDirectory
from hubfleet.web.throttle import SignInThrottle
from hubfleet.web.waker import WAKE_PREFIX, Waker
from hubfleet.web.waking import hub_state, kubernetes_waking, local_waking

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


# Called server to server (by the hubs, at the portal's private address), never with a browser's cookie.
_MACHINE_PATHS = frozenset({"/healthz", "/metrics", f"{PORTAL_PREFIX}/oauth/token", f"{PORTAL_PREFIX}/oauth/userinfo",
                            f"{PORTAL_PREFIX}/oauth/jwks", f"{PORTAL_PREFIX}/.well-known/openid-configuration"})  # fmt: skip


class OwnHostOnly(BaseHTTPMiddleware):
    """Serve pages on the portal's own host only (fleet.json ``portal_url``); redirect any other host there.

    The portal's cookies are host-only, so on another host they would not be sent anyway; redirecting keeps one
    address for people and bookmarks (``http://localhost:PORT/`` lands on the portal)."""

    def __init__(self, app: Any, source: PortalSource) -> None:
        super().__init__(app)
        self.source = source

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        own = str(self.source.fleet().get("portal_url") or "").rstrip("/")
        host = urlsplit(own).netloc.lower()
        if own and request.headers.get("host", "").lower() != host and request.url.path not in _MACHINE_PATHS:
            query = f"?{request.url.query}" if request.url.query else ""
            return RedirectResponse(own + request.url.path + query, status_code=307)
        return await call_next(request)


_FORGED = "This sign-in form has expired or did not come from this site, so nobody was signed in. Please sign in again."
_NO_STORE = {"Cache-Control": "no-store"}  # pages carrying a form token are never cached


def client_address(request: Request, behind_front_door: bool) -> str:
    """Who is signing in, for the throttle.

    Behind the front door (the portal on its unix socket, which only the front door reaches) it is the *last*
    ``X-Forwarded-For`` entry: the one the front door appended, the address of the connection it accepted. Every
    earlier entry was written by the client and is ignored (made-up headers must not make a new "client" per
    attempt). Served directly (tests, a hub fixture), it is the peer address and the header is ignored altogether.
    """
    if behind_front_door:
        forwarded = request.headers.get("x-forwarded-for", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        return last or "front-door"
    return request.client.host if request.client else "unknown"


def create_app(source: PortalSource, clock: Callable[[], float] = time.monotonic, *,
               behind_front_door: bool = False, waking: dict[str, Any] | None = None) -> FastAPI:  # fmt: skip
    """The portal app; ``clock`` (monotonic seconds) drives the sign-in throttle, so tests can move time.
    ``behind_front_door``: requests come only through the front door (see ``client_address``). ``waking``: the
    waker's hooks (``local_waking`` by default; ``kubernetes_waking`` in the cluster)."""
    app = FastAPI(title="hubfleet portal", docs_url=None, redoc_url=None, openapi_url=None)
    TEMPLATES.env.filters["date"] = _date
    secrets_dir = source.state / "portal"
    directory = UserDirectory(source.state)
    app.state.source = source
    app.state.directory = directory
    app.state.templates = TEMPLATES
    app.state.session_signer = SessionSigner(secrets_dir / "session_secret")
    app.state.csrf = csrf = CsrfGuard(secrets_dir / "session_secret")
    app.state.throttle = throttle = SignInThrottle(clock=clock)
    devices = DeviceCookies(secrets_dir / "session_secret", PORTAL_PREFIX)
    app.state.oidc = oidc.Provider(
        directory, oidc.load_or_create_key(secrets_dir / "oidc_signing_key.json"), ensure_secret(secrets_dir / "token_secret")
    )

    def page_context(**extra: Any) -> dict[str, Any]:
        fleet = source.fleet()
        return {"fleet": fleet, "branding": fleet.get("branding", {}), "phase_label": PHASE_LABEL,
                "role_label": ROLE_LABEL, "prefix": PORTAL_PREFIX, **extra}  # fmt: skip

    app.state.page_context = page_context
    app.add_middleware(OwnHostOnly, source=source)
    # Outermost: a sleeping hub's host (its route points here while it hibernates) is the waker's, not the portal's.
    app.state.waking = waking = waking or local_waking(source.state, source.fleet)
    app.add_middleware(Waker, **waking)

    def render(request: Request, template: str, status: int = 200, headers: dict[str, str] | None = None,
               **extra: Any) -> HTMLResponse:  # fmt: skip
        """A page with the fleet's branding and a form token (``csrf_token``) for any form on it."""
        token, nonce = csrf.issue(request)
        response = TEMPLATES.TemplateResponse(request, template, page_context(csrf_token=token, **extra),
                                              status_code=status, headers={**_NO_STORE, **(headers or {})})  # fmt: skip
        csrf.set_cookie(request, response, nonce)
        return response

    fleet_id_file = source.state / "frontdoor" / "fleet_id"
    fleet_id = fleet_id_file.read_text().strip() if fleet_id_file.is_file() else None

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

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        # Scraped by Prometheus with the fleet's metrics token (web/metrics.py); any host, like /healthz.
        from hubfleet.web.metrics import authorised, metrics_text

        if not authorised(source.state, request.headers.get("authorization")):
            return Response("metrics need the fleet's bearer token (<state>/frontdoor/metrics_token)\n", 401,
                            media_type="text/plain", headers={"WWW-Authenticate": "Bearer"})
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics_text(source.state, source.fleet(), lambda hub: hub_state(waking, hub)),
                        media_type=CONTENT_TYPE_LATEST)

    @app.get("/favicon.ico")
    def favicon() -> Response:
        """Browsers ask every host for /favicon.ico: the catalog's logo, else a square in the fleet's colour
        (a 404 here was a red line in every browser console and log)."""
        branding = source.fleet().get("branding") or {}
        path = branding.get("logo_path")
        if path and Path(path).is_file():
            return FileResponse(path, media_type=mimetypes.guess_type(path)[0] or "application/octet-stream",
                                headers={"Cache-Control": "max-age=86400"})  # fmt: skip
        colour = str(branding.get("primary_color") or "#0b4f8a")
        if not re.fullmatch(r"#[0-9a-fA-F]{3,8}", colour):
            colour = "#0b4f8a"
        svg = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" '
               f'fill="{colour}"/></svg>')
        return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})

    @app.get("/healthz")
    def healthz() -> dict[str, str | None]:
        # The fleet id lets the front door tell its own portal from another fleet's on the same port.
        return {"status": "ok", "fleet": fleet_id}

    # -- signed-in pages, under /portal --------------------------------------------------------------------------

    portal = APIRouter()

    @portal.get("/", response_class=HTMLResponse)
    def your_courses(request: Request) -> HTMLResponse:
        user = current_user(request)
        if user is None:
            # Anonymous: the public list with the sign-in link, as at "/".
            return render(request, "portal.html", hubs=source.fleet().get("hubs", []), user=None, root="/")
        hubs = source.fleet().get("hubs", [])
        up = {h["name"]: h.get("up", False) for h in hubs}
        urls = {h["name"]: h.get("url", "") for h in hubs}  # each hub's own host
        courses = directory.enrolments(user)
        for hub in {c.hub for c in courses} & set(urls):
            if waking["asleep"](hub):  # through the waker on the portal's own host: it wakes on any ingress
                urls[hub] = f"{WAKE_PREFIX}{hub}/"
        # Local backend: what each course's profiles run on (fleet.json; absent on Kubernetes, where it is the image).
        environments = {p["key"]: p.get("environments") or [] for h in hubs for p in h.get("presentations", [])}
        return render(request, "courses.html", user=user, courses=courses, up=up, urls=urls,
                      environments=environments, staff=any(c.role != "student" for c in courses))  # fmt: skip

    @portal.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str | None = None) -> Response:  # noqa: A002 - the query parameter's name
        if current_user(request) is not None:
            return RedirectResponse(_safe_next(next), status_code=303)
        return render(request, "login.html", next=_safe_next(next), error=None, username="", demo=directory.demo_mode())

    @portal.post("/login", response_class=HTMLResponse)
    def login(
        request: Request, username: str = Form(""), password: str = Form(""), next: str = Form(""),  # noqa: A002
        csrf_token: str = Form("", alias=CSRF_FIELD),
    ) -> Response:
        if not csrf.check(request, csrf_token):
            # Login CSRF: a page elsewhere posting someone's credentials. No session, no counting, a fresh form;
            # the posted username is not echoed back (it came from that other page).
            return render(request, "login.html", status=403, next=_safe_next(next), username="", error=_FORGED,
                          demo=directory.demo_mode())  # fmt: skip
        name = username.strip().lower()
        # A browser that signed in as this user before counts as a client of its own (devices.py), so failures by
        # others on the same network (a lab, campus wifi behind one address) do not slow its owner down.
        device = devices.device(request, name)
        client = f"device:{device}" if device else client_address(request, behind_front_door)
        wait = throttle.retry_after(name, client)
        if wait is not None:
            message = f"Too many failed sign-ins from here. Try again in {_duration(wait)}."
            return render(request, "error.html", status=429, headers={"Retry-After": str(math.ceil(wait))},
                          message=message, back=f"{PORTAL_PREFIX}/login?{urlencode({'next': _safe_next(next)})}",
                          back_label="Back to sign in")  # fmt: skip
        if not directory.verify(name, password) or not directory.exists(name):
            throttle.failed(name, client)
            # One message for "no such user" and "wrong password": the form must not reveal who exists.
            return render(request, "login.html", status=401, next=_safe_next(next), username=username,
                          error="Invalid username or password.", demo=directory.demo_mode())  # fmt: skip
        throttle.succeeded(name, client)
        response = RedirectResponse(_safe_next(next), status_code=303)
        # Behind a TLS-terminating ingress (the cluster portal) the request is plain HTTP, but the portal's own
        # address says https: the cookies must never travel without TLS.
        secure = request.url.scheme == "https" or str(source.fleet().get("portal_url") or "").startswith("https://")
        app.state.session_signer.login(response, name, secure=secure)
        devices.remember(request, response, name, secure=secure)
        csrf.rotate(request, response)
        return response

    @portal.get("/logout", response_class=HTMLResponse)
    def logout_confirm(request: Request) -> Response:
        # Where a hub's "sign out" lands (the provider's end_session_endpoint). A GET must not sign anyone out (a
        # link or an <img> on any page could), so it asks, and the button POSTs with a form token.
        # ref: OpenID Connect RP-Initiated Logout 1.0 §2 (the OP should ask the user whether to log out).
        return render(request, "logout.html", user=current_user(request))

    @portal.post("/logout", response_class=HTMLResponse)
    def logout(request: Request, csrf_token: str = Form("", alias=CSRF_FIELD)) -> Response:
        if not csrf.check(request, csrf_token):
            return render(request, "logout.html", status=403, user=current_user(request),
                          error="That sign-out did not come from this site's own button, so nothing was changed.")  # fmt: skip
        response = RedirectResponse("/", status_code=303)
        app.state.session_signer.logout(response)
        csrf.rotate(request, response)
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
    # Hub requests and the fleet dashboard (issue 13), when the portal knows its catalog (requests_pages.mount).
    # Sign-in is what every student needs: a request database that cannot be opened must not take it down.
    try:
        from hubfleet.web.requests_pages import mount as mount_requests

        mount_requests(app)
    except Exception:  # noqa: BLE001
        logging.getLogger(__name__).exception("hub requests and the dashboard are off: they could not start")
    return app


def _duration(seconds: float) -> str:
    if seconds < 60:
        n = max(1, math.ceil(seconds))
        return f"{n} second{'s' if n != 1 else ''}"
    n = math.ceil(seconds / 60)
    return f"{n} minute{'s' if n != 1 else ''}"


def serve_catalog(catalog: Path, state: Path, public_url: str, *, secrets: Path | None = None,
                  clients: Path | None = None, host: str = "127.0.0.1", port: int = 8080,
                  at: dt.date | None = None, every: float = 60.0, wake: bool = False) -> None:
    """Serve the portal over HTTP for a fleet it does not run (Kubernetes): its state is written from the catalog
    (``catalog_state.py``) now and every ``every`` seconds (catalog edits via git-sync, phases by date, a new hub's
    client secret), its own secrets copied from ``secrets`` (a mounted Secret) before the app reads them.
    ``wake``: be the waker of hibernated hubs (``kubernetes_waking``, with the pod's service account)."""
    import threading

    import uvicorn

    from hubfleet.web.catalog_state import PORTAL_SECRET_FILES, CatalogState, copy_secret_files

    state = state.resolve()
    if secrets is not None:
        missing = set(PORTAL_SECRET_FILES) - set(copy_secret_files(secrets, state / "portal", PORTAL_SECRET_FILES))
        if missing:
            raise SystemExit(f"hubfleet portal: {secrets} lacks {', '.join(sorted(missing))}; the fleet's apply "
                             "fills the portal's Secret (hubfleet-portal) once, check it ran")
    writer = CatalogState(catalog, state, public_url.rstrip("/"), clients, (lambda: at) if at else dt.date.today)
    if writer.refresh() is None:
        raise SystemExit(2)
    stop = threading.Event()

    def refresh_forever() -> None:
        while not stop.wait(every):
            try:
                writer.refresh()
            except Exception as exc:  # noqa: BLE001 - keep serving the last good state, say why
                print(f"hubfleet portal: refresh failed: {type(exc).__name__}: {exc}", flush=True)

    threading.Thread(target=refresh_forever, name="catalog-refresh", daemon=True).start()
    try:
        # As main(): one worker (codes in memory), no proxy headers (the peer is the ingress), keep-alive longer
        # than the ingress's (nginx: 60 s upstream keep-alive) so the ingress is the side that closes.
        source = PortalSource(state)
        waking = kubernetes_waking(source.fleet, state=state) if wake else None
        uvicorn.run(create_app(source, waking=waking), host=host, port=port, log_level="warning",
                    access_log=False, proxy_headers=False, timeout_keep_alive=75)
    finally:
        stop.set()


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="Serve the hubfleet portal for one state dir.")
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--uds", type=Path, help="Listen on this unix socket (behind the front door; trusts the "
                        "X-Forwarded-For entry the front door appends).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    # A fleet whose hubs run elsewhere (Kubernetes; `hubfleet portal serve` runs this): state from the catalog.
    parser.add_argument("--catalog", type=Path, help="Write the state from this catalog (serve_catalog).")
    parser.add_argument("--public-url", help="With --catalog: where browsers reach the portal.")
    parser.add_argument("--secrets", type=Path, help="With --catalog: the portal's mounted Secret.")
    parser.add_argument("--clients", type=Path, help="With --catalog: the hubs' client secrets, one file each.")
    parser.add_argument("--at", type=dt.date.fromisoformat, help="With --catalog: plan for this date, not today.")
    parser.add_argument("--wake", action="store_true", help="With --catalog: wake hibernated Kubernetes hubs (the "
                        "pod's service account scales their hub and proxy Deployments).")
    args = parser.parse_args(argv)
    if args.catalog is not None:
        if not args.public_url:
            parser.error("--catalog needs --public-url")
        serve_catalog(args.catalog, args.state, args.public_url, secrets=args.secrets, clients=args.clients,
                      host=args.host, port=args.port, at=args.at, wake=args.wake)
        return
    app = create_app(PortalSource(args.state.resolve()), behind_front_door=args.uds is not None)
    # proxy_headers off: uvicorn would take X-Forwarded-For from any local peer; client_address decides instead.
    # Access log off, CHP already logs every request. One worker on purpose: oidc.py keeps its one-time
    # authorization codes (and throttle.py its counters) in this process.
    where = {"uds": str(args.uds)} if args.uds else {"host": args.host, "port": args.port}
    # timeout_keep_alive: the front door (node's keep-alive agent, 5 s) must always be the side that closes an idle
    # connection; with uvicorn's own 5 s default both close at once, and a request node sends on a connection uvicorn
    # is just closing fails as CHP's "503: Proxy Target Missing" (seen as 500s at hub sign-in under a class burst).
    uvicorn.run(app, **where, log_level="warning", access_log=False, proxy_headers=False, timeout_keep_alive=75)


if __name__ == "__main__":
    main()
