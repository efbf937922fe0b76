"""`hubfleet validate` on broken catalogs: exit 2 and an error a person can act on, at the right place.

Each catalog under tests/catalog/bad/ has one problem. The expected ``FILE:LINE:COL: path:`` prefix
is written here by hand (read off the fixture), never derived from the output.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hubfleet.cli.main import app

HERE = Path(__file__).parent
BAD = HERE / "catalog" / "bad"

# (catalog under tests/catalog/bad, expected prefix of the first error line, a fragment of its message)
CASES = [
    ("unknown-key.yaml", "unknown-key.yaml:3:3: fleet.topolgy:", "did you mean 'topology'"),
    ("unknown-top-level-key.yaml", "unknown-top-level-key.yaml:3:1: course:", "did you mean 'courses'"),
    (
        "course-file-typo",
        "course-file-typo/courses/TM351.yaml:7:5: courses[TM351].presentations[2026J].expected_student:",
        "did you mean 'expected_students'",
    ),
    (
        "end-before-start.yaml",
        "end-before-start.yaml:9:14: courses[TM351].presentations[2026J].end:",
        "not after start 2026-10-03",
    ),
    (
        "unknown-placeholder.yaml",
        "unknown-placeholder.yaml:9:17: courses[TM351].storage.extra_mounts[postgres].path:",
        "unknown placeholder {home}",
    ),
    ("bad-memory.yaml", "bad-memory.yaml:6:15: fleet.defaults.resources.memory:", "'2GB' is not a memory quantity"),
    ("bad-cpu.yaml", "bad-cpu.yaml:6:22: courses[M269].resources.cpu:", "'two' is not a CPU quantity"),
    (
        "missing-seed-dir",
        "missing-seed-dir/courses/TM351.yaml:4:13: courses[TM351].seed[0].source:",
        "'course-material/TM351' is not a directory",
    ),
    (
        "missing-csv",
        "missing-csv/courses/TM351.yaml:8:14: courses[TM351].presentations[2026J].enrolment[0].csv:",
        "'enrolments/TM351-2026J.csv' does not exist",
    ),
    (
        # A names row pasted into the roster: the error points into the CSV itself.
        "bad-csv-row",
        "bad-csv-row/enrolments/M269-2026J.csv:3:1: courses[M269].presentations[2026J].enrolment[0].csv:",
        "'Jane Smith' is not a valid username",
    ),
    (
        "duplicate-presentation-id.yaml",
        "duplicate-presentation-id.yaml:10:13: courses[TM351].presentations[2026J].id:",
        "duplicate presentation id '2026J'",
    ),
    (
        # TM351-copy.yaml sorts (and loads) before TM351.yaml, so TM351.yaml is the duplicate.
        "duplicate-course-code",
        "duplicate-course-code/courses/TM351.yaml:1:7: courses[TM351].code:",
        "duplicate course code 'tm351'",
    ),
    (
        "course-code-underscore.yaml",
        "course-code-underscore.yaml:4:11: courses[TM_351].code:",
        "'tm_351' is not a valid DNS-1123 label",
    ),
    (
        "hub-name-too-long.yaml",
        "hub-name-too-long.yaml:7:13: courses[DATA-MANAGEMENT-AND-ANALYSIS-FOR-THE-TWENTY-FIRST-CENTURY-X1]"
        ".presentations[2026J].id:",
        "is 66 characters; DNS-1123 labels allow 63",
    ),
    (
        "hub-name-collision.yaml",
        "hub-name-collision.yaml:13:13: courses[TM351].presentations[A-2026J].id:",
        "hub name 'tm351-a-2026j' is already used by TM351-A/2026J",
    ),
    ("unknown-unit.yaml", "unknown-unit.yaml:8:11: courses[A233].unit:", "unknown unit 'arts'; known units: stem"),
    (
        "per-unit-without-unit.yaml",
        "per-unit-without-unit.yaml:7:5: courses[TM351].unit:",
        "the per-unit topology needs every course to name its unit",
    ),
    (
        "bad-enrolment-source.yaml",
        "bad-enrolment-source.yaml:11:13: courses[TM351].presentations[2026J].enrolment[0]:",
        "needs one of the keys csv, users, ldap or idp_group",
    ),
    ("bad-date.yaml", "bad-date.yaml:9:14: courses[TM351].presentations[2026J].end:", "YYYY-MM-DD"),
    (
        "wrong-type.yaml",
        "wrong-type.yaml:10:28: courses[TM351].presentations[2026J].expected_students:",
        "valid integer",
    ),
    (
        "negative-expected-students.yaml",
        "negative-expected-students.yaml:10:28: courses[TM351].presentations[2026J].expected_students:",
        "greater than or equal to 0",
    ),
    ("missing-required-key.yaml", "missing-required-key.yaml:4:5: courses[TM351].title:", "missing required key 'title'"),
    ("bad-auth-type.yaml", "bad-auth-type.yaml:4:11: fleet.auth.type:", "unknown auth type 'saml'"),
    ("yaml-syntax-error.yaml", "yaml-syntax-error.yaml:6:9: YAML syntax error:", "check indentation and quoting"),
    ("bad-colour.yaml", "bad-colour.yaml:5:20: fleet.branding.primary_color:", "#"),
    (
        "duplicate-image-names.yaml",
        "duplicate-image-names.yaml:9:15: courses[A233].images[default].name:",
        "duplicate image name 'default'",
    ),
    ("empty-course-file", "empty-course-file/courses/A233.yaml:1:1: the course file is empty", ""),
    ("bad-layout.yaml", "bad-layout.yaml:5:15: fleet.defaults.storage.layout:", "'per-presentation' or 'ephemeral'"),
    ("bad-fleet-name.yaml", "bad-fleet-name.yaml:2:9: fleet.name:", "not a valid DNS-1123 label"),
    (
        "idle-timeout-too-short.yaml",
        "idle-timeout-too-short.yaml:5:21: fleet.defaults.culling.idle_timeout:",
        "greater than or equal to 60",
    ),
    (
        "bad-role.yaml",
        "bad-role.yaml:12:19: courses[SWC].presentations[dec26].enrolment[0].role:",
        "'student', 'tutor' or 'instructor'",
    ),
    ("duplicate-unit-id.yaml", "duplicate-unit-id.yaml:6:11: fleet.units[stem].id:", "duplicate unit id 'stem'"),
    ("missing-logo.yaml", "missing-logo.yaml:4:11: fleet.branding.logo:", "'branding/logo.svg' does not exist"),
    (
        "bad-overwrite-policy.yaml",
        "bad-overwrite-policy.yaml:8:20: courses[TM351].seed[0].overwrite:",
        "'never', 'always' or 'if-unchanged'",
    ),
    (
        "pip-option-requirement.yaml",
        "pip-option-requirement.yaml:9:44: courses[M269].images[py].local_environment.requirements[0]:",
        "pip options such as -r or --index-url are not allowed",
    ),
    (
        "requirements-file-outside.yaml",
        "requirements-file-outside.yaml:10:30: courses[M269].images[py].local_environment.requirements_file:",
        "which is outside it; keep it inside the catalog folder",
    ),
]


def validate(catalog: str, cwd: Path, monkeypatch) -> tuple[int, list[str]]:
    """Run `hubfleet validate CATALOG` from ``cwd``; the exit code and the error lines it printed."""
    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(app, ["validate", catalog])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return result.exit_code, lines


def test_every_bad_catalog_has_a_case():
    assert sorted(p.name for p in BAD.iterdir()) == sorted(name for name, _, _ in CASES)
    assert len(CASES) >= 25


@pytest.mark.parametrize(("catalog", "prefix", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_catalog_is_rejected_with_a_located_error(catalog, prefix, fragment, monkeypatch):
    code, lines = validate(catalog, BAD, monkeypatch)
    assert code == 2
    # One problem, one error line (plus the summary), so the course team is not sent hunting.
    assert lines[-1] == "1 error(s); nothing was changed."
    [error] = lines[:-1]
    assert error.startswith(prefix)
    assert fragment in error


def test_several_errors_in_several_files_are_reported_at_once(monkeypatch):
    code, lines = validate(".", HERE / "catalog" / "several-errors", monkeypatch)
    assert code == 2
    prefixes = [line.split(": ", 2)[:2] for line in lines[:-1]]
    assert prefixes == [
        ["courses/M269.yaml:3:7", "courses[M269].unit"],
        ["courses/M269.yaml:7:10", "courses[M269].presentations[2026J].end"],
        ["courses/TM351.yaml:3:21", "courses[TM351].resources.memory"],
        ["fleet.yaml:4:3", "fleet.platfrom_team"],
    ]
    assert lines[-1] == "4 error(s); nothing was changed."


def test_errors_are_not_wrapped_at_the_terminal_width(monkeypatch):
    # CI logs and editors jump to FILE:LINE:COL, so one error stays one line however long it is.
    code, lines = validate("hub-name-too-long.yaml", BAD, monkeypatch)
    assert code == 2 and len(lines) == 2 and len(lines[0]) > 200


def test_the_example_catalog_is_valid(monkeypatch):
    monkeypatch.chdir(HERE.parent)
    result = CliRunner().invoke(app, ["validate", "examples/university"])
    assert result.exit_code == 0, result.output
    # One plain line when not on a terminal (no colour codes, no wrapping), whatever the path's length.
    assert result.stdout == "ok examples/university: 6 courses, 11 presentations, 3232 roster rows\n"
