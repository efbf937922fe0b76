"""Enrolment from a real OpenLDAP server (Debian slapd), the way a university directory is read."""

from __future__ import annotations

import logging

import pytest

from hubfleet.enrol.ldap_source import (
    LdapDirectory,
    LdapError,
    LdapGroupNotFound,
    LdapQueryError,
    LdapUnavailable,
)

try:  # the lead's conftest may put the repo root on sys.path, or pytest may only add tests/
    from tests.ldap_server import BASE_DN, TM351_GROUP, TM351_MEMBERS, TM351_TUTORS, TM351_TUTORS_GROUP, USERS, SlapdServer, slapd_server
except ImportError:  # pragma: no cover - depends on how pytest was started
    from ldap_server import BASE_DN, TM351_GROUP, TM351_MEMBERS, TM351_TUTORS, TM351_TUTORS_GROUP, USERS, SlapdServer, slapd_server

__all__ = ["slapd_server"]  # the fixture is used by name below


def directory(server, **kwargs) -> LdapDirectory:
    # The service account is subject to the server's size limit (5), unlike the rootdn.
    return LdapDirectory(server.url, server.base_dn, server.service_dn, server.service_password, **kwargs)


def test_group_of_names_members_resolve_to_uids(slapd_server):
    assert directory(slapd_server).members_of_group(TM351_GROUP) == TM351_MEMBERS


def test_group_of_names_members_resolve_to_another_attribute(slapd_server):
    mails = directory(slapd_server).members_of_group(TM351_GROUP, attribute="mail")
    assert mails == {f"{uid}@example.ac.uk" for uid in TM351_MEMBERS}


def test_posix_group_member_uids(slapd_server):
    assert directory(slapd_server).members_of_group(TM351_TUTORS_GROUP) == TM351_TUTORS
    assert directory(slapd_server).members_of_group(TM351_TUTORS_GROUP, attribute="mail") == {
        f"{uid}@example.ac.uk" for uid in TM351_TUTORS
    }


def test_anonymous_read(slapd_server):
    anonymous = LdapDirectory(slapd_server.url, slapd_server.base_dn)
    assert anonymous.members_of_group(TM351_GROUP) == TM351_MEMBERS


def test_filter_search_returns_every_entry_past_the_size_limit(slapd_server):
    # 10 people, server size limit 5: only a paged search returns them all.
    ldap = directory(slapd_server, page_size=3)
    assert ldap.members_by_filter("(objectClass=posixAccount)") == set(USERS)
    assert directory(slapd_server).members_by_filter("(objectClass=posixAccount)") == set(USERS)


def test_filter_search_with_base_and_condition(slapd_server):
    ldap = directory(slapd_server)
    staff = ldap.members_by_filter("(employeeType=staff)", base=f"ou=people,{BASE_DN}")
    assert staff == TM351_TUTORS
    assert ldap.members_by_filter("(uid=nobody-here)") == set()


def test_nested_groups_and_dangling_members(tmp_path, caplog):
    extra = (
        f"dn: cn=tm351-all,ou=groups,{BASE_DN}\nobjectClass: groupOfNames\ncn: tm351-all\n"
        f"member: {TM351_GROUP}\nmember: uid=mn6789, ou=People, {BASE_DN}\n"
        f"member: uid=left-last-year,ou=people,{BASE_DN}\nmember: cn=tm351-all,ou=groups,{BASE_DN}\n"
    )
    with SlapdServer(tmp_path, extra_ldif=extra) as server, caplog.at_level(logging.WARNING):
        members = directory(server).members_of_group(f"cn=tm351-all,ou=groups,{BASE_DN}")
    # A nested group is expanded (cycles included), DN spelling differences do not matter, and a
    # member whose entry was deleted is left out with a warning rather than enrolled.
    assert members == TM351_MEMBERS | {"mn6789"}
    assert "left-last-year" in caplog.text


def test_unknown_group_names_the_dn(slapd_server):
    missing = f"cn=tm351-2025j,ou=groups,{BASE_DN}"
    with pytest.raises(LdapGroupNotFound) as info:
        directory(slapd_server).members_of_group(missing)
    assert info.value.dn == missing and missing in str(info.value)


def test_a_person_is_not_a_group(slapd_server):
    with pytest.raises(LdapGroupNotFound, match="not a group"):
        directory(slapd_server).members_of_group(f"uid=ab1234,ou=people,{BASE_DN}")


def test_bad_filter_and_missing_base_are_errors(slapd_server):
    ldap = directory(slapd_server)
    with pytest.raises(LdapQueryError, match="not a valid LDAP filter"):
        ldap.members_by_filter("uid=ab1234)(")
    with pytest.raises(LdapQueryError, match="does not exist"):
        ldap.members_by_filter("(uid=*)", base=f"ou=nowhere,{BASE_DN}")


def test_wrong_password_is_unavailable_and_says_why(slapd_server):
    ldap = LdapDirectory(slapd_server.url, slapd_server.base_dn, slapd_server.service_dn, "wrong")
    with pytest.raises(LdapUnavailable, match="refused to bind") as info:
        ldap.members_of_group(TM351_GROUP)
    assert slapd_server.url in str(info.value) and "wrong" not in str(info.value)


def test_stopped_server_raises_unavailable_and_returns_nothing(slapd_server):
    ldap = directory(slapd_server, timeout=2)
    assert ldap.members_of_group(TM351_GROUP) == TM351_MEMBERS
    slapd_server.stop()
    for call in (lambda: ldap.members_of_group(TM351_GROUP), lambda: ldap.members_by_filter("(uid=*)")):
        result = None
        with pytest.raises(LdapUnavailable) as info:
            result = call()
        assert result is None
        assert slapd_server.url in str(info.value)
        assert isinstance(info.value, LdapError)
