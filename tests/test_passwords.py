"""Generated per-user passwords (root mode): hashed cheaply because they are random, checked by the portal."""

from __future__ import annotations

import json

from hubfleet.backends.local.members import PasswordBook, hash_generated, hash_password, verify_password
from hubfleet.web.directory import UserDirectory


def test_generated_hash_round_trips_and_refuses_near_misses():
    stored = hash_generated("Xy7_abcdEFGH")
    assert stored.startswith("sha256$") and verify_password("Xy7_abcdEFGH", stored)
    assert not verify_password("Xy7_abcdEFGh", stored)
    assert not verify_password("Xy7_abcdEFGH", stored[:-2] + "00")
    assert not verify_password("Xy7_abcdEFGH", "sha256$zz$zz")
    # Two users with the same password get different hashes (salted).
    assert hash_generated("same") != hash_generated("same")


def test_password_book_gives_every_user_a_working_password_once(tmp_path):
    book = PasswordBook(tmp_path / "passwords.txt", tmp_path / "passwords.json")
    users = {f"s{i:04d}" for i in range(2000)}
    assert book.ensure(users) == sorted(users)
    plain = dict(line.split(" ", 1) for line in (tmp_path / "passwords.txt").read_text().splitlines()[1:])
    hashes = json.loads((tmp_path / "passwords.json").read_text())
    assert set(plain) == set(hashes) == users
    assert all(verify_password(plain[u], hashes[u]) for u in ("s0000", "s1234", "s1999"))
    assert not verify_password(plain["s0000"], hashes["s0001"])
    # A second apply changes nobody's password.
    assert book.ensure(users | {"new1"}) == ["new1"]
    again = json.loads((tmp_path / "passwords.json").read_text())
    assert {u: again[u] for u in users} == hashes
    assert (tmp_path / "passwords.txt").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "passwords.json").stat().st_mode & 0o777 == 0o600


def test_portal_checks_generated_and_older_scrypt_hashes(tmp_path):
    """A fleet whose passwords.json predates the change (scrypt) keeps working beside new (sha256) entries."""
    (tmp_path / "passwords.json").write_text(json.dumps({
        "old": hash_password("old-password"), "new": hash_generated("new-password"),
    }))
    (tmp_path / "passwords.json").chmod(0o600)
    directory = UserDirectory(tmp_path)
    assert directory.verify("old", "old-password") and directory.verify("new", "new-password")
    assert not directory.verify("new", "old-password") and not directory.verify("nobody", "new-password")
