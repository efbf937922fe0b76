"""How long the fleet dashboard page takes for 500 hubs (issue 13: under 300 ms on this machine).

Builds a fixture fleet in a temporary directory: a folder catalog of 500 courses with one open presentation each
(a roster of 100 students per presentation, so 500 hubs in the per-presentation topology), a state dir as the
local backend leaves it (fleet.json with every hub up, each hub's jupyterhub.sqlite with its users and a few
running servers, an archive ledger with problems), and a signed-in platform-team member. Then it GETs
``/portal/dashboard/`` through the portal app (FastAPI TestClient, in process) and prints the best and the median
of 20 renders, after one warm-up (which loads the catalog once; later pages reuse it until a file changes).

    .venv/bin/python benchmarks/dashboard.py [--hubs 500]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from hubfleet.backends.local.members import hash_password
from hubfleet.lifecycle.ledger import Ledger
from hubfleet.web.portal import PortalSource, create_app
from hubfleet.web.requests_pages import RequestSettings, mount

TODAY = dt.date(2026, 12, 3)
TARGET_MS = 300
STUDENTS = 100


def fixture_fleet(root: Path, hubs: int) -> tuple[Path, Path]:
    catalog, state = root / "catalog", root / "state"
    (catalog / "courses").mkdir(parents=True)
    (catalog / "enrolments").mkdir()
    (catalog / "fleet.yaml").write_text(
        "fleet:\n  name: bench\n  units:\n"
        "    - {id: stem, name: STEM, admins: [{username: ua0001, until: 2030-01-01}]}\n"
        "    - {id: arts, name: Arts}\n  platform_team: [pt0001]\n")  # fmt: skip
    docs = []
    for c in range(hubs):
        code = f"C{c:04d}"
        rows = ["username,role"] + [f"s{(c * 50 + i) % 40_000:06d},student" for i in range(STUDENTS)]
        (catalog / "enrolments" / f"{code}-2026J.csv").write_text("\n".join(rows) + "\n")
        (catalog / "courses" / f"{code}.yaml").write_text(
            f"code: {code}\ntitle: Course {c}\nunit: {'stem' if c % 2 else 'arts'}\n"
            "team: {instructors: [in0001], tutors: [tu0001]}\npresentations:\n"
            f"  - id: 2026J\n    start: 2026-10-03\n    end: 2027-06-10\n    expected_students: {STUDENTS}\n"
            f"    enrolment: [{{csv: ../enrolments/{code}-2026J.csv}}]\n")  # fmt: skip
        hub = f"c{c:04d}-2026j"
        docs.append({"name": hub, "url": f"http://{hub}.localhost:8000/", "up": True, "presentations": []})
        hub_dir = state / "hubs" / hub
        hub_dir.mkdir(parents=True)
        db = sqlite3.connect(hub_dir / "jupyterhub.sqlite")
        db.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, last_activity TEXT);"
                         "CREATE TABLE spawners (id INTEGER PRIMARY KEY, user_id INT, server_id INT);")  # fmt: skip
        db.executemany("INSERT INTO users (name, last_activity) VALUES (?, ?)",
                       [(f"s{i:06d}", f"2026-12-02 10:{i % 60:02d}:00") for i in range(STUDENTS)])  # fmt: skip
        db.executemany("INSERT INTO spawners (user_id, server_id) VALUES (?, ?)",
                       [(i, i if i < 5 else None) for i in range(STUDENTS)])  # fmt: skip
        db.commit()
        db.close()
    (state / "fleet.json").write_text(json.dumps({"fleet": "bench", "hubs": docs, "branding": {"name": "bench"}}))
    (state / "passwords.json").write_text(json.dumps({"pt0001": hash_password("bench-password")}))
    os.chmod(state / "passwords.json", 0o600)
    with Ledger(state) as ledger:
        for c in range(0, hubs, 50):
            ledger.record(f"C{c:04d}-2026J", "s000001", f"file:///nowhere/{c}.tar.gz", "0" * 64, 1)
            ledger.mark_problem(f"C{c:04d}-2026J", "s000001", "archive missing at verification")
    return catalog, state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hubs", type=int, default=500)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hubfleet-bench-dashboard-") as tmp:
        catalog, state = fixture_fleet(Path(tmp), args.hubs)
        app = create_app(PortalSource(state))
        mount(app, RequestSettings(catalog=catalog, database_url=f"sqlite:///{Path(tmp) / 'requests.db'}"),
              today=lambda: TODAY)  # fmt: skip
        client = TestClient(app, base_url="http://portal.localhost:8000", follow_redirects=False)
        form = client.get("/portal/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        assert client.post("/portal/login", data={"username": "pt0001", "password": "bench-password",
                                                  "csrf_token": token}).status_code == 303  # fmt: skip
        t0 = time.perf_counter()
        first = client.get("/portal/dashboard/")
        cold = (time.perf_counter() - t0) * 1000
        rows = len(re.findall(r'<tr id="hub-', first.text))
        assert first.status_code == 200 and rows == args.hubs, (first.status_code, rows)
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            page = client.get("/portal/dashboard/")
            times.append((time.perf_counter() - t0) * 1000)
            assert page.status_code == 200
        best, median = min(times), statistics.median(times)
        print(f"dashboard, {args.hubs} hubs ({len(first.content) // 1024} KiB page): first (catalog load) "
              f"{cold:.0f} ms; then best {best:.0f} ms, median {median:.0f} ms over {args.runs} renders "
              f"(target < {TARGET_MS} ms): {'ok' if median < TARGET_MS else 'OVER TARGET'}")


if __name__ == "__main__":
    main()
