"""The archive families of the portal's /metrics move with the archive ledger (the hub and wake families are
checked with real hubs in test_hibernation.py). Parsed with Prometheus' own text parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from hubfleet.lifecycle.ledger import Ledger
from hubfleet.web.metrics import metrics_text


def samples(state) -> dict[tuple, float]:  # noqa: ANN001
    text = metrics_text(state, {"hubs": []}).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_archive_bytes_and_counts_follow_the_ledger(tmp_path):
    (tmp_path / "frontdoor").mkdir()
    empty = samples(tmp_path)
    assert empty[("hubfleet_archive_bytes", ())] == 0
    assert empty[("hubfleet_archives", (("status", "pending"),))] == 0
    with Ledger(tmp_path) as ledger:
        ledger.record("TM351-2025J", "alice", "file:///a.tar.gz", "ab" * 32, 1000)
        ledger.record("TM351-2025J", "bob", "file:///b.tar.gz", "cd" * 32, 500)
    got = samples(tmp_path)
    assert got[("hubfleet_archive_bytes", ())] == 1500 and got[("hubfleet_archives", (("status", "pending"),))] == 2
    with Ledger(tmp_path) as ledger:
        ledger.mark_verified("TM351-2025J", "alice")
        ledger.mark_problem("TM351-2025J", "bob", "sha256 mismatch on read-back")
    got = samples(tmp_path)
    assert [got[("hubfleet_archives", (("status", s),))] for s in ("verified", "failed", "pending")] == [1, 1, 0]
