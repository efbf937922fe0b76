"""The one JupyterHub REST client both backends use (JupyterHub 6 API).

Each operation is written once, as a generator that yields ``_Call`` (an HTTP request) or ``_Sleep`` steps and
receives the results; ``HubClient`` (sync, ``httpx.Client``) and ``AsyncHubClient`` (``httpx.AsyncClient``)
only drive those generators. So pagination, error mapping and readiness polling behave identically in both.

Every write request (POST/PUT/PATCH/DELETE) that is sent increments ``.writes``, so tests and ``plan`` can
assert "zero writes" after a no-op sync.

Roles: JupyterHub 5/6 has no REST API to create or edit roles; roles come only from ``JupyterHub.load_roles``
in the hub's config (applied at hub start). The API only *shows* role names in user/group/service models
(scopes ``read:roles:users`` / ``read:roles:groups``). So scoped roles are a config concern of the backend
renderer, and this client deliberately has no ``roles()``/``create_role()``.
ref: https://jupyterhub.readthedocs.io/en/stable/reference/rest-api.html
ref: https://jupyterhub.readthedocs.io/en/stable/rbac/roles.html#defining-roles
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from hubfleet.hubapi.tls import tls_context

__all__ = ["AsyncHubClient", "HubAPIError", "HubClient", "ServerNotReady", "fan_out"]

# JupyterHub only returns pagination metadata (and honours offset/limit as real pages) when asked with this
# media type; without it GET /users silently truncates at api_page_max_limit (200 by default).
# ref: https://jupyterhub.readthedocs.io/en/stable/reference/rest-api.html#pagination
PAGINATION_MEDIA_TYPE = "application/jupyterhub-pagination+json"
PAGE_LIMIT = 200  # JupyterHub's default api_page_max_limit; the hub clamps larger values anyway
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

T = TypeVar("T")


class HubAPIError(RuntimeError):
    """A JupyterHub API request failed; carries the HTTP status and the hub's own message."""

    def __init__(self, status: int, message: str, *, method: str, url: str) -> None:
        self.status = status
        self.message = message
        self.method = method
        self.url = url
        super().__init__(f"{method} {url} -> {status}: {message}")


class ServerNotReady(RuntimeError):
    """``wait_ready`` gave up: the spawn failed, or did not finish within the timeout."""


@dataclass(frozen=True)
class _Call:
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    paginated: bool = False
    ok_statuses: frozenset[int] = field(default_factory=frozenset)  # non-2xx answers the operation handles itself


@dataclass(frozen=True)
class _Sleep:
    seconds: float


_Op = Generator["_Call | _Sleep", Any, T]


def _q(name: str) -> str:
    return quote(name, safe="")


# -- operations: each written once, driven by both clients -----------------------------------------------------


def _paged(path: str) -> _Op[list[dict[str, Any]]]:
    items: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = yield _Call("GET", path, params={"offset": offset, "limit": PAGE_LIMIT}, paginated=True)
        if isinstance(page, list):  # a hub too old to paginate returns the whole list
            return page
        items.extend(page["items"])
        nxt = (page.get("_pagination") or {}).get("next")
        if not nxt:
            return items
        offset = int(nxt["offset"])


def _one(method: str, path: str, body: Any = None) -> _Op[Any]:
    return (yield _Call(method, path, json=body))


def _get_or_none(path: str) -> _Op[dict[str, Any] | None]:
    result = yield _Call("GET", path, ok_statuses=frozenset({404}))
    return None if result is _NOT_FOUND else result


def _create_users(names: list[str]) -> _Op[list[dict[str, Any]]]:
    if not names:
        return []
    # JupyterHub answers 409 only when *every* name exists (partial overlaps are skipped silently), so 409
    # means "nothing to create", which is success for an idempotent sync.
    result = yield _Call("POST", "users", json={"usernames": list(names)}, ok_statuses=frozenset({409}))
    return [] if result is _CONFLICT else result


# hubfleet's bulk enrolment endpoint inside the hub (hubfleet.enrol.endpoint), when the hub offers it.
BULK_ENROL_PATH = "hubfleet/enrol"


def _bulk_enrol_info() -> _Op[dict[str, Any] | None]:
    # 404: a hub without the endpoint (another version, another config); 403: it is there but this token lacks
    # custom:hubfleet:enrol. Either way (None) the REST path is used.
    result = yield _Call("GET", BULK_ENROL_PATH, ok_statuses=frozenset({403, 404}))
    return result if isinstance(result, dict) and result.get("version") else None


def _bulk_enrol(users: list[str], groups: dict[str, list[str]],
                remove: dict[str, list[str]] | None = None) -> _Op[dict[str, Any]]:
    body = {"users": users, "groups": groups} | ({"remove": remove} if remove else {})
    return (yield _Call("POST", BULK_ENROL_PATH, json=body))


def _wait_ready(user: str, server_name: str, timeout: float) -> _Op[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    delay = 0.2
    path = _server_path(user, server_name)
    while True:
        model = yield from _get_or_none(path)
        if model and model.get("ready"):
            return model
        if model is None or (model.get("stopped") and not model.get("pending")):
            raise ServerNotReady(f"server {user}/{server_name} is not starting (stopped, no spawn pending)")
        if time.monotonic() >= deadline:
            raise ServerNotReady(f"server {user}/{server_name} not ready after {timeout:g}s (pending={model.get('pending')})")
        yield _Sleep(delay)
        delay = min(delay * 1.5, 2.0)


def _server_path(user: str, server_name: str) -> str:
    return f"users/{_q(user)}/servers/{_q(server_name)}" if server_name else f"users/{_q(user)}/server"


_NOT_FOUND = object()
_CONFLICT = object()


# -- drivers -------------------------------------------------------------------------------------------------------


class _Base:
    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0) -> None:
        base = base_url.rstrip("/")
        # Accept the hub's public URL (http://host/hubs/x/) or its API URL (.../hub/api).
        self.api_url = base if base.endswith("/hub/api") else base + "/hub/api"
        self.timeout = timeout
        self.writes = 0  # write requests sent (whatever their outcome)
        self._headers = {"Authorization": f"token {token}", "Accept": "application/json"}

    def _request_args(self, call: _Call) -> dict[str, Any]:
        if call.method in _WRITE_METHODS:
            self.writes += 1
        headers = {"Accept": PAGINATION_MEDIA_TYPE} if call.paginated else {}
        return {"method": call.method, "url": call.path, "params": call.params, "json": call.json, "headers": headers}

    @staticmethod
    def _result(call: _Call, resp: httpx.Response) -> Any:
        if resp.status_code in call.ok_statuses:
            return _NOT_FOUND if resp.status_code == 404 else _CONFLICT
        if resp.status_code >= 400:
            try:
                message = resp.json().get("message") or resp.text
            except ValueError:
                message = resp.text.strip()[:500] or resp.reason_phrase
            raise HubAPIError(resp.status_code, message, method=call.method, url=str(resp.request.url))
        if resp.status_code == 204 or not resp.content:
            return None
        ctype = resp.headers.get("content-type", "")
        return resp.json() if "json" in ctype else resp.text


class HubClient(_Base):
    """Synchronous client. ``HubClient("http://127.0.0.1:8000/hubs/tm351-2026j/", token)``."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(base_url, token, timeout=timeout)
        self._http = httpx.Client(base_url=self.api_url + "/", headers=self._headers, timeout=timeout, transport=transport,
                                  verify=tls_context())

    def _run(self, op: _Op[T]) -> T:
        try:
            step = next(op)
            while True:
                if isinstance(step, _Sleep):
                    time.sleep(step.seconds)
                    step = op.send(None)
                else:
                    step = op.send(self._result(step, self._http.request(**self._request_args(step))))
        except StopIteration as done:
            return done.value

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self) -> dict[str, Any]:
        """GET /info (scope ``read:hub``): versions, spawner and authenticator classes."""
        return self._run(_one("GET", "info"))

    def version(self) -> str:
        """GET / (no auth needed): the hub's version; a cheap liveness probe."""
        return self._run(_one("GET", ""))["version"]

    def users(self) -> list[dict[str, Any]]:
        return self._run(_paged("users"))

    def user(self, name: str) -> dict[str, Any] | None:
        return self._run(_get_or_none(f"users/{_q(name)}"))

    def create_users(self, names: Iterable[str]) -> list[dict[str, Any]]:
        """One POST /users for all names; returns the users actually created (existing ones are skipped)."""
        return self._run(_create_users(list(names)))

    def bulk_enrol_info(self) -> dict[str, Any] | None:
        """The bulk endpoint's answer (its version; from version 2 every group's members), None if not offered."""
        return self._run(_bulk_enrol_info())

    def bulk_enrol(self, users: Iterable[str], groups: dict[str, list[str]],
                   remove: dict[str, list[str]] | None = None) -> dict[str, Any]:
        return self._run(_bulk_enrol(list(users), groups, remove))

    def delete_user(self, name: str) -> None:
        self._run(_one("DELETE", f"users/{_q(name)}"))

    def groups(self) -> list[dict[str, Any]]:
        return self._run(_paged("groups"))

    def group(self, name: str) -> dict[str, Any] | None:
        return self._run(_get_or_none(f"groups/{_q(name)}"))

    def create_group(self, name: str, users: Iterable[str] = ()) -> dict[str, Any]:
        return self._run(_one("POST", f"groups/{_q(name)}", {"users": list(users)}))

    def add_group_members(self, group: str, names: Iterable[str]) -> dict[str, Any]:
        return self._run(_one("POST", f"groups/{_q(group)}/users", {"users": list(names)}))

    def remove_group_members(self, group: str, names: Iterable[str]) -> dict[str, Any]:
        return self._run(_one("DELETE", f"groups/{_q(group)}/users", {"users": list(names)}))

    def delete_group(self, name: str) -> None:
        self._run(_one("DELETE", f"groups/{_q(name)}"))

    def start_server(self, user: str, options: dict[str, Any] | None = None, *, server_name: str = "") -> None:
        """Request a spawn (201 started / 202 pending). ``options`` become ``user_options``, which JupyterHub 6
        only applies if the spawner sets ``apply_user_options``. ref: DESIGN.md "Known traps"."""
        self._run(_one("POST", _server_path(user, server_name), {"user_options": options} if options else None))

    def stop_server(self, user: str, *, server_name: str = "") -> None:
        self._run(_one("DELETE", _server_path(user, server_name)))

    def server_status(self, user: str, *, server_name: str = "") -> dict[str, Any] | None:
        """The server model (``ready``, ``pending``, ``stopped``, ``url``...) or None if unknown."""
        return self._run(_get_or_none(_server_path(user, server_name)))

    def wait_ready(self, user: str, timeout: float = 60.0, *, server_name: str = "") -> dict[str, Any]:
        return self._run(_wait_ready(user, server_name, timeout))


class AsyncHubClient(_Base):
    """Async twin of ``HubClient`` (same methods, awaited), for syncing many hubs concurrently via ``fan_out``."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 30.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        super().__init__(base_url, token, timeout=timeout)
        self._http = httpx.AsyncClient(base_url=self.api_url + "/", headers=self._headers, timeout=timeout,
                                       transport=transport, verify=tls_context())

    async def _run(self, op: _Op[T]) -> T:
        try:
            step = next(op)
            while True:
                if isinstance(step, _Sleep):
                    await asyncio.sleep(step.seconds)
                    step = op.send(None)
                else:
                    resp = await self._http.request(**self._request_args(step))
                    step = op.send(self._result(step, resp))
        except StopIteration as done:
            return done.value

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncHubClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def info(self) -> dict[str, Any]:
        return await self._run(_one("GET", "info"))

    async def version(self) -> str:
        return (await self._run(_one("GET", "")))["version"]

    async def users(self) -> list[dict[str, Any]]:
        return await self._run(_paged("users"))

    async def user(self, name: str) -> dict[str, Any] | None:
        return await self._run(_get_or_none(f"users/{_q(name)}"))

    async def create_users(self, names: Iterable[str]) -> list[dict[str, Any]]:
        return await self._run(_create_users(list(names)))

    async def bulk_enrol_info(self) -> dict[str, Any] | None:
        return await self._run(_bulk_enrol_info())

    async def bulk_enrol(self, users: Iterable[str], groups: dict[str, list[str]],
                         remove: dict[str, list[str]] | None = None) -> dict[str, Any]:
        return await self._run(_bulk_enrol(list(users), groups, remove))

    async def delete_user(self, name: str) -> None:
        await self._run(_one("DELETE", f"users/{_q(name)}"))

    async def groups(self) -> list[dict[str, Any]]:
        return await self._run(_paged("groups"))

    async def group(self, name: str) -> dict[str, Any] | None:
        return await self._run(_get_or_none(f"groups/{_q(name)}"))

    async def create_group(self, name: str, users: Iterable[str] = ()) -> dict[str, Any]:
        return await self._run(_one("POST", f"groups/{_q(name)}", {"users": list(users)}))

    async def add_group_members(self, group: str, names: Iterable[str]) -> dict[str, Any]:
        return await self._run(_one("POST", f"groups/{_q(group)}/users", {"users": list(names)}))

    async def remove_group_members(self, group: str, names: Iterable[str]) -> dict[str, Any]:
        return await self._run(_one("DELETE", f"groups/{_q(group)}/users", {"users": list(names)}))

    async def delete_group(self, name: str) -> None:
        await self._run(_one("DELETE", f"groups/{_q(name)}"))

    async def start_server(self, user: str, options: dict[str, Any] | None = None, *, server_name: str = "") -> None:
        await self._run(_one("POST", _server_path(user, server_name), {"user_options": options} if options else None))

    async def stop_server(self, user: str, *, server_name: str = "") -> None:
        await self._run(_one("DELETE", _server_path(user, server_name)))

    async def server_status(self, user: str, *, server_name: str = "") -> dict[str, Any] | None:
        return await self._run(_get_or_none(_server_path(user, server_name)))

    async def wait_ready(self, user: str, timeout: float = 60.0, *, server_name: str = "") -> dict[str, Any]:
        return await self._run(_wait_ready(user, server_name, timeout))


async def fan_out(items: Iterable[T], fn: Callable[[T], Awaitable[Any]], *, limit: int = 8) -> list[Any]:
    """Run ``fn(item)`` for every item with at most ``limit`` in flight; results in input order.

    Exceptions are returned in place of results (not raised), so one unreachable hub does not hide the
    outcome for the others; the caller reports them.
    """
    gate = asyncio.Semaphore(limit)

    async def one(item: T) -> Any:
        async with gate:
            return await fn(item)

    return await asyncio.gather(*(one(i) for i in items), return_exceptions=True)
