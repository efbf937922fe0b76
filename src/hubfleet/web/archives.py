"""The portal's "My archives" page: a logged-in student's archived course folders, with download links.

Included by the portal under ``/portal`` (the session cookie's path), so the URLs are ``/portal/archives/`` (the
page), ``/portal/archives/api`` (JSON) and ``/portal/archives/<PRESENTATION>/<student>.tar.gz`` (and
``.manifest.json``). The stub left in each student's home (``WHERE-ARE-MY-FILES.txt``) points here.

Who may download what: the user comes from the portal session only (``require_user``), and the file is looked up in
the ledger *by that user's name*. The student segment of the URL is checked against the session user (403 if it
names someone else) and the archive's location always comes from the ledger row, never from the request, so no
path in a URL can reach another student's archive or any other file. Purged or unknown archives are 404.

The state dir is the portal's own (``app.state.source.state``, set by ``portal.create_app``).
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse

from hubfleet.lifecycle.ledger import DEFAULT_NAME, ArchiveRecord, Ledger
from hubfleet.lifecycle.store import manifest_location, open_location
from hubfleet.web.auth import require_user

__all__ = ["router"]

router = APIRouter()
_CHUNK = 1 << 20


def _state(request: Request) -> Path:
    source = getattr(request.app.state, "source", None)
    state = getattr(request.app.state, "state_dir", None) or getattr(source, "state", None)
    if state is None:
        raise HTTPException(500, "the portal does not know its state dir")
    return Path(state)


def _mine(request: Request, user: str) -> list[ArchiveRecord]:
    """This user's archives that still exist (not purged). No ledger yet: none (and none is created)."""
    state = _state(request)
    if not (state / DEFAULT_NAME).exists():
        return []
    with Ledger(state) as ledger:
        # The current archive of each presentation (a student archived again has older, superseded ones).
        return [r for r in ledger.for_student(user) if not r.purged_at and r.verified_at and not r.superseded]


def _row(request: Request, user: str, presentation: str, student: str) -> ArchiveRecord:
    if student != user:
        raise HTTPException(403, "You can only download your own archives.")
    for row in _mine(request, user):
        if row.presentation == presentation:
            return row
    raise HTTPException(404, f"No archive of {presentation} for you (never archived, or deleted after retention).")


def _serve(location: str, filename: str, media_type: str) -> Response:
    headers = {"Cache-Control": "private, no-store"}  # a shared lab PC's cache must not keep a student's work
    if "://" not in location or location.startswith("file://"):
        path = Path(location.removeprefix("file://"))
        if not path.is_file():
            raise HTTPException(404, "The archive is recorded but missing from the store; the platform team is told.")
        return FileResponse(path, media_type=media_type, filename=filename, headers=headers)

    def chunks() -> Iterator[bytes]:
        with open_location(location) as stream:
            while chunk := stream.read(_CHUNK):
                yield chunk

    headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return StreamingResponse(chunks(), media_type=media_type, headers=headers)


@router.get("/archives/api")
def archives_json(request: Request, user: str = Depends(require_user)) -> JSONResponse:
    return JSONResponse([_describe(r) for r in _mine(request, user)])


@router.get("/archives/", response_class=HTMLResponse)
def archives_page(request: Request, user: str = Depends(require_user)) -> HTMLResponse:
    rows = _mine(request, user)
    items = "".join(
        f"<li><strong>{html.escape(d['presentation'])}</strong>: archived {html.escape(d['verified_at'][:10])}, "
        f"{d['megabytes']} MB, kept until {html.escape(d['keep_until'] or 'further notice')}. "
        f'<a href="{html.escape(d["download"])}">Download (.tar.gz)</a> · '
        f'<a href="{html.escape(d["manifest"])}">file list with checksums</a>'
        f"<br><small>sha256 {html.escape(d['sha256'])}</small></li>"
        for d in map(_describe, rows)
    )
    body = (f"<ul id='hubfleet-archives'>{items}</ul>" if rows else
            "<p id='hubfleet-no-archives'>You have no archived course folders.</p>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>My archives</title></head><body>"
        f"<h1>My archives</h1><p>Signed in as {html.escape(user)}. When a presentation ends, your course folder "
        "is kept here as one archive; unpack it with any archive tool (<code>tar xzf FILE</code>).</p>"
        f"{body}<p><a href='../'>Back to your courses</a></p></body></html>"
    )
    return HTMLResponse(page, headers={"Cache-Control": "private, no-store"})


@router.get("/archives/{presentation}/{filename}")
def download(presentation: str, filename: str, request: Request, user: str = Depends(require_user)) -> Response:
    for suffix, media in ((".tar.gz", "application/gzip"), (".manifest.json", "application/json")):
        if filename.endswith(suffix):
            row = _row(request, user, presentation, filename.removesuffix(suffix))
            location = row.location if suffix == ".tar.gz" else manifest_location(row.location)
            return _serve(location, f"{presentation}-{user}{suffix}", media)
    raise HTTPException(404, "No such file.")


def _describe(row: ArchiveRecord) -> dict:
    base = f"{row.presentation}/{row.student}"
    return {
        "presentation": row.presentation,
        "verified_at": row.verified_at.isoformat() if row.verified_at else "",
        "keep_until": row.keep_until,
        "sha256": row.sha256,
        "bytes": row.bytes,
        "megabytes": f"{row.bytes / 1e6:.1f}",
        "download": f"{base}.tar.gz",  # relative to /portal/archives/, so it works behind any prefix
        "manifest": f"{base}.manifest.json",
    }
