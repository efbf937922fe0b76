"""The fleet portal: the page behind the front door's ``/`` that lists every hub and its presentations.

It reads ``<state>/fleet.json`` (written by the local backend at every apply and reconcile) on each request, so
it never needs a restart and holds no state of its own. Run detached by the front door as
``python -m hubfleet.web.portal --state <state> --port <port>``.

Extending it (SSO, "your courses"): ``create_app`` builds the app from a ``PortalSource``; add routes in
``create_app`` or mount a router on the returned app, and narrow ``hubs_for`` once a user is known.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates

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

    def hubs_for(self, fleet: dict[str, Any], user: str | None = None) -> list[dict[str, Any]]:
        """The hubs to show. Everyone sees every hub until SSO tells us who the user is."""
        return fleet.get("hubs", [])


def _date(text: str | None) -> str:
    if not text:
        return ""
    return dt.date.fromisoformat(text).strftime("%-d %b %Y")


def create_app(source: PortalSource) -> FastAPI:
    app = FastAPI(title="hubfleet portal", docs_url=None, redoc_url=None, openapi_url=None)
    TEMPLATES.env.filters["date"] = _date

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        fleet = source.fleet()
        hubs = source.hubs_for(fleet)
        return TEMPLATES.TemplateResponse(
            request,
            "portal.html",
            {"fleet": fleet, "branding": fleet.get("branding", {}), "hubs": hubs, "phase_label": PHASE_LABEL},
        )

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
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, proxy_headers=True)


if __name__ == "__main__":
    main()
