"""Frozen identities: every hub name and storage path derives from stable ids through these functions.

Renaming any of the inputs moves student files, which is why the planner refuses such a change
without an explicit migration (see ``hubfleet.plan.diff``).
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^a-z0-9-]")


def dns_label(text: str) -> str:
    """Lower-case a stable id into a DNS-1123 label candidate (it is validated, never silently mangled)."""
    return text.strip().lower()


def presentation_key(course: str, presentation: str) -> str:
    """The human key of a presentation, as staff type it: ``TM351-2026J``."""
    return f"{course}-{presentation}"


def group_name(course: str, presentation: str, role: str = "student") -> str:
    """The JupyterHub group of a presentation's members of one role."""
    base = dns_label(presentation_key(course, presentation))
    return base if role == "student" else f"{base}-{role}s"


def hub_name(topology: str, fleet: str, course: str, presentation: str, unit: str | None) -> str:
    """The hub that hosts a presentation under a topology."""
    if topology == "per-presentation":
        return dns_label(presentation_key(course, presentation))
    if topology == "per-course":
        return dns_label(course)
    if topology == "per-unit":
        return dns_label(unit or "")
    return dns_label(fleet)


def course_dir_name(course: str, presentation: str) -> str:
    """The folder a presentation works in, inside the student's personal store."""
    return presentation_key(course, presentation)


def escape_username(username: str) -> str:
    """A filesystem- and label-safe form of a username, pinned so homes never move.

    Same idea as kubespawner's ``safe_slug``-free escaping in z2jh 4: keep `[a-z0-9-]`, write every
    other byte as ``-xx`` hex. The z2jh 3->4 upgrade moved homes because this changed; ours never does.
    """
    out = []
    for ch in username.lower():
        if _UNSAFE.match(ch):
            out.extend(f"-{b:02x}" for b in ch.encode())
        else:
            out.append(ch)
    return "".join(out)
