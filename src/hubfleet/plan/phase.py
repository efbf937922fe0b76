"""A presentation's lifecycle phase on a given date: dates drive everything, with no manual runbook."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from hubfleet.catalog.model import Lifecycle
from hubfleet.plan.spec import Phase


@dataclass(frozen=True)
class Timeline:
    """The first day of each phase; a presentation is in the last phase whose first day has come."""

    provision_on: dt.date
    start: dt.date
    read_only_on: dt.date  # the day after the last teaching day
    archive_on: dt.date
    purge_on: dt.date

    def phase(self, today: dt.date) -> Phase:
        if today >= self.purge_on:
            return Phase.purged
        if today >= self.archive_on:
            return Phase.archived
        if today >= self.read_only_on:
            return Phase.read_only
        if today >= self.start:
            return Phase.open
        if today >= self.provision_on:
            return Phase.provisioned
        return Phase.scheduled


def timeline(start: dt.date, end: dt.date, lifecycle: Lifecycle) -> Timeline:
    read_only_on = end + dt.timedelta(days=1)
    archive_on = read_only_on + dt.timedelta(days=lifecycle.read_only_days_after_end)
    return Timeline(
        provision_on=start - dt.timedelta(days=lifecycle.provision_days_before_start),
        start=start,
        read_only_on=read_only_on,
        archive_on=archive_on,
        purge_on=archive_on + dt.timedelta(days=lifecycle.retention_days),
    )
