"""A small, pure iCalendar reader for timetable overrides: the VEVENTs' DTSTART, DTEND, SUMMARY and
X-HUBFLEET-ATTENDANCE, nothing else (no recurrence rules: export the timetable's occurrences). The loader reads the
file and reports an IcalError as ``file:line:1``; the planner (plan.timetable) turns the events into sessions.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

__all__ = ["IcalError", "Session", "parse_ical"]


class IcalError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}")


@dataclass(frozen=True)
class Session:
    start: dt.datetime
    end: dt.datetime
    attendance: float
    name: str


def _ical_time(value: str, line: int) -> dt.datetime:
    found = re.fullmatch(r"(\d{8})(?:T(\d{6})Z?)?", value.strip())
    if not found:
        raise IcalError(line, f"{value!r} is not an iCalendar date-time (YYYYMMDDTHHMMSS[Z])")
    day = dt.datetime.strptime(found.group(1), "%Y%m%d")
    if found.group(2):
        return day.replace(hour=int(found.group(2)[:2]), minute=int(found.group(2)[2:4]), second=int(found.group(2)[4:]))
    return day


def parse_ical(text: str) -> list[Session]:
    """The VEVENTs of an iCalendar text (RFC 5545 lines, folded lines joined); raises IcalError naming the line."""
    unfolded: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        if raw[:1] in (" ", "\t") and unfolded:
            unfolded[-1] = (unfolded[-1][0], unfolded[-1][1] + raw[1:])
        elif raw.strip():
            unfolded.append((number, raw))
    out: list[Session] = []
    event: dict[str, tuple[int, str]] | None = None
    for number, line in unfolded:
        name, _, value = line.partition(":")
        key = name.split(";", 1)[0].upper()
        if key == "BEGIN" and value.upper() == "VEVENT":
            event = {"_": (number, "")}
        elif key == "END" and value.upper() == "VEVENT":
            if event is None:
                raise IcalError(number, "END:VEVENT without BEGIN:VEVENT")
            begun = event["_"][0]
            if "DTSTART" not in event:
                raise IcalError(begun, "a VEVENT without DTSTART")
            start = _ical_time(event["DTSTART"][1], event["DTSTART"][0])
            if "DTEND" in event:
                end = _ical_time(event["DTEND"][1], event["DTEND"][0])
            else:
                end = start + dt.timedelta(hours=1)
            if end <= start:
                raise IcalError(event.get("DTEND", event["DTSTART"])[0], "DTEND is not after DTSTART")
            share = 1.0
            if "X-HUBFLEET-ATTENDANCE" in event:
                at_line, text_value = event["X-HUBFLEET-ATTENDANCE"]
                try:
                    share = float(text_value)
                except ValueError:
                    share = -1.0
                if not 0 < share <= 1:
                    raise IcalError(at_line, f"X-HUBFLEET-ATTENDANCE {text_value!r} is not a share in (0, 1]")
            out.append(Session(start, end, share, event.get("SUMMARY", (0, "ical event"))[1] or "ical event"))
            event = None
        elif event is not None:
            event[key] = (number, value)
    if event is not None:
        raise IcalError(event["_"][0], "BEGIN:VEVENT without END:VEVENT")
    return out


