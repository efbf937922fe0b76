"""The z2jh tier through the example university's calendar from 25 Nov 2026 to 25 Jan 2027: the
autumn presentations open, the December workshop comes and goes.

One chart hub (the example planned with ``topology: central``), first applied on the earliest date here and moved
forward through the rest with real helm upgrades, a fresh hub pod each time and hubfleet's enrolment sync; see
`z2jh_calendar.walk` for what each date checks.
"""

from z2jh_calendar import D, calendar, stretch  # noqa: F401 - calendar is the module's hub fixture

test_every_presentation_in_each_phase = stretch(D(2026, 11, 1), D(2027, 5, 31))
