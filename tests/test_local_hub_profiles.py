"""The spawn form on every hub of the example that offers several profiles (A233: Python and R), used as a browser
uses it: a form POST to /hub/spawn. JupyterHub hands form fields over as lists; the Start button used to fail
with 403 ``You may not use profile "['python']"``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hub_fixture import world_traversable_dir
from test_local_hub_fixture import account, login, make_hub_dir, student_python, wait_ready

from hubfleet.backends.local.members import hub_members
from hubfleet.catalog import load_catalog
from hubfleet.plan import plan

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "university"
DAY = dt.date(2026, 11, 1)  # both A233 presentations have a hub


def _multi_profile_hubs() -> list[str]:
    spec = plan(load_catalog(EXAMPLE).catalog, DAY)
    return [h.name for h in spec.hubs if len(h.profiles) > 1]


def test_the_example_has_multi_profile_hubs() -> None:
    assert {"a233-2026b", "a233-2026j"} <= set(_multi_profile_hubs())


@pytest.mark.parametrize("hub_name", _multi_profile_hubs())
def test_start_button_of_the_spawn_form_starts_the_chosen_profile(hub_name: str) -> None:
    loaded = load_catalog(EXAMPLE)
    spec = plan(loaded.catalog, DAY).hub(hub_name)
    members = hub_members(spec, loaded)
    student = next(u for u, roles in members.items() if "student" in roles.values())
    root = world_traversable_dir(f"hf-profiles-{hub_name}-")
    hub = make_hub_dir(root, EXAMPLE, hub_name, today=DAY, members=members, demo=os.geteuid() != 0,
                       passwords={student: "pw-student"}, singleuser_python=student_python(root),
                       account_prefix="hfprof-")  # fmt: skip  (the example's own prefix is other tests' too)
    hub.start()
    try:
        b, resp = login(hub, student, "demo-pass" if hub.raw["demo_mode"] else "pw-student")
        assert resp.status_code == 302, resp.text[:300]
        form = b.get(f"{hub.base}hub/spawn")
        assert form.status_code == 200, form.text[:300]
        offered = re.findall(r'name="profile"[^>]*value="([^"]+)"', form.text)
        assert len(offered) > 1 and offered == [p.name for p in spec.profiles], offered
        chosen = next(p for p in offered if p not in re.findall(r'value="([^"]+)"\s+checked', form.text))
        xsrf = next(c.value for c in b.cookies.jar if c.name == "_xsrf")
        started = b.post(f"{hub.base}hub/spawn", data={"profile": chosen, "_xsrf": xsrf})
        assert started.status_code == 302, started.text[:500]
        wait_ready(hub, student)
        with hub.api() as api:
            server = api.get(f"users/{student}").json()["servers"][""]
        assert server["user_options"] == {"profile": chosen}
    finally:
        hub.stop()
        left = hub.leftovers()
        for proc in left:
            proc.kill()
        if os.geteuid() == 0 and not hub.raw["demo_mode"]:
            subprocess.run(["userdel", account(hub, student)], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
    assert not left, left
