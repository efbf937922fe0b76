"""A Kubernetes API server over HTTPS for what KubeSpawner (kubernetes_asyncio) uses, on `FakeCluster`'s store.

Why here (``hubfleet.testing``) and not under ``tests/``: the z2jh test tier, the spawn benchmark and the
backend contract suite all run against it, and benchmarks cannot import from ``tests/``. It sits in the top
import layer; nothing in hubfleet's product code imports it.

Faithful (KubeSpawner and the kubernetes clients run unpatched against it):
- REST paths ``/api/v1/[namespaces/{ns}/]{plural}[/{name}]`` and ``/apis/{group}/{version}/...`` for every kind
  the store serves (FakeCluster's built-ins plus Pod, Event, PodDisruptionBudget); GET, LIST, POST, PUT,
  DELETE; Kubernetes ``Status`` objects for 401/404/405/409/422 errors;
- ``labelSelector`` (FakeCluster's parser) and ``fieldSelector`` (``a.b=c``, ``a.b!=c`` over dotted paths;
  KubeSpawner watches events with ``involvedObject.kind=Pod``);
- LIST carries the store's resourceVersion; ``watch=true`` streams ``{"type", "object"}`` lines from a
  resourceVersion (``0``/absent = synthetic ADDED for what exists, as the real server does) until
  ``timeoutSeconds``;
- a Pod gets ``status.phase: Pending`` on create, and DELETE sets ``deletionTimestamp`` and leaves the pod for
  the kubelet to stop (``ProcessKubelet``) before it disappears, so KubeSpawner sees a graceful stop;
- bearer-token authentication (the service-account token the kubelet mounts) over TLS with its own CA, so
  ``load_incluster_config()`` works as in a pod.

- API discovery (``/api``, ``/apis``, ``/api/v1``, ``/apis/{group}/{version}``) for the kinds the store serves,
  so the dynamic client works (the controller's ``KubernetesCluster``); with ``coordination.k8s.io/v1`` Leases
  (a built-in kind of FakeCluster) and their optimistic concurrency: a PUT with a stale resourceVersion is 409.

Not faithful (on purpose, say so if a test needs it): no RBAC (any valid token may do anything), no PATCH, no
admission webhooks or quotas, no 410 Gone (the whole event history is kept), no garbage collection by
ownerReferences, no aggregated discovery (the dynamic client falls back to the legacy documents). Writes made directly on the store (the test's own calls)
are streamed to watchers like any other.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

import tornado.httpserver
import tornado.iostream
import tornado.netutil
import tornado.web

from hubfleet.backends.kubernetes.cluster import (
    Conflict,
    Invalid,
    KindInfo,
    NotFound,
    UnsupportedKind,
)
from hubfleet.backends.kubernetes.fake import parse_label_selector

from .servedcluster import EVENT, POD, SERVED_KINDS, ServedCluster, now  # noqa: F401 - kubeapi's names


# ------------------------------------------------------------------------------------------ selectors


def parse_field_selector(selector: str) -> Callable[[dict], bool]:
    tests = []
    for term in filter(None, (t.strip() for t in selector.split(","))):
        neg = "!=" in term
        path, _, value = term.partition("!=" if neg else ("==" if "==" in term else "="))
        if not path:
            raise Invalid(f"invalid field selector: {term!r}")
        tests.append((path.strip().split("."), value.strip(), neg))

    def match(obj: dict) -> bool:
        for path, value, neg in tests:
            node: object = obj
            for part in path:
                node = node.get(part) if isinstance(node, dict) else None
            if (str(node if node is not None else "") == value) == neg:
                return False
        return True

    return match


# ------------------------------------------------------------------------------------------------ HTTP


def status_body(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


ERRORS = {NotFound: (404, "NotFound"), Conflict: (409, "AlreadyExists"), Invalid: (422, "Invalid"),
          UnsupportedKind: (404, "NotFound")}


class ResourceHandler(tornado.web.RequestHandler):
    def initialize(self, api: KubeApiServer) -> None:
        self.api = api

    def prepare(self) -> None:
        if self.request.headers.get("Authorization") != f"Bearer {self.api.token}":
            self.fail(401, "Unauthorized", "Unauthorized")

    def fail(self, code: int, reason: str, message: str) -> None:
        self.set_status(code)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(status_body(code, reason, message)))

    def resolve(self, group: str | None, version: str, plural: str) -> KindInfo:
        api_version = f"{group}/{version}" if group else version
        for info in self.api.cluster._kinds.values():
            if info.api_version == api_version and info.plural == plural:
                return info
        raise UnsupportedKind(f"the server could not find the requested resource ({api_version} {plural})")

    def body(self) -> dict:
        return json.loads(self.request.body or b"{}")

    def reply(self, obj: dict, code: int = 200) -> None:
        self.set_status(code)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(obj))

    async def _serve(self, verb: str, version: str, plural: str, group: str | None = None, ns: str | None = None,
                     name: str | None = None) -> None:
        cluster = self.api.cluster
        ns, name = (unquote(ns) if ns else None), (unquote(name) if name else None)
        try:
            info = self.resolve(group, version, plural)
            self.api.requests[(verb, info.kind)] += 1  # every request a client sent, answered or refused
            if verb == "GET" and name is None:
                if self.get_query_argument("watch", "").lower() in ("true", "1"):
                    return await self.watch(info, ns)
                return self.reply(self.list_objects(info, ns))
            if verb == "GET":
                return self.reply(cluster.get(info.api_version, info.kind, ns, name))
            if verb == "POST":
                obj = self.body()
                if info.namespaced:
                    obj.setdefault("metadata", {}).setdefault("namespace", ns)
                return self.reply(cluster.create(obj), 201)
            if verb == "PUT":
                return self.reply(cluster.replace(self.body()))
            if verb == "DELETE":
                obj = cluster.get(info.api_version, info.kind, ns, name)
                cluster.delete(info.api_version, info.kind, ns, name)
                return self.reply(obj)
        except tuple(ERRORS) as exc:
            code, reason = ERRORS[type(exc)]
            if isinstance(exc, Conflict) and "modified" in str(exc):
                reason = "Conflict"
            return self.fail(code, reason, str(exc))
        self.fail(405, "MethodNotAllowed", f"{verb} is not supported by this fake API server")

    def list_objects(self, info: KindInfo, ns: str | None) -> dict:
        cluster = self.api.cluster
        fields = parse_field_selector(self.get_query_argument("fieldSelector", ""))
        with cluster.lock:
            items = cluster.list(info.api_version, info.kind, ns, self.get_query_argument("labelSelector", ""))
            revision = cluster.revision
        return {"kind": f"{info.kind}List", "apiVersion": info.api_version,
                "metadata": {"resourceVersion": str(revision)}, "items": [o for o in items if fields(o)]}

    async def watch(self, info: KindInfo, ns: str | None) -> None:
        cluster = self.api.cluster
        labels = parse_label_selector(self.get_query_argument("labelSelector", ""))
        fields = parse_field_selector(self.get_query_argument("fieldSelector", ""))
        timeout = float(self.get_query_argument("timeoutSeconds", "300"))
        since = self.get_query_argument("resourceVersion", "") or "0"

        def wanted(obj: dict) -> bool:
            meta = obj.get("metadata", {})
            return (obj.get("apiVersion"), obj.get("kind")) == (info.api_version, info.kind) and \
                (ns is None or meta.get("namespace") == ns) and labels(meta.get("labels") or {}) and fields(obj)

        self.set_header("Content-Type", "application/json")
        with cluster.lock:
            if since == "0":
                pending = [("ADDED", o) for o in cluster.list(info.api_version, info.kind, ns) if wanted(o)]
                position = len(cluster.history)
            else:
                position = next((i for i, (rv, _, _) in enumerate(cluster.history) if rv > int(since)),
                                len(cluster.history))
                pending = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        changed = self.api.subscribe()
        try:
            while True:
                with cluster.lock:
                    fresh = cluster.history[position:]
                    position += len(fresh)
                pending += [(kind, obj) for _, kind, obj in fresh if wanted(obj)]
                for kind, obj in pending:
                    self.write(json.dumps({"type": kind, "object": obj}) + "\n")
                if pending:
                    await self.flush()
                pending = []
                remaining = deadline - loop.time()
                if remaining <= 0 or self.request.connection.stream.closed():
                    break
                changed.clear()
                try:
                    await asyncio.wait_for(changed.wait(), min(remaining, 1.0))
                except asyncio.TimeoutError:
                    pass
        except tornado.iostream.StreamClosedError:
            return
        finally:
            self.api.unsubscribe(changed)
        self.finish()

    async def get(self, **route: str | None) -> None:
        await self._serve("GET", **route)

    async def post(self, **route: str | None) -> None:
        await self._serve("POST", **route)

    async def put(self, **route: str | None) -> None:
        await self._serve("PUT", **route)

    async def delete(self, **route: str | None) -> None:
        await self._serve("DELETE", **route)


class VersionHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.finish({"major": "1", "minor": "32", "gitVersion": "v1.32.0-hubfleet-fake", "platform": "linux/amd64"})


class DiscoveryHandler(tornado.web.RequestHandler):
    """API discovery, enough for the dynamic client (``KubernetesCluster``): ``/api``, ``/apis``, and the resource
    list of each served group version, from the store's kinds. Verbs listed are the ones this server answers."""

    def initialize(self, api: KubeApiServer) -> None:
        self.api = api

    def prepare(self) -> None:
        if self.request.headers.get("Authorization") != f"Bearer {self.api.token}":
            self.set_status(401)
            self.finish(json.dumps(status_body(401, "Unauthorized", "Unauthorized")))

    def get(self, group: str | None = None, version: str | None = None) -> None:
        kinds = list(self.api.cluster._kinds.values())
        path = self.request.path.rstrip("/")
        if path == "/api":
            return self.finish({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if path == "/apis":
            groups: dict[str, list[str]] = {}
            for info in kinds:
                if "/" in info.api_version:
                    g, v = info.api_version.split("/")
                    if v not in groups.setdefault(g, []):
                        groups[g].append(v)
            return self.finish({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                 "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}} for g, vs in groups.items()]})
        group_version = f"{group}/{version}" if group else version
        resources = [{"name": i.plural, "singularName": i.kind.lower(), "namespaced": i.namespaced, "kind": i.kind,
                      "verbs": ["create", "delete", "get", "list", "update", "watch"]}
                     for i in kinds if i.api_version == group_version]
        if not resources:
            self.set_status(404)
            return self.finish(json.dumps(status_body(404, "NotFound", f"{group_version} is not served")))
        self.finish({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                     "resources": resources})


_PATH = r"(?:namespaces/(?P<ns>[^/]+)/)?(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?/?"


class KubeApiServer:
    """Serve a ServedCluster over HTTPS on ``host``:<free port>, in a thread with its own event loop.

    ``ca_dir`` receives ``ca.crt`` (self-signed for the host's IP); ``token`` is the one bearer token accepted.
    ``call(fn)`` runs ``fn`` on the server's loop (the kubelet's tasks live there).
    """

    def __init__(self, cluster: ServedCluster, ca_dir: Path, host: str = "127.0.0.1"):
        self.cluster, self.host = cluster, host
        self.token = secrets.token_urlsafe(32)
        self.ca_dir = Path(ca_dir)
        # Requests over HTTP by (verb, kind) (a watch counts once); the kubelet and tests using the store directly
        # are not here.
        self.requests: Counter[tuple[str, str]] = Counter()
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._events: set[asyncio.Event] = set()
        self._thread: threading.Thread | None = None
        self._server: tornado.httpserver.HTTPServer | None = None
        cluster.listeners.append(self._notify)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self._events.add(event)
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        self._events.discard(event)

    def _notify(self, kind: str, obj: dict) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(lambda: [e.set() for e in list(self._events)])

    def _certificate(self) -> ssl.SSLContext:
        self.ca_dir.mkdir(parents=True, exist_ok=True)
        cert, key = self.ca_dir / "ca.crt", self.ca_dir / "tls.key"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", "2", "-subj", "/CN=kubernetes", "-addext",
             f"subjectAltName=IP:{self.host},DNS:kubernetes.default.svc", "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )
        key.chmod(0o600)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context

    def start(self) -> KubeApiServer:
        context = self._certificate()
        ready = threading.Event()

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            routes = [
                (r"/version/?", VersionHandler),
                (r"/api/?", DiscoveryHandler, {"api": self}),
                (r"/apis/?", DiscoveryHandler, {"api": self}),
                (r"/api/(?P<version>v1)/?", DiscoveryHandler, {"api": self}),
                (r"/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/?", DiscoveryHandler, {"api": self}),
                (r"/api/(?P<version>v1)/" + _PATH, ResourceHandler, {"api": self}),
                (r"/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/" + _PATH, ResourceHandler, {"api": self}),
            ]
            app = tornado.web.Application(routes)
            self._server = tornado.httpserver.HTTPServer(app, ssl_options=context)
            sockets = tornado.netutil.bind_sockets(0, self.host)
            self.port = sockets[0].getsockname()[1]
            self._server.add_sockets(sockets)
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-kube-api", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def writes(self, *, but: tuple[str, ...] = ()) -> int:
        """Write requests received so far, leaving out the kinds in ``but`` (e.g. "Lease", a writer lock)."""
        return sum(n for (verb, kind), n in self.requests.items() if verb != "GET" and kind not in but)

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig for this server (its CA, its token), as `kubectl`/the kubernetes client read it (JSON is
        YAML)."""
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url,
                                                      "certificate-authority": str(self.ca_dir / "ca.crt")}}],
            "users": [{"name": "fake", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        }))
        return path

    def call(self, fn: Callable[[], object]) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(fn)

    def run(self, coro, timeout: float = 60):  # noqa: ANN001 - a coroutine to run on the server's loop
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop is None:
            return
        loop = self.loop

        async def close() -> None:
            if self._server is not None:
                self._server.stop()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self.loop = None

