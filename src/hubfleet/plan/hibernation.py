"""When does a hub hibernate? Pure: the activity comes in as data (the backend asks the hub's API), the time too.

A hub hibernates only when nobody can lose anything by it: no student server running or starting (a server is
a student's kernels and unsaved state), no spawn pending, and no activity for the hub's ``hibernate_after``. The
activity is the latest of every user's and server's ``last_activity`` and the moment the hub itself (re)started,
so a hub just woken by a request is not put back to sleep before the person who woke it has signed in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from hubfleet.plan.spec import HubSpec

__all__ = ["HubActivity", "awake_reason", "activity_of"]


@dataclass(frozen=True)
class HubActivity:
    servers: int  # student servers that exist (running, starting or stopping)
    pending: int  # users with a spawn or stop in flight
    last_activity: dt.datetime | None  # latest activity the hub recorded for any user or server (aware, UTC)
    up_since: dt.datetime  # when the hub process started (aware, UTC)

    @property
    def latest(self) -> dt.datetime:
        return max(a for a in (self.last_activity, self.up_since) if a is not None)


def _parse(stamp: str | None) -> dt.datetime | None:
    if not stamp:
        return None
    value = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def activity_of(users: list[dict], up_since: dt.datetime) -> HubActivity:
    """Fold a hub's ``GET /hub/api/users`` answer (with ``servers``) into a HubActivity."""
    servers = pending = 0
    stamps = []
    for user in users:
        stamps.append(_parse(user.get("last_activity")))
        if user.get("pending"):
            pending += 1
        for server in (user.get("servers") or {}).values():
            servers += 1
            if server.get("pending"):
                pending += 1
            stamps.append(_parse(server.get("last_activity")))
    seen = [s for s in stamps if s is not None]
    return HubActivity(servers=servers, pending=pending, last_activity=max(seen) if seen else None, up_since=up_since)


def awake_reason(hub: HubSpec, activity: HubActivity, now: dt.datetime) -> str | None:
    """Why ``hub`` stays awake now, or None when it should hibernate."""
    if hub.hibernate_after is None:
        return "hibernate_after: never"
    if activity.servers:
        return f"{activity.servers} student server(s) running"
    if activity.pending:
        return f"{activity.pending} spawn(s) pending"
    idle = (now - activity.latest).total_seconds()
    if idle < hub.hibernate_after:
        return f"active {idle:.0f}s ago (hibernates after {hub.hibernate_after}s idle)"
    return None
