"""The lifecycle's pieces on their own, with real files: the archive stores, the engine's verify-before-delete rules,
and the ledger's per-presentation facts (what the planner's archived/purged come from).

The S3 store is tested for its interface only, through fsspec's in-memory filesystem (``memory://``): the same
FsspecStore code talks to s3:// once s3fs is installed, but no bucket is used here.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from hubfleet.lifecycle.engine import Archiver, StudentFolder, audit, stub_text
from hubfleet.lifecycle.ledger import Ledger, LedgerError
from hubfleet.lifecycle.restoring import remove_tree
from hubfleet.lifecycle.store import ArchiveStore, FsspecStore, LocalStore, archive_key, open_store

KEY = "TM351-2026J"


def _folders(root: Path, users=("ana", "ben")) -> list[StudentFolder]:
    out = []
    for user in users:
        (root / user / "data").mkdir(parents=True)
        (root / user / "notes.txt").write_text(f"{user}'s notes\n")
        (root / user / "data" / "blob.bin").write_bytes(os.urandom(20_000))
        out.append(StudentFolder(user, root / user))
    return out


class Recorder:
    """A teardown that records what the engine asked for, and really removes the folder."""

    def __init__(self) -> None:
        self.removed: list[str] = []
        self.stubs: list[str] = []

    def stub(self, folder: StudentFolder) -> None:
        self.stubs.append(folder.student)

    def remove(self, folder: StudentFolder, halfway) -> None:  # noqa: ANN001
        if folder.path is not None and folder.path.exists():
            remove_tree(folder.path, halfway)
        self.removed.append(folder.student)


def _stores(tmp_path: Path) -> list[ArchiveStore]:
    pytest.importorskip("fsspec")
    return [LocalStore(tmp_path / "archives"), FsspecStore(f"memory://hubfleet-test-{os.getpid()}/{tmp_path.name}")]


def test_store_interface(tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"payload")
    for store in _stores(tmp_path):
        assert isinstance(store, ArchiveStore)
        key = archive_key(KEY, "ana")
        assert not store.exists(key)
        store.put(src, key)
        assert store.exists(key) and store.url(key).endswith(f"{KEY}/ana.tar.gz")
        store.get(key, tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == b"payload"
        with store.open(key) as fh:
            assert fh.read() == b"payload"
        store.delete(key)
        store.delete(key)  # already gone is fine
        assert not store.exists(key)
        with pytest.raises(ValueError):
            store.url("../../etc/passwd")


@pytest.mark.parametrize("which", [0, 1], ids=["local", "memory"])
def test_archive_verify_teardown_and_purge(tmp_path: Path, which: int) -> None:
    store = _stores(tmp_path)[which]
    folders = _folders(tmp_path / "src")
    said: list[str] = []
    with Ledger(tmp_path / "state") as ledger:
        archiver = Archiver(store, ledger, tmp_path / "staging", workers=2, say=said.append)
        rec = Recorder()
        out = archiver.archive(KEY, folders, keep_until="2028-07-10", teardown=rec)
        assert out.ok and sorted(out.archived) == ["ana", "ben"] and sorted(rec.removed) == ["ana", "ben"]
        assert sorted(out.removed) == ["ana", "ben"] and not any(f.path.exists() for f in folders)
        assert said == [f"{KEY}: the archives of 2 student(s) hold 4 files (0.0 MB), 2 folders, 0 symlinks, "
                        "0 hard links"]
        assert ledger.presentation_state(KEY) == (True, False)
        assert all(r.ok and r.removed_at and r.keep_until == "2028-07-10" for r in ledger.for_presentation(KEY))
        assert audit(ledger, deep=True) == []
        assert "hubfleet archive restore" in stub_text("ana", ledger.for_student("ana"), "http://x/portal/archives/")
        purged = archiver.purge(KEY)
        assert purged.ok and sorted(purged.purged) == ["ana", "ben"]
        assert ledger.presentation_state(KEY) == (True, True)
        assert not store.exists(archive_key(KEY, "ana"))


def test_corrupt_archive_blocks_teardown_then_is_archived_afresh(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archives")
    folders = _folders(tmp_path / "src")
    with Ledger(tmp_path / "state") as ledger:
        archiver = Archiver(store, ledger, tmp_path / "staging", workers=2)
        assert archiver.archive(KEY, folders).ok  # archived and verified, no teardown asked
        path = Path(store.url(archive_key(KEY, "ben")))
        data = bytearray(path.read_bytes())
        data[100] ^= 0xFF
        path.write_bytes(bytes(data))
        rec = Recorder()
        out = archiver.archive(KEY, folders, teardown=rec)
        assert not out.ok and rec.removed == [] and "ben" in out.summary()
        assert [p.split(":")[0] for p in audit(ledger)] == [f"{KEY}/ben"]  # recorded: status shows it
        assert ledger.presentation_state(KEY) == (False, False)
        with pytest.raises(LedgerError):
            ledger.mark_removed(KEY, "ben")
        # The next run archives ben afresh from his folder, which is still there, and only then tears down.
        out = archiver.archive(KEY, folders, teardown=rec)
        assert out.ok and out.archived == ["ben"] and out.resumed == ["ana"] and sorted(rec.removed) == ["ana", "ben"]
        assert audit(ledger, deep=True) == []
        # Ben's first archive is not overwritten: his new one has its own name and row; the old one is kept.
        bens = [r for r in ledger.all() if r.student == "ben"]
        assert [Path(r.location).name for r in bens] == ["ben.tar.gz", "ben.2.tar.gz"]
        assert bens[0].superseded and bens[0].problem and not bens[1].superseded and bens[1].removed_at
        assert hashlib.sha256(path.read_bytes()).hexdigest() != bens[0].sha256  # still the damaged file, as found


def test_missing_archive_after_teardown_is_reported_and_blocks_purge(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "archives")
    with Ledger(tmp_path / "state") as ledger:
        archiver = Archiver(store, ledger, tmp_path / "staging", workers=1)
        assert archiver.archive(KEY, _folders(tmp_path / "src"), teardown=Recorder()).ok
        Path(store.url(archive_key(KEY, "ana"))).unlink()
        assert audit(ledger) == [f"{KEY}/ana: archive missing: {store.url(archive_key(KEY, 'ana'))}"]
        audit(ledger, deep=True)  # records the problem
        assert ledger.presentation_state(KEY) == (False, False)
        assert not archiver.purge(KEY).ok
        out = archiver.archive(KEY, [], teardown=Recorder())
        assert not out.ok and "already removed" in out.summary()


def test_store_choice_is_remembered(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert isinstance(open_store(None, state), LocalStore)
    assert open_store(None, state).url("K/a.tar.gz") == str(state / "archives" / "K" / "a.tar.gz")
    with pytest.raises(ValueError, match="refusing to switch"):
        open_store(str(tmp_path / "elsewhere"), state)


def test_ledger_created_before_the_lifecycle_columns_is_migrated(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "archives.sqlite")
    db.execute("""CREATE TABLE archives (presentation TEXT NOT NULL, student TEXT NOT NULL, location TEXT NOT NULL,
                  sha256 TEXT NOT NULL, bytes INTEGER NOT NULL, created_at TEXT NOT NULL, verified_at TEXT,
                  purged_at TEXT, PRIMARY KEY (presentation, student))""")
    db.execute("INSERT INTO archives VALUES ('K', 'ana', '/a', 'aa', 1, '2027-01-01T00:00:00+00:00', NULL, NULL)")
    db.commit()
    db.close()
    with Ledger(tmp_path) as ledger:
        (row,) = ledger.all()
        assert row.problem is None and row.keep_until is None and not row.ok
        with pytest.raises(LedgerError):
            ledger.mark_presentation_archived("K")
        ledger.mark_verified("K", "ana", sha256="aa")
        ledger.mark_presentation_archived("K")
        assert ledger.presentation_state("K") == (True, False)
