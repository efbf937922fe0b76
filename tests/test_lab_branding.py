"""What a student's JupyterLab gets from the catalog by default: no news prompt, and the fleet's branding in the
top bar. A real JupyterLab server started on the lab config dir hubfleet writes (as the local spawner does)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port

from hubfleet.backends.local.labconfig import server_env, write_lab_config
from hubfleet.catalog import load_catalog
from hubfleet.plan import plan

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "university"
NEWS = "@jupyterlab/apputils-extension:notification"


@pytest.fixture(scope="module")
def spec():
    return plan(load_catalog(EXAMPLE).catalog, dt.date(2026, 11, 1))


def test_every_presentation_has_the_news_prompt_off_and_a_course_can_add_to_the_default(spec):
    presentations = [p for h in spec.hubs for p in h.presentations]
    assert all(p.extensions.settings[NEWS] == {"fetchNews": "false"} for p in presentations)
    m269 = next(p for p in presentations if p.course == "M269")
    # M269's own settings and disabled extension come on top of the fleet default, not instead of it.
    assert "@jupyterlab/notebook-extension:tracker" in m269.extensions.settings
    assert m269.extensions.disabled == ("@jupyterlab/extensionmanager-extension",)


@pytest.fixture(scope="module")
def lab(spec, tmp_path_factory):
    """A real JupyterLab on the lab config dir of TM351-2026J, as the spawner writes it; yields its base URL."""
    hub = next(h for h in spec.hubs if h.name == "tm351-2026j")
    pres = hub.presentations[0]
    state = tmp_path_factory.mktemp("state")
    lab_dir = write_lab_config(state, hub.name, pres, hub.branding, EXAMPLE)
    home = tmp_path_factory.mktemp("home")
    port, token = free_port(), "lab-branding-test"
    env = {**os.environ, **server_env(lab_dir, pres, hub.name), "HOME": str(home),
           "JUPYTER_CONFIG_DIR": str(home / ".jupyter"), "JUPYTER_DATA_DIR": str(home / ".local")}
    argv = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={home}"]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=base, headers={"Authorization": f"token {token}"}, timeout=30)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.get("/api/status").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "JupyterLab did not start"
            time.sleep(0.3)
        yield client, hub
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_jupyterlab_does_not_ask_about_news(lab):
    client, _ = lab
    settings = client.get(f"/lab/api/settings/{NEWS}").json()
    assert settings["schema"]["properties"]["fetchNews"]["default"] == "false"


def test_jupyterlab_top_bar_carries_the_fleet_branding(lab):
    client, hub = lab
    page = client.get("/lab")
    assert page.status_code == 200 and "custom/custom.css" in page.text
    css = client.get("/custom/custom.css")
    assert css.status_code == 200
    assert hub.branding.primary_color in css.text and "Example University Notebooks" in css.text
    logo = client.get("/custom/logo.svg")
    assert logo.status_code == 200 and logo.content == (EXAMPLE / hub.branding.logo).read_bytes()
