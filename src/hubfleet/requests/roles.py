"""Who may do what with hub requests and the dashboard, from the catalog and the portal's sign-in.

* **platform team** (``fleet.platform_team``): everything, every unit.
* **unit admin** (``fleet.units[].admins``, each with an ``until`` date): reviews and sees the requests and hubs of
  their unit.
* **course team** (a course's ``team``, or a presentation's): requests for, and sees, their own courses. Their
  privilege ends with the course: once the last presentation they staff has been archived, it has lapsed (a new
  request for that course then comes from the unit admin or the platform team, who add the new team).
* everyone else: nothing here (every page and action answers 403, and the refusal is audited).

Pure: the date is an argument, the catalog is already loaded.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from hubfleet.catalog.model import Catalog
from hubfleet.plan.spec import timeline

__all__ = ["Access", "access_for"]


@dataclass(frozen=True)
class Access:
    user: str
    platform: bool = False
    units: frozenset[str] = field(default_factory=frozenset)  # unit admin of
    courses: frozenset[str] = field(default_factory=frozenset)  # course team of (course codes)
    course_units: dict[str, str | None] = field(default_factory=dict)  # every catalog course -> its unit

    @property
    def anyone(self) -> bool:
        """Has any role here at all (else every page is 403)."""
        return self.platform or bool(self.units) or bool(self.courses)

    @property
    def role_names(self) -> list[str]:
        out = ["platform team"] if self.platform else []
        out += [f"unit admin ({u})" for u in sorted(self.units)]
        out += [f"course team ({c})" for c in sorted(self.courses)]
        return out

    def sees_unit(self, unit: str | None) -> bool:
        return self.platform or (unit is not None and unit in self.units)

    def sees(self, course: str, unit: str | None) -> bool:
        """May see a request or hub of this course (in this unit)."""
        return self.sees_unit(unit) or course in self.courses

    def may_request(self, course: str, unit: str | None) -> bool:
        """May ask for a presentation of ``course``: its team, or an admin of the unit it is (to be) in. An existing
        course stays in the unit the catalog says, whatever the form claims."""
        unit = self.course_units.get(course, unit)
        return self.sees_unit(unit) or course in self.courses

    def may_review(self, course: str, unit: str | None, requester: str) -> bool:
        """Approve, reject or ask for changes: unit admins of the request's unit and the platform team, and never
        on one's own request (four eyes)."""
        unit = self.course_units.get(course, unit)
        return requester != self.user and self.sees_unit(unit)

    def may_act_on_hubs(self, units: set[str | None]) -> bool:
        """Dashboard actions (apply, sync, retry archive): the platform team, or the unit admin of every unit the
        hub serves (a shared hub is not one unit's to restart)."""
        return self.platform or (bool(units) and all(u is not None and u in self.units for u in units))


def access_for(catalog: Catalog, user: str | None, today: dt.date) -> Access:
    if not user:
        return Access(user="")
    fleet = catalog.fleet
    units = frozenset(u.id for u in fleet.units for a in u.admins if a.username == user and today <= a.until)
    courses = set()
    for course in catalog.courses:
        for pres in course.presentations:
            team = set(course.team.instructors) | set(course.team.tutors)
            if pres.team:
                team |= set(pres.team.instructors) | set(pres.team.tutors)
            if user in team and today < timeline(pres.start, pres.end, fleet.lifecycle).archive_on:
                courses.add(course.code)
        if not course.presentations and user in set(course.team.instructors) | set(course.team.tutors):
            courses.add(course.code)
    return Access(user=user, platform=user in fleet.platform_team, units=units, courses=frozenset(courses),
                  course_units={c.code: c.unit for c in catalog.courses})
