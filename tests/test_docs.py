"""The catalog reference is generated from the schema; these tests keep the committed copy honest."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from typer.testing import CliRunner

from hubfleet.catalog.docs import render_reference
from hubfleet.cli.main import app

DOCS = Path(__file__).resolve().parent.parent / "docs" / "catalog.md"


def test_catalog_reference_is_current():
    assert DOCS.read_text(encoding="utf-8") == render_reference(), (
        "docs/catalog.md is stale: the catalog schema changed. Run `make docs` and commit the result."
    )


def test_reference_documents_every_key():
    text = render_reference()
    for key in ("expected_students", "extra_mounts", "provision_days_before_start", "idp_group", "login_message"):
        assert f"| `{key}` |" in text, key


def test_schema_command_prints_a_valid_json_schema():
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    # Editors validate against it: a typo is an error there too, and a minimal catalog is fine.
    assert validator.is_valid({"fleet": {"name": "tiny"}, "courses": []})
    assert not validator.is_valid({"fleet": {"name": "tiny", "topolgy": "central"}})
    assert not validator.is_valid({"fleet": {"name": "tiny", "topology": "per-school"}})
