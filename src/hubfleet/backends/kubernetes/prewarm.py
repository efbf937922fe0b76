"""Timetable pre-warming on Kubernetes: a release's values for a warm-up window (plan.timetable), pure.

In a window the release runs ``scheduling.userPlaceholder`` pods, one per student who must find room before a new
node could be ready (``headroom_users``), so the cluster autoscaler adds nodes *before* the class arrives; and
``hub.concurrentSpawnLimit`` is raised to the spawns in flight at the peak arrival rate. Outside a window the
rendered values stand (placeholders off, JupyterHub's default limit). Applied as the release's values, through
the backend's helm upgrade like any other change: no loop of its own scales anything.
ref: https://z2jh.jupyter.org/en/stable/administrator/optimization.html#scaling-up-in-time-user-placeholders
"""

from __future__ import annotations

from hubfleet.plan.timetable import WarmWindow

__all__ = ["placeholders_in", "prewarm_values"]


def prewarm_values(window: WarmWindow | None) -> dict:
    """The values laid over a hub's rendered values while ``window`` is in force ({} outside any window)."""
    if window is None or window.placeholders <= 0:
        return {}
    return {
        "scheduling": {"userPlaceholder": {"enabled": True, "replicas": window.placeholders}},
        "hub": {"concurrentSpawnLimit": window.concurrent_spawn_limit},
    }


def placeholders_in(values: dict | None) -> int:
    """How many placeholders a release's values run (0 when disabled)."""
    placeholder = ((values or {}).get("scheduling") or {}).get("userPlaceholder") or {}
    return int(placeholder.get("replicas", 0)) if placeholder.get("enabled") else 0
