"""The warm-up schedule (plan.timetable), with known answers: sessions from weekly slots, dated events and iCal,
the max over overlaps, and 2i2c's sizing rule headroom = min(enrolled × attendance, arrival_rate × node_ready_time)."""

from __future__ import annotations

import datetime as dt

import pytest

from hubfleet.catalog.course import Timetable
from hubfleet.catalog.model import Catalog, Prewarm
from hubfleet.catalog.ical import IcalError, Session, parse_ical
from hubfleet.plan.timetable import active_windows, sessions, size, warmup_schedule

T = dt.datetime


def test_weekly_slots_run_from_start_to_end_and_events_are_added():
    table = Timetable.model_validate({
        "weekly": [{"weekday": "tue", "start": "10:00", "duration": "2h", "attendance": 0.5}],
        "events": [{"name": "exam", "date": "2026-11-20", "start": "09:30", "duration": "3h"}],
    })
    found = sessions(table, dt.date(2026, 11, 1), dt.date(2026, 11, 30))  # a Sunday to a Monday
    assert [(s.start, s.end, s.attendance, s.name) for s in found] == [
        (T(2026, 11, 3, 10), T(2026, 11, 3, 12), 0.5, "tue 10:00"),
        (T(2026, 11, 10, 10), T(2026, 11, 10, 12), 0.5, "tue 10:00"),
        (T(2026, 11, 17, 10), T(2026, 11, 17, 12), 0.5, "tue 10:00"),
        (T(2026, 11, 20, 9, 30), T(2026, 11, 20, 12, 30), 1.0, "exam"),
        (T(2026, 11, 24, 10), T(2026, 11, 24, 12), 0.5, "tue 10:00"),
    ]


ICS = """BEGIN:VCALENDAR\r
BEGIN:VEVENT\r
SUMMARY:Revision work\r
 shop\r
DTSTART:20261117T110000\r
DTEND:20261117T130000\r
X-HUBFLEET-ATTENDANCE:0.9\r
END:VEVENT\r
BEGIN:VEVENT\r
DTSTART:20261201T090000Z\r
END:VEVENT\r
END:VCALENDAR\r
"""


def test_ical_events_are_parsed_and_overlaps_take_the_max():
    cal = parse_ical(ICS)
    assert cal == [Session(T(2026, 11, 17, 11), T(2026, 11, 17, 13), 0.9, "Revision workshop"),
                   Session(T(2026, 12, 1, 9), T(2026, 12, 1, 10), 1.0, "ical event")]
    table = Timetable.model_validate({"weekly": [{"weekday": "tue", "start": "10:00", "duration": "2h", "attendance": 0.5}]})
    found = sessions(table, dt.date(2026, 11, 17), dt.date(2026, 11, 17), cal[:1])
    # 10:00-12:00 at 0.5 and 11:00-13:00 at 0.9 are one session 10:00-13:00 at 0.9: an override never lowers it.
    assert found == [Session(T(2026, 11, 17, 10), T(2026, 11, 17, 13), 0.9, "Revision workshop")]


@pytest.mark.parametrize("text, line, words", [
    ("BEGIN:VEVENT\nDTSTART:tomorrow\nEND:VEVENT\n", 2, "not an iCalendar date-time"),
    ("BEGIN:VEVENT\nSUMMARY:x\nEND:VEVENT\n", 1, "without DTSTART"),
    ("BEGIN:VEVENT\nDTSTART:20261117T110000\nX-HUBFLEET-ATTENDANCE:2\nEND:VEVENT\n", 3, "not a share"),
    ("BEGIN:VEVENT\nDTSTART:20261117T110000\n", 1, "without END:VEVENT"),
])
def test_a_bad_ical_file_names_the_line(text, line, words):
    with pytest.raises(IcalError, match=words) as caught:
        parse_ical(text)
    assert caught.value.line == line


def test_sizing_follows_the_rule_with_known_answers():
    lecture = Session(T(2026, 11, 3, 10), T(2026, 11, 3, 12), 0.5, "lecture")
    # 300 × 0.5 = 150 arrive over 600 s: 0.25/s; a node takes 300 s: 75 must find room before one is ready.
    assert size(300, lecture, Prewarm()) == (150, 75, 75, 64)
    assert size(300, lecture, Prewarm(users_per_node=20)) == (150, 75, 4, 64)  # whole-node placeholders
    exam = Session(T(2026, 11, 20, 9), T(2026, 11, 20, 12), 1.0, "exam")
    # 1200 in 600 s: 2/s; 600 within a node's 300 s; 2/s × 60 s spawns × 2 = 240 spawns in flight at most.
    assert size(1200, exam, Prewarm()) == (1200, 600, 600, 240)
    # A small class is all headroom: min(enrolled × attendance, ...) caps it.
    assert size(20, exam, Prewarm(node_ready_time=900)) == (20, 20, 20, 64)


def test_the_schedule_warms_each_hub_ahead_of_its_sessions():
    catalog = Catalog.model_validate({
        "fleet": {"name": "uni", "prewarm": {"node_ready_time": "5m", "wake_time": "1m", "arrival_window": "10m"}},
        "courses": [{"code": "TM351", "title": "Data", "presentations": [{
            "id": "2026J", "start": "2026-10-03", "end": "2027-06-10", "expected_students": 300,
            "timetable": {"weekly": [{"weekday": "tue", "start": "10:00", "duration": "2h", "attendance": 0.5}],
                          "ical": "tm351.ics"}}]}],
    })
    windows = warmup_schedule(catalog, T(2026, 11, 16, 12), days=2, calendars={"tm351.ics": ICS})
    assert [(w.hub, w.session, w.warm_from, w.session_start, w.warm_until, w.headroom_users) for w in windows] == [
        # The weekly 10:00 merged with the iCal 11:00 workshop at 0.9: 270 expected, 135 headroom.
        ("tm351-2026j", "Revision workshop", T(2026, 11, 17, 9, 54), T(2026, 11, 17, 10), T(2026, 11, 17, 10, 10), 135),
    ]
    assert active_windows(windows, T(2026, 11, 17, 9, 53)) == {}
    assert active_windows(windows, T(2026, 11, 17, 9, 54)) == {"tm351-2026j": windows[0]}
    assert active_windows(windows, T(2026, 11, 17, 10, 10)) == {}  # the arrival window is over


def test_the_loader_reads_the_ical_file_and_a_bad_line_is_a_catalog_error(tmp_path):
    from hubfleet.catalog import CatalogError, load_catalog

    (tmp_path / "courses").mkdir()
    (tmp_path / "fleet.yaml").write_text("fleet: {name: uni}\n")
    (tmp_path / "courses" / "TM351.yaml").write_text(
        "code: TM351\ntitle: Data\npresentations:\n  - id: 2026J\n    start: 2026-10-03\n    end: 2027-06-10\n"
        "    timetable: {ical: ../tm351.ics}\n")
    (tmp_path / "tm351.ics").write_text(ICS)
    calendars = load_catalog(tmp_path).calendars
    assert list(calendars) == ["tm351.ics"] and parse_ical(calendars["tm351.ics"]) == parse_ical(ICS)
    (tmp_path / "tm351.ics").write_text(ICS.replace("20261201T090000Z", "soon"))
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path)
    assert str(caught.value.problems[0]).startswith(f"{tmp_path / 'tm351.ics'}:10:1: ")
    assert "'soon' is not an iCalendar date-time" in str(caught.value.problems[0])
