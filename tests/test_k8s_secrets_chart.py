"""On the z2jh tier (the chart's own hub, rendered by real helm, run by the process kubelet): the hub signs its
login cookies with the cookie secret from hubfleet's generate-once Secret (``hub.existingSecret``), not with the
one the chart mints into its own Secret ``hub`` (which ``helm template``, as Argo CD runs it, mints anew on every
render). So a GitOps re-render cannot log anyone out. One hub, started once for the module.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest
from tornado.web import decode_signed_value

sys.path.insert(0, str(Path(__file__).parent / "z2jh"))  # the tier's shared pieces (tests/z2jh/z2jh_hubs.py)

from z2jh_hubs import ChartHub, Student  # noqa: E402

pytestmark = pytest.mark.slow

HUB = "a233-2026j"
COOKIE = "jupyterhub-hub-login"
KEY = "hub.config.JupyterHub.cookie_secret"


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    running = ChartHub(tmp_path_factory.mktemp("z2jh-secrets"), HUB)
    yield running
    running.stop()


def _secret(hub: ChartHub, name: str, key: str) -> str:
    return base64.b64decode(hub.fleet.cluster.get("v1", "Secret", HUB, name)["data"][key]).decode()


def test_the_chart_hub_signs_logins_with_the_cookie_secret_hubfleet_generated_once(hub):
    name = sorted(hub.api("GET", f"groups/{HUB}").json()["users"])[0]
    student = Student(hub, name)
    try:
        assert student.sign_in().status_code == 200
        cookie = (student.http.cookies.get(COOKIE, path="/hub/") or "").strip('"')  # a quoted cookie value
        assert cookie
    finally:
        student.close()
    ours = bytes.fromhex(_secret(hub, "hubfleet", KEY))  # JupyterHub reads a hex string as its bytes
    chart = bytes.fromhex(_secret(hub, "hub", KEY))
    assert ours != chart
    assert decode_signed_value(ours, COOKIE, cookie) is not None
    assert decode_signed_value(chart, COOKIE, cookie) is None
