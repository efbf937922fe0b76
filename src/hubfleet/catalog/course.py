"""A course and its presentations: staff, where the students come from (enrolment) and when they arrive
(timetable). One file per course in a folder catalog, so each course team owns its file.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal, Union

from pydantic import BaseModel, Discriminator, Field, Tag

from hubfleet.catalog.grammar import Duration, Strict, Username, new_list
from hubfleet.catalog.overrides import Overrides

Role = Literal["student", "tutor", "instructor"]


class Team(Strict):
    """Course staff. Instructors may start, stop and open their students' servers; tutors may open them."""

    instructors: list[Username] = Field(default_factory=new_list, description="Usernames of instructors.")
    tutors: list[Username] = Field(default_factory=new_list, description="Usernames of tutors.")


class CsvColumns(Strict):
    username: str = Field("username", description="Column holding the login name.")
    role: str | None = Field(None, description="Column holding the role (student, tutor, instructor).")


class CsvSource(Strict):
    """A roster file exported from a student-records system or a VLE."""

    csv: str = Field(description="Path of the CSV file, relative to the file that names it.")
    preset: Literal["hubfleet", "student-records", "moodle", "canvas"] = Field(
        "hubfleet",
        description=(
            "Column layout: `hubfleet` (username[,role]), `student-records` (PERSON_ID,USERNAME,...), "
            "`moodle` (participant export), `canvas` (gradebook/people export)."
        ),
    )
    columns: CsvColumns | None = Field(None, description="Explicit columns; overrides the preset.")
    role: Role = Field("student", description="Role of rows that carry none.")


class UsersSource(Strict):
    """A static list in the catalog, for small groups and workshops."""

    users: list[Username] = Field(description="Usernames.")
    role: Role = Field("student", description="Their role.")


class LdapQuery(Strict):
    group: str | None = Field(None, description="DN of a group whose `member`/`memberUid` values are the students.")
    filter: str | None = Field(None, description="An LDAP filter selecting the students.")
    attribute: str = Field("uid", description="The attribute holding the username.")
    base: str | None = Field(None, description="Search base for `filter`; defaults to the fleet's LDAP base.")


class LdapSource(Strict):
    """Members of an LDAP group or filter, read at every sync."""

    ldap: LdapQuery
    role: Role = Field("student", description="Their role.")


class IdpGroupSource(Strict):
    """Anyone whose login token carries this group is enrolled when they log in ("auth affinity")."""

    idp_group: str = Field(description="The group name as the identity provider sends it in the groups claim.")
    role: Role = Field("student", description="Their role.")


_SOURCE_KEYS = {"csv": "csv", "users": "users", "ldap": "ldap", "idp_group": "idp_group"}


def _source_kind(value: object) -> str | None:
    """Pick the source type by its one identifying key, so an error names that source, not four guesses."""
    if isinstance(value, BaseModel):
        return next(k for k in _SOURCE_KEYS if hasattr(value, k))
    if isinstance(value, dict):
        for key in _SOURCE_KEYS:
            if key in value:
                return key
    return None


EnrolmentSource = Annotated[
    Union[
        Annotated[CsvSource, Tag("csv")],
        Annotated[UsersSource, Tag("users")],
        Annotated[LdapSource, Tag("ldap")],
        Annotated[IdpGroupSource, Tag("idp_group")],
    ],
    Discriminator(
        _source_kind,
        custom_error_type="enrolment_source",
        custom_error_message="an enrolment source needs one of the keys csv, users, ldap or idp_group",
    ),
]


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_CLOCK = r"^([01]\d|2[0-3]):[0-5]\d$"


class WeeklySlot(Strict):
    """A teaching session every week of the presentation (from its start to its end date)."""

    weekday: Weekday = Field(description="Day of the week: `mon` ... `sun`.")
    start: str = Field(pattern=_CLOCK, description="Start time, `HH:MM`, in the fleet's local time.")
    duration: Duration = Field(description="Length: seconds, `90m`, `2h`.")
    attendance: float = Field(
        1.0, gt=0, le=1,
        description="Share of the enrolled students expected to start a server at this session (0-1]. Sizes the "
        "pre-warming: too low and the first arrivals queue for nodes, too high and idle capacity is paid for.",
    )


class OneOffEvent(Strict):
    """A dated session (an exam, a workshop) on top of the weekly slots."""

    name: str = Field("session", description="What it is, shown in `hubfleet plan`.")
    date: dt.date = Field(description="The day (YYYY-MM-DD).")
    start: str = Field(pattern=_CLOCK, description="Start time, `HH:MM`, local time.")
    duration: Duration = Field(description="Length: seconds, `90m`, `2h`.")
    attendance: float = Field(1.0, gt=0, le=1, description="Share of the enrolled students expected (0-1].")


class Timetable(Strict):
    """When a presentation's students arrive, so the hub is awake and capacity is warm before they do."""

    weekly: list[WeeklySlot] = Field(default_factory=new_list, description="Recurring weekly sessions.")
    events: list[OneOffEvent] = Field(default_factory=new_list, description="Dated one-off sessions.")
    ical: str | None = Field(
        None,
        description="An iCalendar (`.ics`) file, relative to the file that names it, with more sessions (e.g. "
        "exported from the timetabling system). Its VEVENTs' DTSTART/DTEND (local time or UTC `Z`) count as "
        "sessions with attendance `X-HUBFLEET-ATTENDANCE` (default 1). Where sessions overlap, the largest "
        "attendance wins, so an override never lowers what the catalog asks for.",
    )


class Presentation(Overrides):
    """One run of a course, with its own dates and students."""

    id: str = Field(description="Presentation id, e.g. `2026J`; frozen once students have files.")
    start: dt.date = Field(description="First teaching day (YYYY-MM-DD).")
    end: dt.date = Field(description="Last teaching day (YYYY-MM-DD); after it the hub becomes read-only.")
    expected_students: int = Field(0, ge=0, description="Sizing hint for quotas and cost.")
    enrolment: list[EnrolmentSource] = Field(default_factory=new_list, description="Where the students come from.")
    team: Team | None = Field(None, description="Staff added for this presentation only.")
    title: str | None = Field(None, description="Overrides the course title, e.g. for a summer school.")
    timetable: Timetable | None = Field(None, description="Sessions, for waking and pre-warming ahead of them.")


class Course(Overrides):
    """A course (module) and its presentations; one file per course in a folder catalog."""

    code: str = Field(description="Course code, e.g. `TM351`; hub names and storage paths derive from it.")
    title: str = Field(description="Human title.")
    unit: str | None = Field(None, description="The unit (faculty/school) id; required for the per-unit topology.")
    team: Team = Field(default_factory=Team, description="Instructors and tutors of every presentation.")
    presentations: list[Presentation] = Field(default_factory=new_list, description="The runs of the course.")
