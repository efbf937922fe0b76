"""The one username grammar and its injective mapping to storage names and Unix accounts (issue 16, item 5)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubfleet.catalog.naming import (
    USERNAME_MAX,
    account_prefix,
    check_username,
    is_username,
    storage_name,
    unix_account,
)

# Usernames as the grammar admits them: generated from its alphabet, then kept only if valid, so the property
# covers letters of other scripts, e-mail punctuation and the escape character '-' itself.
_ALPHABET = st.sampled_from(list("abcdexyz0189.-_@+") + ["é", "ß", "ø", "ı", "ж", "中", "ﬁ"])
usernames = st.text(_ALPHABET, min_size=1, max_size=USERNAME_MAX).map(str.lower).filter(is_username)


@pytest.mark.parametrize("name", ["ab1234", "jane.smith", "x", "a_b-c.d", "9lives", "a.smith@example.ac.uk", "josé", "o+x"])
def test_grammar_accepts(name):
    assert check_username(name) == name


@pytest.mark.parametrize("name", ["", "-ab", ".ab", "_ab", "a b", "a/b", "..", "../../etc", "a\x00b", "a" * 65, "a\nb"])
def test_grammar_rejects_with_the_rule(name):
    with pytest.raises(ValueError, match="letters .any script"):
        check_username(name)


def test_normalises_case_and_unicode_form():
    assert check_username(" Jose\u0301 ") == "jos\u00e9"  # decomposed é from an IdP == composed é in a roster


@settings(max_examples=400)
@given(usernames, usernames)
def test_storage_name_is_injective(a, b):
    if a != b:
        assert storage_name(a) != storage_name(b)


@settings(max_examples=400)
@given(usernames, usernames)
def test_unix_account_is_injective_and_valid_for_useradd(a, b):
    prefix = account_prefix("example-university")
    account = unix_account(prefix, a)
    assert re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", account)
    if a != b:
        assert account != unix_account(prefix, b)


@given(usernames)
def test_storage_name_is_one_safe_path_component(name):
    stored = storage_name(name)
    assert re.fullmatch(r"[a-z0-9_-]{1,128}", stored) and stored not in {".", ".."}


def test_the_examples_of_the_issue_never_share_a_name():
    # alice.smith and the roster name that used to map to alice.smith's account; ab.1 and ab-2e1 (one k8s subPath)
    for a, b in [("alice.smith", "alice-smith-63425827"), ("ab.1", "ab-2e1"), ("alice.smith", "alice-2esmith")]:
        assert storage_name(a) != storage_name(b)
        assert unix_account("hf-", a) != unix_account("hf-", b)


def test_accounts_are_per_fleet():
    assert account_prefix("fleet-a") != account_prefix("fleet-b")
    assert unix_account(account_prefix("fleet-a"), "ab1234") != unix_account(account_prefix("fleet-b"), "ab1234")
    assert account_prefix("x", "uni-") == "uni-"
    with pytest.raises(ValueError):
        account_prefix("x", "../")
