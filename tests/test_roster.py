"""Roster parsing as a course team meets it: real-looking exports in, members or located errors out."""

from __future__ import annotations

from pathlib import Path

import pytest

from hubfleet.catalog.roster import Member, RosterErrors, parse_roster


def write(tmp_path: Path, text: str, name: str = "roster.csv", bom: bool = False) -> Path:
    path = tmp_path / name
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def errors_of(path: Path, preset: str = "hubfleet", **kwargs) -> list:
    with pytest.raises(RosterErrors) as info:
        parse_roster(path, preset, kwargs.get("columns"), kwargs.get("default_role", "student"))
    return info.value.errors


def test_hubfleet_preset_reads_usernames_and_roles(tmp_path):
    path = write(tmp_path, "username,role\nab1234,student\n  CD5678 ,tutor\nef9012,\nmk42,instructor\n")
    assert parse_roster(path, "hubfleet", None, "student") == [
        Member("ab1234", "student"),
        Member("cd5678", "tutor"),  # stripped and lower-cased
        Member("ef9012", "student"),  # an empty role cell takes the source's default role
        Member("mk42", "instructor"),
    ]


def test_hubfleet_preset_without_role_column_uses_default_role(tmp_path):
    path = write(tmp_path, "username\nab1234\ncd5678\n")
    assert parse_roster(path, "hubfleet", None, "tutor") == [Member("ab1234", "tutor"), Member("cd5678", "tutor")]


def test_student_records_export_excludes_withdrawn_students(tmp_path):
    path = write(
        tmp_path,
        "PERSON_ID,USERNAME,SURNAME,FORENAMES,PRESENTATION,STATUS\n"
        "A1234567,ab1234,Smith,Jane,2026J,Registered\n"
        'B7654321,cd5678,"O\'Brien, Jr",Seán,2026J,Withdrawn\n'
        "C1111111,ef9012,Okafor,Chidi Emeka,2026J,Registered\n",
    )
    assert parse_roster(path, "student-records", None, "student") == [
        Member("ab1234", "student"),
        Member("ef9012", "student"),
    ]


def test_student_records_unknown_status_is_reported(tmp_path):
    path = write(tmp_path, "PERSON_ID,USERNAME,SURNAME,FORENAMES,PRESENTATION,STATUS\nA1,ab1234,S,J,2026J,Deferred\n")
    [error] = errors_of(path, "student-records")
    assert (error.row, error.col) == (2, 6)
    assert "Deferred" in error.message and "Registered or Withdrawn" in error.message


def test_moodle_participants_export_maps_roles(tmp_path):
    path = write(
        tmp_path,
        "First name,Last name,Username,Email address,Roles,Groups\n"
        "Jane,Smith,ab1234,jane.smith@example.ac.uk,Student,Tutor group 1\n"
        "Tom,Jones,tj77,tom.jones@example.ac.uk,Non-editing teacher,\n"
        "Ann,Lee,al9,ann.lee@example.ac.uk,Editing teacher,\n"
        "Raj,Patel,rp3,raj.patel@example.ac.uk,Teacher,\n"
        'Kim,Ng,kn5,kim.ng@example.ac.uk,"Student, Non-editing teacher",\n'
        "Old,User,ou1,old@example.ac.uk,No roles,\n",
    )
    assert parse_roster(path, "moodle", None, "student") == [
        Member("ab1234", "student"),
        Member("tj77", "tutor"),
        Member("al9", "instructor"),
        Member("rp3", "instructor"),
        Member("kn5", "tutor"),  # several roles in one cell: the most privileged wins
    ]  # "No roles" is someone unenrolled, not a member


def test_moodle_unknown_role_is_reported(tmp_path):
    path = write(tmp_path, "Username,Roles\nab1234,Guest\n")
    [error] = errors_of(path, "moodle")
    assert (error.row, error.col) == (2, 2)
    assert "'Guest'" in error.message and "'non-editing teacher'" in error.message


def test_canvas_export_maps_enrollment_types_and_skips_points_possible(tmp_path):
    path = write(
        tmp_path,
        "Student,ID,SIS User ID,SIS Login ID,Section,Role\n"
        "    Points Possible,,,,,\n"
        '"Smith, Jane",101,A1234567,ab1234,TM351 2026J,StudentEnrollment\n'
        '"Jones, Tom",102,T0000001,tj77,TM351 2026J,TaEnrollment\n'
        '"Lee, Ann",103,T0000002,al9,TM351 2026J,TeacherEnrollment\n'
        '"Smith, Pat",104,,ps1,TM351 2026J,ObserverEnrollment\n',
    )
    assert parse_roster(path, "canvas", None, "student") == [
        Member("ab1234", "student"),
        Member("tj77", "tutor"),
        Member("al9", "instructor"),
    ]


def test_explicit_columns_override_the_preset(tmp_path):
    path = write(tmp_path, "Name,Login,Kind\nJane,AB1234,tutor\nTom,tj77,student\n")
    members = parse_roster(path, "hubfleet", {"username": "Login", "role": "Kind"}, "student")
    assert members == [Member("ab1234", "tutor"), Member("tj77", "student")]


def test_explicit_username_column_keeps_the_preset_role_vocabulary(tmp_path):
    path = write(tmp_path, "Full name,Login,Roles\nJane Smith,ab1234,Student\nTom Jones,tj77,Non-editing teacher\n")
    members = parse_roster(path, "moodle", {"username": "Login"}, "student")
    assert members == [Member("ab1234", "student"), Member("tj77", "tutor")]


def test_bad_username_names_row_and_column(tmp_path):
    path = write(tmp_path, "PERSON_ID,USERNAME,STATUS\nA1,ab1234,Registered\nA2,J Smith,Registered\n")
    [error] = errors_of(path, "student-records")
    assert (error.row, error.col) == (3, 2)
    assert error.message.startswith("row 3: username 'J Smith' is not a valid username")
    assert "letters (any script, lower-cased), digits" in error.message
    assert str(error).startswith(f"{path}:3:2: ")


def test_email_and_accented_logins_are_members(tmp_path):
    path = write(tmp_path, "username\nJane.Smith@Example.ac.uk\njos\u00e9\n")
    assert [m.username for m in parse_roster(path)] == ["jane.smith@example.ac.uk", "jos\u00e9"]


def test_every_error_in_the_file_is_reported_at_once(tmp_path):
    path = write(tmp_path, "username,role\nJ Smith,student\nok1,student\n,student\nab!,tutor\nok2,boss\n")
    errors = errors_of(path)
    assert [(e.row, e.col) for e in errors] == [(2, 1), (4, 1), (5, 1), (6, 2)]
    assert "empty" in errors[1].message


def test_missing_column_is_reported_at_row_1_with_the_columns_found(tmp_path):
    path = write(tmp_path, "PERSON_ID,LOGIN,STATUS\nA1,ab1234,Registered\n")
    [error] = errors_of(path, "student-records")
    assert (error.row, error.col) == (1, 1)
    assert "'USERNAME'" in error.message and "'PERSON_ID', 'LOGIN', 'STATUS'" in error.message


def test_missing_explicit_role_column_is_an_error(tmp_path):
    path = write(tmp_path, "Login\nab1234\n")
    [error] = errors_of(path, columns={"username": "Login", "role": "Kind"})
    assert error.row == 1 and "'Kind'" in error.message


def test_duplicate_with_conflicting_role_names_both_rows(tmp_path):
    path = write(tmp_path, "username,role\nab1234,student\ncd5678,student\nAB1234,tutor\n")
    [error] = errors_of(path)
    assert (error.row, error.col) == (4, 1)
    assert "tutor" in error.message and "student on row 2" in error.message


def test_duplicate_with_same_role_is_deduplicated(tmp_path):
    path = write(tmp_path, "username,role\nab1234,student\ncd5678,tutor\nab1234,Student\n")
    assert parse_roster(path, "hubfleet", None, "student") == [Member("ab1234", "student"), Member("cd5678", "tutor")]


def test_excel_utf8_bom_semicolons_and_crlf(tmp_path):
    # What Excel's "CSV UTF-8" gives in a European locale.
    path = write(tmp_path, "username;role\r\nab1234;student\r\n;\r\ncd5678;tutor\r\n", bom=True)
    assert parse_roster(path, "hubfleet", None, "student") == [Member("ab1234", "student"), Member("cd5678", "tutor")]


def test_row_numbers_count_lines_even_with_quoted_newlines(tmp_path):
    path = write(
        tmp_path,
        "Student,ID,SIS User ID,SIS Login ID,Section,Role\n"
        '"Smith,\nJane",101,A1,ab1234,S,StudentEnrollment\n'
        '"Jones, Tom",102,T1,Tom Jones,S,TaEnrollment\n',
    )
    [error] = errors_of(path, "canvas")
    assert (error.row, error.col) == (4, 4)


def test_non_utf8_file_says_how_to_convert(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("username\nab1234\nseán\n".encode("cp1252"))
    [error] = errors_of(path)
    assert error.row == 3 and "UTF-8" in error.message


def test_empty_file(tmp_path):
    [error] = errors_of(write(tmp_path, ""))
    assert error.row == 1 and "header" in error.message
