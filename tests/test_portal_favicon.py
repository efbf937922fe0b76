"""Browsers ask the portal for /favicon.ico on every page: it is the fleet's logo, or a square in its colour."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from hubfleet.web.portal import PortalSource, create_app

EXAMPLE_LOGO = Path(__file__).resolve().parents[1] / "examples" / "university" / "branding" / "logo.svg"


def portal(state: Path, branding: dict) -> TestClient:
    state.mkdir(exist_ok=True)
    (state / "fleet.json").write_text(json.dumps({"fleet": "f", "hubs": [], "branding": branding}))
    return TestClient(create_app(PortalSource(state)))


def test_favicon_is_the_catalog_logo(tmp_path):
    icon = portal(tmp_path / "s", {"name": "U", "logo_path": str(EXAMPLE_LOGO)}).get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.content == EXAMPLE_LOGO.read_bytes()


def test_favicon_without_a_logo_is_a_square_in_the_fleet_colour(tmp_path):
    icon = portal(tmp_path / "s", {"name": "U", "primary_color": "#aa3300"}).get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert 'fill="#aa3300"' in icon.text
    # A colour that is not one (catalog validation aside) never reaches the SVG as markup.
    odd = portal(tmp_path / "t", {"primary_color": '"/><script>x</script>'}).get("/favicon.ico")
    assert "<script>" not in odd.text
