"""Roles from the catalog, on a date: staff privileges end (pure: no database, no I/O beyond loading the example)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hubfleet.catalog import load_catalog
from hubfleet.requests.roles import access_for
from request_support import catalog_repo


def test_staff_privileges_end_on_their_dates(tmp_path: Path) -> None:
    catalog = load_catalog(catalog_repo(tmp_path)).catalog
    # TM351's team while 2026J runs (it ends 2027-06-10; read-only 30 days; archived from 2027-07-11).
    assert access_for(catalog, "mo3312", dt.date(2027, 7, 10)).courses == {"TM351"}
    assert not access_for(catalog, "mo3312", dt.date(2027, 7, 11)).anyone
    # The stem unit admin until 2030-07-31 inclusive; the other one's ended on 2026-01-31.
    assert access_for(catalog, "ua1001", dt.date(2030, 7, 31)).units == {"stem"}
    assert not access_for(catalog, "ua1001", dt.date(2030, 8, 1)).anyone
    assert not access_for(catalog, "ua1999", dt.date(2026, 2, 1)).anyone
    # The platform team has no end date in the catalog: it is the catalog's owner.
    assert access_for(catalog, "rk4521", dt.date(2040, 1, 1)).platform
    student = access_for(catalog, "st0001", dt.date(2026, 12, 3))
    assert not student.anyone and not student.may_review("TM351", "stem", "mo3312")
