"""The z2jh tier through the example university's calendar from 25 Jun 2027 to 1 Oct 2027: the
autumn presentations end, the summer school comes and goes.

One chart hub (the example planned with ``topology: central``), first applied on the earliest date here and moved
forward through the rest with real helm upgrades, a fresh hub pod each time and hubfleet's enrolment sync; see
`z2jh_calendar.walk` for what each date checks.
"""

from z2jh_calendar import D, calendar, stretch  # noqa: F401 - calendar is the module's hub fixture

test_every_presentation_in_each_phase = stretch(D(2027, 6, 1), D(2027, 12, 31))
