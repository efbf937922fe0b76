"""``/metrics`` on the portal: the fleet in Prometheus' text format, for a platform team's dashboards and alerts.

Every family is computed at scrape time from durable facts, not from counters in this process, so a portal restart
loses nothing and the ``up`` loop's own actions (a timetable wake, a hibernation) count as much as the waker's:

* ``hubfleet_hubs{phase,state}``: hubs by lifecycle phase and by state (running, hibernated, down), from
  ``fleet.json`` and the hubs' files;
* ``hubfleet_wakes_total{reason,outcome}``, ``hubfleet_wake_duration_seconds`` (histogram) and
  ``hubfleet_hibernations_total``: from the hibernation journal (``backends/local/hibernation.py``);
* ``hubfleet_hub_running_servers`` and ``hubfleet_hub_active_users`` per hub, with ``course`` and
  ``presentation`` labels: from each running hub's own ``/hub/metrics`` (scope ``read:metrics``) and users'
  ``last_activity``, with hubfleet's service token; a sleeping hub counts 0 and is not woken by a scrape;
* ``hubfleet_archive_bytes`` and ``hubfleet_archives{status}`` (verified, failed, pending): from the archive ledger;
* ``hubfleet_reconcile_duration_seconds`` (histogram), ``hubfleet_reconcile_drift`` (actions the last plan wanted),
  ``hubfleet_enrolment_sync_duration_seconds`` (histogram), ``hubfleet_enrolment_writes_total{hub,kind}`` and
  ``hubfleet_placeholders{hub,presentation}`` (the timetable's warm windows in force): from what the ``up`` loop
  wrote in ``loop_stats.json`` (``backends/loopstats.py``).

The endpoint wants ``Authorization: Bearer <token>``, the token in ``<state>/frontdoor/metrics_token`` (generated
once, 0600; Prometheus reads it with ``bearer_token_file``): the portal is public, the fleet's shape is not.
ref: https://prometheus.io/docs/instrumenting/writing_exporters/#collectors
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from hubfleet.backends.local import process
from hubfleet.backends.local.fleetstate import FleetPaths, read_json
from hubfleet.backends.local.hibernation import is_hibernated, journal
from hubfleet.backends.local.secrets import ensure_secret, read_secret
from hubfleet.backends.loopstats import loop_families, read_stats
from hubfleet.hubapi.tls import tls_context

__all__ = ["FleetCollector", "WAKE_BUCKETS", "metrics_text", "metrics_token"]

WAKE_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 30.0, 60.0)
# A hub's phase is that of its most advanced presentation still served (a shared hub may hold several).
_PHASE_ORDER = ["scheduled", "provisioned", "open", "read-only", "archived", "purged"]
STATES = ("running", "hibernated", "down")


def metrics_token(state: Path) -> str:
    return ensure_secret(Path(state) / "frontdoor" / "metrics_token")


def authorised(state: Path, header: str | None) -> bool:
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), metrics_token(state).encode())


class FleetCollector:
    def __init__(self, state: Path, fleet: dict, state_of: Callable[[str], str] | None = None) -> None:
        """``state_of(hub)``: running, hibernated or down (the portal passes the waker's view, which also works in a
        cluster); by default from the local hub's files."""
        self.paths = FleetPaths(Path(state))
        self.fleet = fleet
        self.state_of = state_of or self._state

    def _state(self, name: str) -> str:
        hp = self.paths.hub(name)
        if is_hibernated(hp):
            return "hibernated"
        return "running" if process.read_alive(hp.hub_pidfile) is not None else "down"

    def collect(self) -> Iterator:
        hubs = self.fleet.get("hubs", [])
        states = {h["name"]: self.state_of(h["name"]) for h in hubs}
        by = Counter()
        for h in hubs:
            phases = [p.get("phase", "scheduled") for p in h.get("presentations", [])] or ["scheduled"]
            by[(max(phases, key=_PHASE_ORDER.index), states[h["name"]])] += 1
        g = GaugeMetricFamily("hubfleet_hubs", "Hubs by lifecycle phase and state.", labels=["phase", "state"])
        for phase in ("provisioned", "open", "read-only"):
            for st in STATES:
                g.add_metric([phase, st], by.get((phase, st), 0))
        yield g
        yield from self._wakes()
        yield from self._hub_metrics(hubs, states)
        yield from self._archives()
        yield from self._loop()

    def _loop(self) -> Iterator:
        yield from loop_families(read_stats(self.paths.state))

    def _wakes(self) -> Iterator:
        entries = journal(self.paths)
        wakes = CounterMetricFamily("hubfleet_wakes", "Wakes of hibernated hubs by reason and outcome.",
                                    labels=["reason", "outcome"])  # fmt: skip
        counts = Counter((e.get("reason", "request"), "ok" if e.get("ok") else "failed")
                         for e in entries if e.get("event") == "wake")  # fmt: skip
        for reason in ("request", "timetable"):
            for outcome in ("ok", "failed"):
                wakes.add_metric([reason, outcome], counts.get((reason, outcome), 0))
        yield wakes
        seconds = [float(e["seconds"]) for e in entries if e.get("event") == "wake" and e.get("ok")]
        buckets = [(str(b), sum(1 for s in seconds if s <= b)) for b in WAKE_BUCKETS] + [("+Inf", len(seconds))]
        yield HistogramMetricFamily("hubfleet_wake_duration_seconds", "From a wake's start to the hub answering "
                                    "its API with its route switched back.", buckets=buckets, sum_value=sum(seconds))  # fmt: skip
        sleeps = CounterMetricFamily("hubfleet_hibernations", "Hubs put to sleep after their idle time.")
        sleeps.add_metric([], sum(1 for e in entries if e.get("event") == "hibernate"))
        yield sleeps

    def _hub_metrics(self, hubs: list[dict], states: dict[str, str]) -> Iterator:
        labels = ["hub", "course", "presentation"]
        servers = GaugeMetricFamily("hubfleet_hub_running_servers", "Students' servers running in each hub.", labels=labels)
        active = GaugeMetricFamily("hubfleet_hub_active_users", "Users active in the last 24 hours, per hub "
                                   "(JupyterHub's own count).", labels=labels)  # fmt: skip
        for h in hubs:
            pres = h.get("presentations", [])
            names = [h["name"], ",".join(sorted({p["course"] for p in pres})), ",".join(p["key"] for p in pres)]
            running, users = 0.0, 0.0
            hp = self.paths.hub(h["name"])
            if states[h["name"]] == "running":
                if not hp.hub_json.exists():
                    continue  # a cluster's hub: no sample rather than a false 0 (its own /hub/metrics has them)
                running, users = _scrape_hub(hp)
            servers.add_metric(names, running)
            active.add_metric(names, users)
        yield servers
        yield active

    def _archives(self) -> Iterator:
        size = GaugeMetricFamily("hubfleet_archive_bytes", "Bytes in current student archives.")
        counts = GaugeMetricFamily("hubfleet_archives", "Current student archives by status.", labels=["status"])
        records = []
        if (self.paths.state / "archives.sqlite").exists():
            from hubfleet.lifecycle.ledger import Ledger

            with Ledger(self.paths.state) as ledger:
                records = [r for r in ledger.all() if not r.superseded and r.purged_at is None]
        size.add_metric([], sum(r.bytes for r in records))
        for status, n in (("verified", sum(1 for r in records if r.ok)),
                          ("failed", sum(1 for r in records if r.problem)),
                          ("pending", sum(1 for r in records if r.verified_at is None and not r.problem))):  # fmt: skip
            counts.add_metric([status], n)
        yield size
        yield counts


def _scrape_hub(hp) -> tuple[float, float]:  # noqa: ANN001
    """(running servers, users active in the last 24 hours) of a running hub; zeros if it does not answer.

    Running servers come from the hub's own /hub/metrics. Active users are counted from its users' last_activity
    (the API) instead of its ``jupyterhub_active_users`` gauge, which JupyterHub recomputes only periodically and
    so still says 0 for a while after a student's first sign-in."""
    raw = read_json(hp.hub_json) or {}
    headers = {"Authorization": f"token {read_secret(hp.service_token)}"}
    base = f"http://127.0.0.1:{raw.get('proxy_port')}/hub"
    running = users = 0.0
    try:
        with httpx.Client(timeout=5, headers=headers, verify=tls_context()) as client:
            resp = client.get(f"{base}/metrics")
            resp.raise_for_status()
            for family in text_string_to_metric_families(resp.text):
                for sample in family.samples:
                    if sample.name == "jupyterhub_running_servers":
                        running = sample.value
            listed = client.get(f"{base}/api/users")
            listed.raise_for_status()
    except (httpx.HTTPError, OSError):
        return running, users
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=24)
    for user in listed.json():
        stamp = user.get("last_activity")
        if stamp and dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")) >= since:
            users += 1
    return running, users


def metrics_text(state: Path, fleet: dict, state_of: Callable[[str], str] | None = None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(state, fleet, state_of))
    return generate_latest(registry)
