"""Issue 16, item 1: one link must not take over a signed-in classmate's account.

A real fleet in root mode (students are system users), one hub with two students. The attacker, mallory, serves an
HTML page from her own server without sign-in (``extra_static_paths`` in her own ``~/.jupyter`` config, as seen in
the issue). The victim, vicky, is signed in to the portal and the hub in a real Chromium and opens mallory's link.
The page's script tries everything the issue describes: read "signed in as" from the portal, take the xsrf token
from the hub's token page, create an API token for vicky (also blind, as a no-cors POST), and list vicky's files
with it. Every step must fail, vicky must have no new token in the hub's database, and neither the portal's nor
the hub's login cookies may be sent to mallory's host.

Before hosts of their own (portal, each hub, each student's server), all of this succeeded: every server shared
one origin with the portal and the hubs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import psutil
import pytest
from conftest import browser_client, free_port, running_in, wait_until
from hub_fixture import world_traversable_dir

from hubfleet.backends.local.backend import LocalBackend, stop_fleet
from hubfleet.catalog import load_catalog
from hubfleet.hubapi import HubClient
from hubfleet.plan import diff, plan

AT = dt.date(2026, 11, 1)
HUB = "sec101-2026j"
ATTACKER, VICTIM = "orig-mallory", "orig-vicky"
CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="students as system users need root"),
]


@dataclass
class Fleet:
    state: Path
    backend: LocalBackend
    accounts: set[str] = field(default_factory=set)  # the students' system accounts, removed at teardown

    def doc(self) -> dict:
        return json.loads((self.state / "fleet.json").read_text())

    @property
    def portal(self) -> str:
        """The portal's root URL as the browser knows it."""
        doc = self.doc()
        return str(doc.get("portal_url") or doc["front_door"]).rstrip("/")

    @property
    def hub(self) -> str:
        return next(h["url"] for h in self.doc()["hubs"] if h["name"] == HUB)

    def password(self, user: str) -> str:
        lines = (self.state / "passwords.txt").read_text().splitlines()
        return next(line.split(" ", 1)[1] for line in lines if line.startswith(f"{user} "))

    def api(self) -> HubClient:
        ep = self.backend.endpoint(HUB)
        return HubClient(ep.api_url, ep.token, timeout=30)

    def server(self, user: str) -> dict:
        with self.api() as api:
            return ((api.user(user) or {}).get("servers") or {}).get("") or {}

    def server_url(self, user: str) -> str:
        model = self.server(user)
        return model.get("full_url") or urljoin(self.doc()["front_door"], model["url"])

    def start(self, user: str) -> None:
        with self.api() as api:
            api.start_server(user)
        wait_until(lambda: self.server(user).get("ready"))
        uid = _server_process(user).uids().real
        assert uid != os.geteuid(), f"{user}'s server runs as the hub's account: students must be system users here"
        self.accounts.add(pwd.getpwuid(uid).pw_name)

    def stop(self, user: str) -> None:
        with self.api() as api:
            api.stop_server(user)
        wait_until(lambda: not self.server(user))


def write_catalog(root: Path) -> Path:
    (root / "courses").mkdir(parents=True)
    (root / "fleet.yaml").write_text("fleet: {name: origins-university, topology: per-presentation}\n")
    (root / "courses" / "SEC101.yaml").write_text(textwrap.dedent(f"""\
        code: SEC101
        title: Web security in practice
        presentations:
          - id: 2026J
            start: 2026-10-03
            end: 2027-06-10
            enrolment: [{{users: [{ATTACKER}, {VICTIM}]}}]
        """))
    return root


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    root = world_traversable_dir("hf-origins-")  # students' servers must reach the state dir's lab config
    state = root / "state"
    loaded = load_catalog(write_catalog(root / "catalog"))
    backend = LocalBackend(state, state / "storage", loaded, port=free_port(), demo_mode=False)
    f = Fleet(state, backend)
    try:
        spec = plan(loaded.catalog, AT)
        report = backend.apply(diff(spec, backend.observe()), spec)
        assert report.ok, [r.message for r in report.failures]
        with f.api() as api:
            api.create_users([u for u in (ATTACKER, VICTIM) if api.user(u) is None])
        yield f
    finally:
        seen = running_in(state)
        stop_fleet(state)
        _, alive = psutil.wait_procs(seen, timeout=30)
        for account in f.accounts:
            subprocess.run(["userdel", account], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
        assert alive == [], f"left running after down: {alive}"


# The attacker's page. Every step records what it got; "blocked: ..." when the browser refused.
EVIL = """<!doctype html><html><body><pre id="result">running</pre><script>
const PORTAL = %(portal)s, HUB = %(hub)s, VICTIM = %(victim)s, VICTIM_SERVER = %(victim_server)s;
const out = {};
async function step(name, fn) { try { out[name] = await fn(); } catch (e) { out[name] = "blocked: " + e; } }
(async () => {
  await step("portal_user", async () => {
    const text = await (await fetch(PORTAL + "/portal/", {credentials: "include"})).text();
    const m = text.match(/id="portal-user">([^<]+)</); return m ? m[1] : "not signed in";
  });
  await step("xsrf", async () => {
    const text = await (await fetch(HUB + "hub/token", {credentials: "include"})).text();
    const m = text.match(/xsrf_token: "([^"]+)"/); return m ? m[1] : "no token on the page";
  });
  await step("blind_token", async () => {
    await fetch(HUB + "hub/api/users/" + VICTIM + "/tokens", {method: "POST", mode: "no-cors", credentials: "include",
      body: JSON.stringify({note: "pwned-blind"})});
    return "sent";
  });
  await step("token", async () => {
    const r = await fetch(HUB + "hub/api/users/" + VICTIM + "/tokens", {method: "POST", credentials: "include",
      headers: {"X-XSRFToken": String(out.xsrf), "Content-Type": "application/json"}, body: JSON.stringify({note: "pwned"})});
    return r.status === 201 ? (await r.json()).token : "refused " + r.status;
  });
  await step("files_by_cookie", async () => {
    const r = await fetch(VICTIM_SERVER + "api/contents/", {credentials: "include"});
    return r.ok ? (await r.json()).content.map((f) => f.name) : "refused " + r.status;
  });
  await step("files", async () => {
    const r = await fetch(VICTIM_SERVER + "api/contents/", {headers: {Authorization: "token " + out.token}});
    return r.ok ? (await r.json()).content.map((f) => f.name) : "refused " + r.status;
  });
  document.getElementById("result").textContent = JSON.stringify(out);
  document.body.dataset.done = "1";
})();
</script></body></html>
"""


def _plant_page(fleet: Fleet) -> str:
    """What mallory does from her own account: an ``extra_static_paths`` entry in her ``~/.jupyter`` config and the
    page beside it; after a restart her server serves it to anyone. Returns the page's URL."""
    proc = _server_process(ATTACKER)
    uid, home = proc.uids().real, _env(proc)["HOME"]
    mine = Path(f"/proc/{proc.pid}/root{home}")  # her home as her server sees it (works inside a mount namespace)
    page = EVIL % {k: json.dumps(v) for k, v in {
        "portal": fleet.portal, "hub": fleet.hub, "victim": VICTIM, "victim_server": fleet.server_url(VICTIM),
    }.items()}  # fmt: skip
    for path, text in (
        (mine / ".jupyter" / "jupyter_server_config.py", f"c.ServerApp.extra_static_paths = [{str(Path(home) / 'www')!r}]\n"),
        (mine / "www" / "evil.html", page),
    ):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        for p in (path.parent, path):
            os.chown(p, uid, pwd.getpwuid(uid).pw_gid)
    fleet.stop(ATTACKER)
    fleet.start(ATTACKER)
    return fleet.server_url(ATTACKER) + "static/evil.html"


def test_a_students_page_opened_by_a_signed_in_classmate_gets_nothing(fleet: Fleet) -> None:
    if not CHROMIUM.exists():
        pytest.fail("needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    fleet.start(ATTACKER)
    fleet.start(VICTIM)
    evil = _plant_page(fleet)
    with browser_client(timeout=30) as anyone:
        served = anyone.get(evil)
    assert served.status_code == 200 and "PORTAL" in served.text  # served to anyone, as in the issue
    tokens_before = _tokens(fleet, VICTIM)

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]  # fmt: skip
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            context = browser.new_context()
            page = context.new_page()
            # The victim signs in at the portal and opens the hub (one sign-in; the hub's OAuth hop sets its cookies).
            page.goto(fleet.portal + "/portal/login")
            page.fill("#username", VICTIM)
            page.fill("#password", fleet.password(VICTIM))
            page.click("#sign-in")
            page.wait_for_selector("#your-courses")
            page.goto(fleet.hub + "hub/token")
            page.wait_for_selector("#token-area, form", timeout=60_000)
            assert VICTIM in page.content()  # signed in to the hub: the attack has something to aim at
            signed_in = {c["name"] for c in context.cookies()}
            assert {"hubfleet-portal-session", "jupyterhub-hub-login"} <= signed_in, signed_in

            opened = page.goto(evil)
            sent = opened.request.all_headers().get("cookie", "")  # what the attacker's server received
            page.wait_for_selector("body[data-done='1']", timeout=60_000)
            got = json.loads(page.inner_text("#result"))
            reaching = {c["name"] for c in context.cookies([evil])}
        finally:
            browser.close()

    assert got["portal_user"] != VICTIM and got["portal_user"].startswith("blocked"), got
    assert got["xsrf"].startswith("blocked"), got
    assert str(got["token"]).startswith(("refused", "blocked")), got  # no token came back
    assert str(got["files"]).startswith(("refused", "blocked")), got
    assert str(got["files_by_cookie"]).startswith(("refused", "blocked")), got  # her server is not his to read
    assert _tokens(fleet, VICTIM) == tokens_before  # nothing was created, not even blind
    # Cookies: only JupyterHub's session id (shared with the hub's subdomains by JupyterHub's design; it proves
    # nothing on its own) may reach mallory's host; no login cookie of the portal or the hub.
    assert reaching <= {"jupyterhub-session-id"}, reaching
    assert "hubfleet-portal" not in sent and "jupyterhub-hub-login" not in sent, sent


def _tokens(fleet: Fleet, user: str) -> list[str]:
    db = sqlite3.connect(f"file:{fleet.state / 'hubs' / HUB / 'jupyterhub.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT api_tokens.note FROM api_tokens JOIN users ON users.id = api_tokens.user_id WHERE users.name = ?",
            (user,),
        ).fetchall()
    finally:
        db.close()
    return sorted(str(r[0]) for r in rows)


def _server_process(user: str) -> psutil.Process:
    """The user's jupyterhub-singleuser process itself (inside its sandbox when there is one, not bwrap)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (_env(proc).get("JUPYTERHUB_USER") == user and proc.name() != "bwrap"
                    and any("singleuser" in part for part in proc.cmdline())):
                found.append(proc)
        except psutil.Error:
            pass
    return min(found, key=lambda p: p.create_time())


def _env(proc: psutil.Process) -> dict[str, str]:
    try:
        return proc.environ()
    except psutil.Error:
        return {}

