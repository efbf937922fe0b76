"""The waker: what a hibernated hub's host answers while the hub sleeps (``backends/local/hibernation.py``).

A sleeping hub's front-door route (and its students' hosts below it) points at the portal. This ASGI middleware sits
in front of the portal's own pages and takes every request whose host is a hub's (or below one):

* ``GET``/``HEAD`` starts the hub (once; later requests join the same wake) and answers a short "starting
  <course>…" page that reloads the *same URL* every second (``<meta http-equiv=refresh>``: no JavaScript needed).
  With JavaScript the page does better: it sends a ``HEAD`` of the same URL every ``POLL_MS`` and reloads as soon as
  the answer no longer carries ``x-hubfleet-waking`` (every answer of the waker does), so a person lands on the hub
  within a quarter of a second of it answering rather than within a second.
  The hub's route is switched back to its proxy before the marker goes, so the first reload after the hub is up
  reaches the hub itself, at exactly the URL that was asked, query string and all.
* Any other method (a form ``POST``, an API call) also starts the hub but is **not** replayed: it gets a 503 with
  ``Retry-After`` and a page saying the form was not sent and should be sent again. Replaying a POST later, on the
  person's behalf and without their knowledge, could submit something twice or act on stale input.
* A websocket is never proxied through here: it is refused (no server of a sleeping hub can be running anyway, and
  JupyterLab reconnects on its own once the page is back).

The portal's own "Open" link to a sleeping hub is ``/portal/wake/<hub>/<path>`` on the portal's host: the same
wake and page, then a redirect to the hub once it is up and ready, so it works behind any ingress controller.

The page is a 200 for GETs: a browser mid-wake never sees an error. In the cluster the waker also receives the
hub's own 503s that ingress-nginx intercepts while the hub wakes (``X-Code``, ``X-Namespace`` and
``X-Original-URI`` say which hub and URL); once the hub is ``ready`` such a 503 is the hub's own, and passes as
one. A hub whose host reaches the portal without being asleep (mid-switch, or down) gets the same reloading page
if its process runs, else the portal's usual redirect to its own host.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape

__all__ = ["Waker"]

_PAGES = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")), autoescape=select_autoescape())
_SAFE = frozenset({"GET", "HEAD"})
POLL_MS = 250  # the page's readiness poll (a HEAD to the waker costs it a file stat, not a hub start)
WAKING_HEADER = (b"x-hubfleet-waking", b"1")
WAKE_PREFIX = "/portal/wake/"  # the portal's links to a sleeping hub (``_wake_link``)


class Waker:
    """ASGI middleware. ``fleet()`` reads fleet.json; ``asleep(hub)``/``alive(hub)`` look at the hub's files;
    ``wake(hub)`` blocks until the hub is up (run in a thread, one per hub at a time); ``observe(event, **kw)``
    hears ``wake_started``/``wake_done``/``wake_failed`` (metrics)."""

    def __init__(self, app: Any, *, fleet: Callable[[], dict], asleep: Callable[[str], bool],
                 alive: Callable[[str], bool], wake: Callable[[str], Any],
                 observe: Callable[..., None] = lambda event, **kw: None,
                 ready: Callable[[str], bool] = lambda name: True) -> None:  # fmt: skip
        self.app = app
        self.ready = ready
        self.fleet = fleet
        self.asleep = asleep
        self.alive = alive
        self.wake = wake
        self.observe = observe
        self._waking: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    # -- which hub a host belongs to -------------------------------------------------------------------------------

    def hub_of(self, host: str, hubs: list[dict]) -> dict | None:
        host = host.lower().rstrip(".")
        for hub in hubs:
            own = urlsplit(hub.get("url", "")).netloc.lower()
            # The hub's own host, or a student's server host one label below it (JupyterHub user subdomains).
            if own and (host == own or host.split(".", 1)[-1] == own):
                return hub
        return None

    # -- waking ----------------------------------------------------------------------------------------------------

    def start(self, name: str, reason: str = "request") -> None:
        """Wake ``name`` in the background unless a wake of it is already under way in this process."""
        with self._lock:
            running = self._waking.get(name)
            if running is not None and running.is_alive():
                return
            thread = threading.Thread(target=self._wake, args=(name, reason), name=f"wake-{name}", daemon=True)
            self._waking[name] = thread
            thread.start()

    def _wake(self, name: str, reason: str) -> None:
        t0 = time.monotonic()
        self.observe("wake_started", hub=name, reason=reason)
        try:
            took = self.wake(name)
        except Exception as exc:  # noqa: BLE001 - reported on the next page and in the metrics; the loop restarts it
            self.observe("wake_failed", hub=name, reason=reason, error=str(exc))
            return
        if took is not None:
            self.observe("wake_done", hub=name, reason=reason, seconds=time.monotonic() - t0)

    # -- ASGI ------------------------------------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        fleet = self.fleet()
        if scope["type"] == "http" and scope["path"].startswith(WAKE_PREFIX) and scope["method"] in _SAFE:
            return await self._wake_link(scope, receive, send, fleet)
        hub = self.hub_of(host, fleet.get("hubs", []))
        # A hub's answer ingress-nginx intercepted (custom-http-errors): it names the hub's namespace (= its name).
        intercepted = b"x-code" in headers
        if hub is None and intercepted:
            space = headers.get(b"x-namespace", b"").decode("latin-1")
            hub = next((h for h in fleet.get("hubs", []) if h.get("name") == space), None)
        if hub is None:
            return await self.app(scope, receive, send)
        name = hub["name"]
        if intercepted:
            original = headers.get(b"x-original-uri", b"").decode("latin-1")
            if original.startswith("/") and not original.startswith("//"):
                path, _, query = original.partition("?")
                scope = {**scope, "path": path, "raw_path": path.encode("latin-1"),
                         "query_string": query.encode("latin-1")}
        asleep = self.asleep(name)
        if intercepted and not asleep and self.ready(name):
            # The hub is up and itself answered 503 (a student's server gone, say): not a wake, say so plainly.
            await _answer(send, int(headers.get(b"x-code", b"503") or 503), b"text/plain; charset=utf-8",
                          b"This service is unavailable right now; please try again in a moment.\n",
                          [(b"retry-after", b"5")])
            return
        if not asleep and not self.alive(name):
            return await self.app(scope, receive, send)  # down, not sleeping: the portal's usual redirect
        if scope["type"] == "websocket":
            # Refused before accepting (the client sees 403 and retries later); never proxied, never a wake: no
            # server of a sleeping hub runs, so there is nothing for a kernel's websocket to reach.
            await send({"type": "websocket.close", "code": 1013})
            return
        if headers.get(b"upgrade", b"").lower() == b"websocket":
            # The same upgrade, reaching us as plain HTTP (a server without a websocket implementation).
            await _answer(send, 403, b"text/plain", b"websockets do not pass through the waker; retry once the hub is up\n")
            return
        if asleep:
            await asyncio.to_thread(self.start, name)
        await self._page(scope, receive, send, hub, fleet)

    async def _wake_link(self, scope: dict, receive: Any, send: Any, fleet: dict) -> None:
        """``/portal/wake/<hub>/<path>``, the portal's own link to a sleeping hub: it wakes the hub on any ingress
        (the request reaches the portal's host, not the hub's), shows the same page, and once the hub is up and
        ready sends the browser on to ``<hub url><path>``."""
        name, _, rest = scope["path"][len(WAKE_PREFIX):].partition("/")
        hub = next((h for h in fleet.get("hubs", []) if h.get("name") == name), None)
        if hub is None or not hub.get("url"):
            return await self.app(scope, receive, send)
        if self.asleep(name):
            await asyncio.to_thread(self.start, name)
        elif not (self.alive(name) and not self.ready(name)):
            target = hub["url"].rstrip("/") + "/" + rest.lstrip("/")
            await send({"type": "http.response.start", "status": 303, "headers": [
                (b"location", target.encode("latin-1")), (b"content-length", b"0"), (b"cache-control", b"no-store")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await self._page(scope, receive, send, hub, fleet)

    async def _page(self, scope: dict, receive: Any, send: Any, hub: dict, fleet: dict) -> None:
        method = scope["method"]
        titles = sorted({p.get("title") or p.get("course", "") for p in hub.get("presentations", [])})
        course = ", ".join(t for t in titles if t) or hub["name"]
        query = scope.get("query_string", b"").decode("latin-1")
        here = scope.get("raw_path", scope["path"].encode()).decode("latin-1") + (f"?{query}" if query else "")
        if not here.startswith("/") or here.startswith("//"):
            here = "."  # "//host/..." would make the Continue link leave the hub (the reload itself keeps the URL)
        branding = fleet.get("branding") or {}
        if method in _SAFE:
            status, heading, refresh = 200, f"Starting {course}…", 1
            lines = ["This hub was asleep because nobody used it for a while. It is starting now; this takes a few "
                     "seconds, and this page continues to the page you asked for as soon as it is ready."]
            extra: list[tuple[bytes, bytes]] = [WAKING_HEADER]
        else:
            # Drain the body (it is not kept, so it cannot be replayed), then say so plainly.
            while (await receive()).get("more_body"):
                pass
            status, heading, refresh = 503, f"{course} is starting: please send your form again", 0
            lines = ["This hub was asleep and is starting now. What you sent was NOT received, so nothing was saved "
                     "or submitted.", "Go back, wait a few seconds, and send it again."]
            extra = [(b"retry-after", b"5"), WAKING_HEADER]
        body = _PAGES.get_template("waking.html").render(
            heading=heading, lines=lines, refresh=refresh, poll_ms=POLL_MS, here=here,
            brand=branding.get("name") or fleet.get("fleet"),
            color=branding.get("primary_color") or "#0b4f8a",
        ).encode()
        await _answer(send, status, b"text/html; charset=utf-8", body, extra, head=method == "HEAD")


async def _answer(send: Any, status: int, kind: bytes, body: bytes, extra: list[tuple[bytes, bytes]] = (),
                  head: bool = False) -> None:  # fmt: skip
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", kind), (b"content-length", str(len(body)).encode()), (b"cache-control", b"no-store"),
        *extra]})  # fmt: skip
    await send({"type": "http.response.body", "body": b"" if head else body})


def read_fleet(state: Path) -> dict:
    try:
        return json.loads((state / "fleet.json").read_text())
    except (FileNotFoundError, ValueError):
        return {"hubs": []}
