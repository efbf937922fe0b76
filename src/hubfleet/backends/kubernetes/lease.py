"""Leader election over a coordination.k8s.io/v1 Lease, so two controller replicas never act at once.

The protocol is client-go's leaderelection, reduced to what one loop needs:

- ``hold()`` is called before every reconcile step. It reads the Lease; if nobody holds it, we hold it, or the
  holder's record has not changed for ``leaseDurationSeconds`` (it stopped renewing: dead or partitioned), it
  writes itself in as holder with a fresh ``renewTime``. The write is a PUT carrying the resourceVersion it read
  (a create when there is no Lease), so of two controllers racing for the same record the API server lets exactly
  one through and answers the other 409 Conflict; the loser stands by.
- Expiry is judged by *this* process's clock from when it first saw the record unchanged, not by comparing the
  holder's ``renewTime`` with our wall clock, so clock skew between nodes cannot make two leaders (client-go does
  the same). A controller that starts next to a silent Lease therefore waits one full duration before taking over.
- ``release()`` on a clean exit empties ``holderIdentity`` so a successor need not wait out the duration.

A leader renews every step, and ``renew_in_background()`` renews it between and *during* steps: a helm upgrade
can take minutes, longer than the duration, and a Lease left unrenewed that long would let a standby start acting
while the leader still applies. A leader that loses the Lease anyway (partitioned from the API server for a whole
duration) finishes the action at hand and stands by from its next step.
# ref: https://kubernetes.io/docs/concepts/architecture/leases/
# ref: https://github.com/kubernetes/client-go/blob/master/tools/leaderelection/leaderelection.go
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

from hubfleet.backends.base import WriterBusy

from .cluster import Cluster, Conflict, NotFound
from .fleet import MANAGED_BY

API_VERSION = "coordination.k8s.io/v1"
NAME = "hubfleet-controller"
DEFAULT_DURATION = 30  # seconds; client-go's default is 15 with 2s retries, a reconcile step is slower


def identity(command: str | None = None) -> str:
    """Unique per process: the pod name (HOSTNAME in a pod) plus the pid and a nonce, so a restarted container
    in the same pod is a new holder and never mistakes an old record for its own; then the command, so a writer
    refused by the Lease reads who is at work (`hubfleet apply ...` on a laptop, or the controller)."""
    who = f"{os.environ.get('HOSTNAME') or socket.gethostname()}_{os.getpid()}_{secrets.token_hex(3)}"
    return f"{who} `{command[:200]}`" if command else who


def micro_time(at: float) -> str:
    """The API's MicroTime: RFC 3339 with microseconds, UTC."""
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Lease:
    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        name: str = NAME,
        holder: str | None = None,
        duration: int = DEFAULT_DURATION,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        fleet: str | None = None,
    ):
        self.cluster, self.namespace, self.name = cluster, namespace, name
        self.fleet = fleet
        self.holder = holder or identity()
        self.duration = duration
        self.clock, self.wall = clock, wall
        self._seen: tuple[str, float] | None = None  # (resourceVersion, our clock when it first showed)
        self._lock = threading.Lock()  # the loop and the background renewal must not race each other's writes
        self.held = False

    def renew_in_background(self, stop: threading.Event) -> threading.Thread:
        """Renew every third of the duration while we hold the Lease, until ``stop`` is set."""

        def run() -> None:
            while not stop.wait(self.duration / 3):
                if self.held:
                    try:
                        self.hold()
                    except Exception:  # noqa: BLE001 - API server away: the loop's own step reports it
                        pass

        thread = threading.Thread(target=run, name="lease-renewal", daemon=True)
        thread.start()
        return thread

    def _body(self, spec: dict, live: dict | None = None) -> dict:
        meta = {"name": self.name, "namespace": self.namespace, "labels": dict(MANAGED_BY)}
        if live is not None:
            meta = {**live["metadata"], "labels": {**(live["metadata"].get("labels") or {}), **MANAGED_BY}}
        return {"apiVersion": API_VERSION, "kind": "Lease", "metadata": meta, "spec": spec}

    def read(self) -> dict | None:
        try:
            return self.cluster.get(API_VERSION, "Lease", self.namespace, self.name)
        except NotFound:
            return None

    def hold(self) -> str | None:
        """Acquire or renew. None when this process holds the Lease now; otherwise why it must stand by."""
        with self._lock:
            why = self._hold()
            self.held = why is None
            return why

    def _hold(self) -> str | None:
        now = self.wall()
        live = self.read()
        if live is None:
            spec = {"holderIdentity": self.holder, "leaseDurationSeconds": self.duration,
                    "acquireTime": micro_time(now), "renewTime": micro_time(now), "leaseTransitions": 0}
            try:
                self.cluster.create(self._body(spec))
            except Conflict:
                return f"Lease {self.namespace}/{self.name} was just taken by another controller"
            except NotFound as exc:  # the fleet namespace is missing
                return f"cannot create Lease {self.namespace}/{self.name}: {exc}"
            return None
        spec = dict(live.get("spec") or {})
        current = spec.get("holderIdentity") or ""
        if current and current != self.holder and not self._expired(live):
            return f"Lease {self.namespace}/{self.name} is held by {current}"
        if current != self.holder:
            spec.update(acquireTime=micro_time(now), leaseTransitions=int(spec.get("leaseTransitions") or 0) + 1)
        spec.update(holderIdentity=self.holder, leaseDurationSeconds=self.duration, renewTime=micro_time(now))
        try:
            self.cluster.replace(self._body(spec, live))  # carries live's resourceVersion: 409 if anyone wrote since
        except Conflict:
            self._seen = None
            return f"Lease {self.namespace}/{self.name} changed while we renewed it; standing by"
        except NotFound:
            return f"Lease {self.namespace}/{self.name} was deleted while we renewed it"
        return None

    def _expired(self, live: dict) -> bool:
        version = live["metadata"]["resourceVersion"]
        if self._seen is None or self._seen[0] != version:
            self._seen = (version, self.clock())
            return False
        duration = int((live.get("spec") or {}).get("leaseDurationSeconds") or self.duration)
        return self.clock() - self._seen[1] >= duration

    def release(self) -> bool:
        """Give the Lease up if we hold it (a clean exit), so a standby takes over at its next step."""
        with self._lock:
            self.held = False
            return self._release()

    def _release(self) -> bool:
        live = self.read()
        if live is None or (live.get("spec") or {}).get("holderIdentity") != self.holder:
            return False
        spec = {k: v for k, v in (live.get("spec") or {}).items() if k != "holderIdentity"}
        spec["leaseDurationSeconds"] = 1
        try:
            self.cluster.replace(self._body(spec, live))
        except (Conflict, NotFound):
            return False
        return True


def parse_micro_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class LeaseBusy(WriterBusy):
    """Someone else holds the fleet's Lease (the controller, or another CLI writer)."""

    def __init__(self, lease: Lease, spec: dict) -> None:
        self.holder = spec.get("holderIdentity") or "?"
        super().__init__(
            f"fleet {lease.fleet or lease.namespace} is in use by {self.holder} (Lease {lease.namespace}/{lease.name}, "
            f"since {spec.get('acquireTime') or '?'}, renewed {spec.get('renewTime') or '?'}). One command at a time "
            "changes a fleet: wait for it to finish, or stop it (the in-cluster controller: `kubectl -n "
            f"{lease.namespace} scale deployment hubfleet-controller --replicas=0`).")


class LeaseLock:
    """The fleet's writer lock on Kubernetes (``WriterLock``): the controller's own Lease, so a CLI ``apply`` or
    ``up --detach`` never acts while the controller (or another CLI) does, and the controller stands by while a
    CLI applies. The holder's identity names its command, so the refusal says who is at work.

    ``acquire()`` raises ``LeaseBusy`` at once when the holder renewed within the Lease's duration by this
    machine's clock (refusing is safe whatever the clock skew). A record that looks stale is taken over only after
    this process saw it unchanged for a whole duration by its own clock (``Lease`` rule), so ``acquire`` waits up
    to that long for a holder that was killed. While held, the Lease is renewed in the background (a helm upgrade
    can outlast it); ``release()`` gives it up so the controller acts at its next step."""

    def __init__(self, lease: Lease, prepare: Callable[[], None] = lambda: None, describe: Callable[[], str | None] | None = None):
        self.lease = lease
        self._prepare = prepare
        self._describe = describe
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def try_acquire(self) -> None:
        """One attempt, no waiting for a stale holder: raises LeaseBusy, or holds the Lease (renewed meanwhile)."""
        if self.lease.hold() is not None:
            raise LeaseBusy(self.lease, (self.lease.read() or {}).get("spec") or {})
        self._renew()

    def acquire(self) -> None:
        self._prepare()
        deadline, races = None, 0
        while True:
            why = self.lease.hold()
            if why is None:
                self._renew()
                return
            spec = (self.lease.read() or {}).get("spec") or {}
            if not spec.get("holderIdentity"):
                races += 1  # released between our read and write, or no Lease can be made (namespace missing)
                if races > 3:
                    raise WriterBusy(why)
                continue
            duration = int(spec.get("leaseDurationSeconds") or self.lease.duration)
            renewed = parse_micro_time(spec.get("renewTime"))
            now = self.lease.clock()
            if deadline is None:
                deadline = now + duration + 1
            if (renewed is not None and self.lease.wall() - renewed < duration) or now >= deadline:
                raise LeaseBusy(self.lease, spec)
            time.sleep(min(1.0, duration / 3))  # looks stale: watch it for a whole duration before taking it over

    def _renew(self) -> None:
        if self._thread is None:
            self._stop = threading.Event()
            self._thread = self.lease.renew_in_background(self._stop)

    def release(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._thread.join(10)
            self._stop = self._thread = None
        self.lease.release()

    def holder(self) -> str | None:
        if self._describe is not None:
            return self._describe()
        spec = (self.lease.read() or {}).get("spec") or {}
        return spec.get("holderIdentity") or None
