"""`hubfleet cost` against a real HTTP server replaying recorded OpenCost allocation responses (the format of
https://opencost.io/docs/integrations/api-examples): labelled hub namespaces in both label spellings, unlabelled
namespaces and __idle__ as shared overhead, and a window OpenCost has no data for."""

from __future__ import annotations

import csv
import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from typer.testing import CliRunner

from hubfleet.catalog import load_catalog
from hubfleet.cli.main import app
from hubfleet.costs.opencost import Allocation, attribute

ROOT = Path(__file__).resolve().parent
EXAMPLE = ROOT.parent / "examples" / "university"
RECORDED = ROOT / "fixtures" / "opencost"
EMPTY_WINDOW = "2025-01-01T00:00:00Z,2025-02-01T00:00:00Z"


@pytest.fixture(scope="module")
def opencost():
    """An OpenCost stand-in on a free port: /allocation/compute answers from the recorded files by window."""
    replies = {"30d": "allocation-30d.json", EMPTY_WINDOW: "allocation-empty.json"}
    requests: list[tuple[str, dict]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            requests.append((url.path, query))
            name = replies.get(query.get("window", ""))
            if url.path != "/allocation/compute" or name is None:
                body, status = json.dumps({"code": 400, "message": "bad request"}).encode(), 400
            else:
                body, status = (RECORDED / name).read_bytes(), 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()
    server.server_close()
    thread.join()


def _recorded_total() -> float:
    data = json.loads((RECORDED / "allocation-30d.json").read_text())["data"][0]
    return sum(a["totalCost"] for a in data.values())


def test_real_cost_per_presentation_with_the_shared_overhead_split(opencost, tmp_path):
    url, requests = opencost
    out = tmp_path / "cost"
    result = CliRunner().invoke(app, ["cost", str(EXAMPLE), "--opencost", url, "--window", "30d", "--out", str(out)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    path, query = requests[-1]
    assert path == "/allocation/compute"
    assert query["window"] == "30d" and query["aggregate"] == "namespace" and query["accumulate"] == "true"
    rows = {r["presentation"]: r for r in csv.DictReader((out / "cost.csv").open())}
    assert set(rows) == {"A233-2026B", "A233-2026J", "DD211-2026J", "M269-2026J", "SWC-dec26", "TM351-2026J"}
    # each hub namespace is its presentation's own cost, whichever label spelling OpenCost reports
    assert float(rows["TM351-2026J"]["own_namespaces"]) == 1500.0  # namespaceLabels, Prometheus-style keys
    assert float(rows["M269-2026J"]["own_namespaces"]) == 900.0  # labels, Kubernetes keys
    # unlabelled namespaces (kube-system, ingress-nginx, hubfleet-system) and __idle__ are shared, not lost
    shared = sum(float(r["shared_overhead"]) for r in rows.values())
    assert shared == pytest.approx(150 + 60 + 25 + 800, abs=0.05)
    assert sum(float(r["real_total"]) for r in rows.values()) == pytest.approx(_recorded_total(), abs=0.05)
    # hub-hours rule on one-presentation hubs: every live hub carries the same share
    assert float(rows["SWC-dec26"]["shared_overhead"]) == pytest.approx(shared / 6, abs=0.05)
    # the simulator's prediction for the same window is beside it
    assert all(float(r["predicted"]) > 0 for r in rows.values())
    assert float(rows["TM351-2026J"]["predicted"]) > float(rows["SWC-dec26"]["predicted"])
    page = (out / "cost.html").read_text()
    assert "kube-system" in page and "__idle__" in page and "TM351-2026J" in page
    assert "2026-11-01 to 2026-12-01" in result.output


def test_a_window_opencost_has_no_data_for_is_a_clear_error(opencost, tmp_path):
    url, _ = opencost
    out = tmp_path / "cost"
    result = CliRunner().invoke(app, ["cost", str(EXAMPLE), "--opencost", url, "--window", EMPTY_WINDOW,
                                      "--out", str(out)])
    assert result.exit_code == 2
    assert "no allocation data for window" in result.output and "shorter --window" in result.output
    assert not out.exists()


def test_a_refused_or_malformed_window_exits_2(opencost):
    url, _ = opencost
    refused = CliRunner().invoke(app, ["cost", str(EXAMPLE), "--opencost", url, "--window", "7d"])
    assert refused.exit_code == 2 and "OpenCost refused window '7d' (400): bad request" in refused.output
    malformed = CliRunner().invoke(app, ["cost", str(EXAMPLE), "--opencost", url, "--window", "thirty days"])
    assert malformed.exit_code == 2 and "is not an OpenCost window" in malformed.output


def test_nothing_listening_is_a_clear_error(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    result = CliRunner().invoke(app, ["cost", str(EXAMPLE), "--opencost", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 2 and "cannot reach OpenCost" in result.output


def test_a_shared_hub_is_split_over_its_presentations_by_students():
    """Per-course topology: namespace `tm351` carries no presentation label; the catalog says who is on it."""
    loaded = load_catalog(EXAMPLE).catalog
    catalog = loaded.model_copy(update={"fleet": loaded.fleet.model_copy(update={"topology": "per-course"})})
    t = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)
    labels = {"hubfleet.io/hub": "tm351", "hubfleet.io/course": "tm351"}
    # on 2026-05-31 TM351-2025J is open (650 students) and TM351-2026J is not yet provisioned: all to 2025J
    real = attribute(catalog, [Allocation("tm351", labels, 100.0, t - dt.timedelta(days=1), t)], "students")
    assert real.direct == {"TM351-2025J": pytest.approx(100.0)}
    # in March 2027 M269's two presentations share hub m269: 550 and 300 students
    t = dt.datetime(2027, 3, 20, tzinfo=dt.timezone.utc)
    labels = {"hubfleet_io_hub": "m269", "hubfleet_io_course": "m269"}
    real = attribute(catalog, [Allocation("m269", labels, 170.0, t - dt.timedelta(days=1), t)], "students")
    assert real.direct == {"M269-2026J": pytest.approx(110.0), "M269-2027B": pytest.approx(60.0)}
