"""Issue 16, items 4, 7 and 10: a course file is untrusted input, and `validate` refuses every attack seen.

Each test plants one attack in a copy of the small two-course test catalog (tests/conftest.py) and runs the real
CLI. It expects exit 2, one error line starting with the exact ``FILE:LINE:COL: path:`` (read off the planted
text by hand, never derived from the output), no traceback, and nothing written anywhere: not in the catalog,
not outside it. The runtime half of item 4 (seeding through a student's symlink, k8s render reading a host
directory) is tested on the seeding code and on ``hubfleet render`` itself.
"""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest
from conftest import write_two_course_catalog
from typer.testing import CliRunner

from hubfleet.catalog import naming
from hubfleet.cli.main import app
from hubfleet.storage.seeding import SeedError, seed

# A course of one presentation; attacks go into the lines after it (line 7 onwards).
X1 = """\
code: X1
title: Attack course
presentations:
  - id: p1
    start: 2026-10-01
    end: 2027-01-01
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The catalog, plus an 'operator' folder beside it: what an attacker wants to reach."""
    secret = tmp_path / "operator-ssh"
    secret.mkdir()
    (secret / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    return write_two_course_catalog(tmp_path / "catalog")


def snapshot(top: Path) -> dict[str, tuple]:
    """Every entry under ``top`` with its kind, size and content hash: 'nothing written' is 'nothing differs'."""
    out = {}
    for p in sorted(top.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else ""
        out[p.relative_to(top).as_posix()] = (st.st_mode, st.st_size, digest)
    return out


def course(root: Path, text: str, name: str = "X1") -> None:
    (root / "courses" / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")


def refused(root: Path, monkeypatch, prefix: str, fragment: str, *args: str) -> str:
    """Run `hubfleet validate .` (or ``args``) in the catalog; assert one located error, exit 2, nothing written."""
    monkeypatch.chdir(root)
    before = snapshot(root.parent)
    result = CliRunner().invoke(app, list(args) or ["validate", "."])
    assert isinstance(result.exception, SystemExit), result.exception  # an error message, not a traceback
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == "1 error(s); nothing was changed.", lines
    [error] = lines[:-1]
    assert error.startswith(prefix), error
    assert fragment in error, error
    assert snapshot(root.parent) == before
    return error


# -- item 4: course files can write anywhere ------------------------------------------------------------------


def test_seed_source_absolute_path_is_refused(root, monkeypatch):
    course(root, X1 + f"seed: [{{source: {root.parent / 'operator-ssh'}}}]\n")
    refused(root, monkeypatch, "courses/X1.yaml:7:17: courses[X1].seed[0].source:", "is an absolute path")


def test_seed_source_dotdot_leaving_the_catalog_is_refused(root, monkeypatch):
    course(root, X1 + "seed: [{source: ../../operator-ssh}]\n")
    refused(root, monkeypatch, "courses/X1.yaml:7:17: courses[X1].seed[0].source:", "'../operator-ssh'")


def test_seed_source_symlink_leading_out_is_refused(root, monkeypatch):
    (root / "material" / "notes").symlink_to(root.parent / "operator-ssh")
    course(root, X1 + "seed: [{source: ../material/notes}]\n")
    refused(root, monkeypatch, "courses/X1.yaml:7:17: courses[X1].seed[0].source:", "through a symlink")


def test_seed_source_of_the_whole_catalog_is_refused(root, monkeypatch):
    # "." would copy fleet.yaml and every roster (other students' names) into each student's folder.
    course(root, X1 + "seed: [{source: ..}]\n")
    refused(root, monkeypatch, "courses/X1.yaml:7:17: courses[X1].seed[0].source:", "the catalog folder itself")


def test_seed_source_holding_the_rosters_is_refused(root, monkeypatch):
    # Inside the catalog, but every student would get every TM351 student's name.
    course(root, X1 + "seed: [{source: ../enrolments}]\n")
    refused(root, monkeypatch, "courses/X1.yaml:7:17: courses[X1].seed[0].source:",
            "holds the roster 'enrolments/TM351-2026J.csv'")


def test_seed_target_absolute_is_refused(root, monkeypatch):
    course(root, X1 + "seed: [{source: ../material/TM351, target: /etc/cron.d}]\n")
    refused(root, monkeypatch, "courses/X1.yaml:7:44: courses[X1].seed[0].target:", "not relative to the course folder")


def test_seed_target_with_dotdot_is_refused(root, monkeypatch):
    course(root, X1 + "seed: [{source: ../material/TM351, target: ../../../etc/cron.d}]\n")
    refused(root, monkeypatch, "courses/X1.yaml:7:44: courses[X1].seed[0].target:", "contains '..'")


def test_render_never_ships_a_host_directory_into_a_configmap(root, monkeypatch, tmp_path):
    # On Kubernetes a seed source becomes a ConfigMap: a symlink to the operator's ~/.ssh must not be read.
    (root / "material" / "notes").symlink_to(root.parent / "operator-ssh")
    course(root, X1 + "seed: [{source: ../material/notes}]\n")
    out = tmp_path / "rendered"
    refused(root, monkeypatch, "courses/X1.yaml:7:17: courses[X1].seed[0].source:", "through a symlink",
            "render", ".", "--out", str(out), "--at", "2026-11-01")
    assert not out.exists()


def test_seeding_refuses_a_students_symlink_inside_the_target(tmp_path):
    # The student replaced the seed target's parent `data` with a link to a folder they cannot write (as root
    # the hub seeds and chowns): nothing may be created or chowned there.
    material = tmp_path / "material"
    material.mkdir()
    (material / "week1.ipynb").write_text("{}")
    victim = tmp_path / "victim"
    victim.mkdir()
    course_dir = tmp_path / "home" / "alice" / "TM351-2026J"
    course_dir.mkdir(parents=True)
    (course_dir / "data").symlink_to(victim)
    with pytest.raises(SeedError, match="symlink"):
        seed(material, course_dir / "data" / "week1", "always", base=course_dir)
    assert list(victim.iterdir()) == []
    with pytest.raises(SeedError, match="not inside the course folder|'..'"):
        seed(material, course_dir / ".." / ".." / "bob", "always", base=course_dir)
    assert sorted(p.name for p in (tmp_path / "home").iterdir()) == ["alice"]


# -- item 7: bad input that crashes or hangs -------------------------------------------------------------------


def test_billion_laughs_is_refused_at_the_first_alias(root, monkeypatch):
    # 9 levels of 9 aliases: 387,420,489 strings if expanded; refused where the first alias stands.
    lines = ["lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 10)]
    course(root, X1 + "\n".join(lines) + "\n")
    refused(root, monkeypatch, "courses/X1.yaml:8:12: YAML alias '*l0' is not allowed", "write the value out")


def test_utf16_course_file_is_a_located_error_not_a_traceback(root, monkeypatch):
    (root / "courses" / "X1.yaml").write_bytes(X1.encode("utf-16"))
    refused(root, monkeypatch, "courses/X1.yaml:1:1: not UTF-8", "UTF-16")


def test_python_tag_is_refused_and_never_run(root, monkeypatch):
    course(root, X1.replace("title: Attack course", "title: !!python/object/apply:os.system ['touch pwned']"))
    refused(root, monkeypatch, "courses/X1.yaml:2:8: YAML tag '!!python/object/apply:os.system' is not allowed", "")
    assert not (root / "pwned").exists()


def test_oversized_course_file_is_refused_unread(root, monkeypatch):
    course(root, X1 + ("# " + "x" * 1000 + "\n") * 1100)  # 1.1 MB of comments
    refused(root, monkeypatch, "courses/X1.yaml:1:1: the file is larger than 1024 KiB", "split it")


def test_deep_nesting_is_refused_not_a_recursion_error(root, monkeypatch):
    course(root, X1 + "deep: " + "[" * 5000 + "]" * 5000 + "\n")
    refused(root, monkeypatch, "courses/X1.yaml:7:38: nested more than 32 levels deep", "flatten it")


def test_huge_memory_quantity_is_an_error_not_an_overflow(root, monkeypatch):
    course(root, X1 + "resources: {memory: " + "9" * 400 + "G}\n")
    refused(root, monkeypatch, "courses/X1.yaml:7:21: courses[X1].resources.memory:", "far too large")


def test_roster_with_a_giant_cell_is_a_located_error(root, monkeypatch):
    (root / "enrolments" / "TM351-2026J.csv").write_text('username,role\nalice,student\n"' + "a" * 200_000 + '",student\n')
    refused(root, monkeypatch, "enrolments/TM351-2026J.csv:3:1: courses[TM351].presentations[2026J].enrolment[0].csv:",
            "the CSV cannot be read here")


def test_thousands_of_bad_names_are_one_screen_not_thousands_of_errors(root, monkeypatch):
    # Each bad name is an error, but a megabyte of them (50,000) took minutes to compute and print: the first 100
    # are shown, then a count (benchmarks/catalog_input.py times the megabyte).
    course(root, X1 + "    enrolment:\n      - users:\n" + "".join(f"        - -u{i}\n" for i in range(3_000)))
    monkeypatch.chdir(root)
    result = CliRunner().invoke(app, ["validate", "."])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("courses/X1.yaml:9:11: courses[X1].presentations[p1].enrolment[0].users[0]: '-u0' is not")
    assert lines[-2:] == ["... and 2900 more (fix these first)", "3000 error(s); nothing was changed."]
    assert len(lines) == 102


def test_roster_outside_the_catalog_is_never_read(root, monkeypatch):
    # Reading /etc/passwd would echo its lines back as "invalid username" errors.
    course(root, X1 + "    enrolment: [{csv: /etc/passwd}]\n")
    error = refused(root, monkeypatch, "courses/X1.yaml:7:23: courses[X1].presentations[p1].enrolment[0].csv:",
                    "is an absolute path")
    assert "root" not in error.split("csv:", 1)[1].replace("/etc/passwd", "")


# -- item 10: every field that reaches a path, name, account or generated config -------------------------------

BAD_USERNAMES = ["", "..", "../../etc", "-rf"]


@pytest.mark.parametrize("bad", BAD_USERNAMES, ids=["empty", "dotdot", "path", "option"])
def test_static_users_list_uses_the_username_grammar(root, monkeypatch, bad):
    course(root, X1 + f'    enrolment: [{{users: [alice, "{bad}"]}}]\n')
    refused(root, monkeypatch, "courses/X1.yaml:7:33: courses[X1].presentations[p1].enrolment[0].users[1]:",
            "is not a valid username")


@pytest.mark.parametrize("bad", BAD_USERNAMES, ids=["empty", "dotdot", "path", "option"])
def test_team_uses_the_username_grammar(root, monkeypatch, bad):
    course(root, X1 + f'team: {{tutors: [tina, "{bad}"]}}\n')
    refused(root, monkeypatch, "courses/X1.yaml:7:23: courses[X1].team.tutors[1]:", "is not a valid username")


def test_platform_team_uses_the_username_grammar(root, monkeypatch):
    fleet = (root / "fleet.yaml").read_text().replace("platform_team: [opsadmin]", 'platform_team: [opsadmin, "-rf"]')
    (root / "fleet.yaml").write_text(fleet)
    refused(root, monkeypatch, "fleet.yaml:4:29: fleet.platform_team[1]:", "is not a valid username")


def test_hub_that_would_be_the_kube_system_namespace_is_refused(root, monkeypatch):
    course(root, X1.replace("code: X1", "code: KUBE").replace("id: p1", "id: system"), name="KUBE")
    refused(root, monkeypatch, "courses/KUBE.yaml:4:9: courses[KUBE].presentations[system].id:",
            "hub name 'kube-system' is a Kubernetes system namespace")


def test_hub_named_portal_is_refused(root, monkeypatch):
    fleet = (root / "fleet.yaml").read_text().replace("topology: per-presentation", "topology: per-course")
    (root / "fleet.yaml").write_text(fleet)
    course(root, X1.replace("code: X1", "code: PORTAL"), name="PORTAL")
    refused(root, monkeypatch, "courses/PORTAL.yaml:1:7: courses[PORTAL].code:", "hub name 'portal' is the portal's own host")


def test_central_hub_in_the_default_namespace_is_refused(root, monkeypatch):
    fleet = (root / "fleet.yaml").read_text().replace("name: test-university", "name: default")
    (root / "fleet.yaml").write_text(fleet.replace("topology: per-presentation", "topology: central"))
    refused(root, monkeypatch, "fleet.yaml:2:9: fleet.name:", "hub name 'default' is a Kubernetes system namespace")


@pytest.mark.parametrize("path", ["{course_dir}/../../../etc/jupyter", "/etc/jupyter"], ids=["dotdot", "absolute"])
def test_extra_mount_covering_etc_jupyter_is_refused(root, monkeypatch, path):
    course(root, X1 + f'storage: {{extra_mounts: [{{name: conf, path: "{path}"}}]}}\n')
    refused(root, monkeypatch, "courses/X1.yaml:7:45: courses[X1].storage.extra_mounts[conf].path:", path)


def test_extra_mount_over_another_courses_folder_is_refused(root, monkeypatch):
    course(root, X1 + 'storage: {extra_mounts: [{name: grab, path: "/home/{username}/M269-2026J"}]}\n')
    refused(root, monkeypatch, "courses/X1.yaml:7:45: courses[X1].storage.extra_mounts[grab].path:",
            "covers the course folder 'M269-2026J'")


def test_logo_outside_the_catalog_is_refused(root, monkeypatch):
    # The logo is served to anyone: a path to the operator's key would publish it.
    (root / "logo.svg").symlink_to(root.parent / "operator-ssh" / "id_ed25519")
    fleet = (root / "fleet.yaml").read_text().replace("branding: {name:", "branding: {logo: logo.svg, name:")
    (root / "fleet.yaml").write_text(fleet)
    refused(root, monkeypatch, "fleet.yaml:5:20: fleet.branding.logo:", "through a symlink")


def test_image_reference_is_checked(root, monkeypatch):
    course(root, X1 + 'images: [{name: default, image: "evil image; curl x | sh"}]\n')
    refused(root, monkeypatch, "courses/X1.yaml:7:33: courses[X1].images[default].image:", "not a valid image reference")


def test_domain_is_checked(root, monkeypatch):
    fleet = (root / "fleet.yaml").read_text().replace("topology: per-presentation", "domain: evil.example/x?y")
    (root / "fleet.yaml").write_text(fleet)
    refused(root, monkeypatch, "fleet.yaml:3:11: fleet.domain:", "is not a DNS name")


def test_memory_limit_below_guarantee_is_refused(root, monkeypatch):
    course(root, X1 + "resources: {memory: 4G, memory_limit: 1G}\n")
    refused(root, monkeypatch, "courses/X1.yaml:7:39: courses[X1].resources.memory_limit:",
            "memory_limit 1G is below the memory guarantee 4G")


def test_limit_below_an_inherited_guarantee_names_where_it_comes_from(root, monkeypatch):
    fleet = (root / "fleet.yaml").read_text().replace("topology: per-presentation",
                                                      "topology: per-presentation\n  defaults: {resources: {cpu: 2}}")
    (root / "fleet.yaml").write_text(fleet)
    course(root, X1 + "resources: {cpu_limit: 500m}\n")
    refused(root, monkeypatch, "courses/X1.yaml:7:24: courses[X1].resources.cpu_limit:", "(fleet.defaults.resources)")


@pytest.mark.parametrize(("line", "col", "where"), [
    ("resources: {memory: 0}", 21, "resources.memory"),
    ("storage: {size: 0Gi}", 17, "storage.size"),
], ids=["memory", "storage"])
def test_zero_sizes_are_refused(root, monkeypatch, line, col, where):
    course(root, X1 + line + "\n")
    refused(root, monkeypatch, f"courses/X1.yaml:7:{col}: courses[X1].{where}:", "must be more than 0")


def test_two_default_images_are_refused(root, monkeypatch):
    course(root, X1 + textwrap.dedent("""\
        images:
          - name: python
            image: quay.io/jupyter/scipy-notebook:2026-11-24
            default: true
          - name: r
            image: quay.io/jupyter/r-notebook:2026-11-24
            default: true
        """))
    refused(root, monkeypatch, "courses/X1.yaml:13:14: courses[X1].images[r].default:", "a second default image")


def test_extension_ids_are_checked(root, monkeypatch):
    course(root, X1 + 'extensions: {disabled: ["@jupyterlab/extensionmanager-extension", "</script><script>x"]}\n')
    refused(root, monkeypatch, "courses/X1.yaml:7:67: courses[X1].extensions.disabled[1]:",
            "not a JupyterLab extension or plugin id")


def test_extension_settings_are_plain_json(root, monkeypatch):
    # A YAML date would make the generated overrides.json unwritable at spawn time.
    course(root, X1 + 'extensions: {settings: {"@jupyterlab/notebook-extension:tracker": {since: 2026-01-01}}}\n')
    refused(root, monkeypatch,
            "courses/X1.yaml:7:67: courses[X1].extensions.settings.@jupyterlab/notebook-extension:tracker:",
            "is not a JSON value (a date?)")


def test_catalog_without_courses_is_an_error_not_a_stop_everything(root, monkeypatch):
    for f in (root / "courses").iterdir():
        f.unlink()
    refused(root, monkeypatch, "fleet.yaml:1:1: courses:", "an apply would stop every running hub")


# -- item 5 (validate side): two people never share one account or one folder ----------------------------------

# Found by a birthday search: both cut to the account 'hfe139-averylongloginna_b2ee1bb5' in fleet test-university.
CLASH = ("averylongloginname.117875", "averylongloginname.146067")


def test_two_logins_that_would_share_a_unix_account_are_refused(root, monkeypatch):
    prefix = naming.account_prefix("test-university")
    assert naming.unix_account(prefix, CLASH[0]) == naming.unix_account(prefix, CLASH[1])  # the crafted case holds
    course(root, X1 + f"    enrolment: [{{users: [{CLASH[0]}, {CLASH[1]}]}}]\n")
    refused(root, monkeypatch, "courses/X1.yaml:7:53: courses[X1].presentations[p1].enrolment[0].users[1]:",
            f"'{CLASH[1]}' and '{CLASH[0]}' (courses/X1.yaml:7:26) would share the Unix account")


def test_a_storage_clash_names_the_roster_row_and_the_list(root, monkeypatch):
    # storage_name is injective (a 96-bit hash on cut names): force a clash to see both places named.
    roster = root / "enrolments" / "TM351-2026J.csv"
    roster.write_text(roster.read_text().replace("bob,", "bob.jones,"))
    m269 = root / "courses" / "M269.yaml"
    m269.write_text(m269.read_text().replace("[carol, alice]", "[carol.white, alice]"))
    real = naming.storage_name
    monkeypatch.setattr(naming, "storage_name", lambda u: "same" if u in ("bob.jones", "carol.white") else real(u))
    refused(root, monkeypatch, "enrolments/TM351-2026J.csv:3:1: 'bob.jones' and 'carol.white' (courses/M269.yaml:7:26) "
            "would share the storage folder 'same'", "")


def test_the_fixture_catalog_itself_is_valid(root, monkeypatch):
    # Every attack above is one change to this catalog: without it, validate passes.
    monkeypatch.chdir(root)
    result = CliRunner().invoke(app, ["validate", "."])
    assert result.exit_code == 0, result.output
