"""docs/simulation/ is the example catalog's simulated year (`make simulation-report`); this keeps it current, like
docs/catalog.md. Figures and tables are compared exactly; the plots' PNG bytes are compared as the HTML's images
are (fonts may rasterise differently on another machine, so those are left to the make target)."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from hubfleet.cli.main import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "simulation"
ARGS = ["simulate", str(ROOT / "examples" / "university"), "--from", "2026-09-01", "--to", "2027-09-01", "--seed", "0"]
STALE = "docs/simulation/ is stale: the simulator, its defaults or the example changed. Run `make simulation-report`."


def _without_images(html: str) -> str:
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:image/png;base64,...", html)


def test_the_example_report_is_current(tmp_path):
    result = CliRunner().invoke(app, [*ARGS, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ("results.json", "scenarios.csv", "costs.csv"):
        assert (DOCS / name).read_text() == (tmp_path / name).read_text(), f"{name}: {STALE}"
    assert _without_images((DOCS / "report.html").read_text()) == _without_images(
        (tmp_path / "report.html").read_text()), STALE
    assert sorted(p.name for p in DOCS.glob("*.png")) == sorted(p.name for p in tmp_path.glob("*.png"))


def test_the_reading_quotes_the_report():
    """docs/simulation.md quotes scenario totals as `USD n`; each must be a total in the committed report, so a
    changed report needs a new reading."""
    import csv

    text = (ROOT / "docs" / "simulation.md").read_text()
    totals = {round(float(row["total"])) for row in csv.DictReader((DOCS / "scenarios.csv").open())}
    quoted = [int(n.replace(",", "")) for n in re.findall(r"USD ([0-9][0-9,]*)", text)]
    assert len(quoted) >= 4
    assert set(quoted) <= totals, sorted(set(quoted) - totals)
