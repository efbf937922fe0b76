"""Where archives live: a small ``ArchiveStore`` interface with a local directory (the default) and any fsspec
filesystem (``s3://bucket/prefix`` through s3fs, which any S3-compatible service speaks: MinIO, Ceph, R2...).

Keys are ``<PRESENTATION>/<student>.tar.gz`` and ``<PRESENTATION>/<student>.manifest.json``; the ledger records the
archive's ``url()``, so the portal and ``hubfleet archive restore`` find an archive from its ledger row alone, even
after the fleet moved to another store.

Why archive to local disk first and then ``put``: ``archive.py`` writes ``.partial`` files and renames them into
place, which is what makes a ``kill -9`` harmless; object stores have no rename, so for them the archive is built in a
staging directory (same atomic rules) and uploaded whole (an S3 PUT is atomic: readers see all or nothing). The
local store skips the copy: ``local_dir`` hands ``archive.py`` the final directory.

Which store a fleet uses is remembered in ``<state>/archive-store`` the first time it is chosen, so a later command
run without ``--archive-store`` cannot silently archive somewhere else.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

STORE_FILE = "archive-store"
ENV = "HUBFLEET_ARCHIVE_STORE"
_CHUNK = 1 << 20


def archive_key(presentation: str, student: str) -> str:
    return f"{presentation}/{student}.tar.gz"


def manifest_key(presentation: str, student: str) -> str:
    return f"{presentation}/{student}.manifest.json"


@runtime_checkable
class ArchiveStore(Protocol):
    def put(self, local: Path, key: str) -> None:
        """Upload a finished local file under key (atomically: a reader sees the old object or the whole new one)."""

    def get(self, key: str, local: Path) -> None:
        """Download key to a local file."""

    def open(self, key: str) -> BinaryIO:
        """A binary stream of the object (the portal streams downloads from it)."""

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Delete key; deleting what is already gone is not an error (purge is re-run after a crash)."""

    def url(self, key: str) -> str:
        """The location recorded in the ledger: a local path or a URL."""

    def local_dir(self, presentation: str) -> Path | None:
        """A local directory archive.py may write this presentation's archives into directly, or None."""


class LocalStore:
    """Archives under a local directory: ``<root>/<PRESENTATION>/<student>.tar.gz``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:  # keys come from ledger rows and usernames: never leave the root
            raise ValueError(f"archive key {key!r} leaves the store")
        return path

    def put(self, local: Path, key: str) -> None:
        dest = self._path(key)
        if Path(local).resolve() == dest:
            return  # archive.py wrote it in place (local_dir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".partial")
        shutil.copyfile(local, tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)

    def get(self, key: str, local: Path) -> None:
        shutil.copyfile(self._path(key), local)

    def open(self, key: str) -> BinaryIO:
        return open(self._path(key), "rb")

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)
        try:
            self._path(key).parent.rmdir()  # the presentation's dir, once its last archive is gone
        except OSError:
            pass

    def url(self, key: str) -> str:
        return str(self._path(key))

    def local_dir(self, presentation: str) -> Path | None:
        return self._path(archive_key(presentation, "x")).parent

    def __repr__(self) -> str:
        return f"LocalStore({self.root})"


class FsspecStore:
    """Archives in any fsspec filesystem under a root URL, e.g. ``s3://bucket/hubfleet-archives``.

    Needs ``fsspec`` (and ``s3fs`` for s3://). Credentials come the way s3fs finds them (environment, config file,
    instance role); ``storage_options`` passes anything else (``endpoint_url`` for a non-AWS service).
    """

    def __init__(self, root_url: str, **storage_options: object) -> None:
        import fsspec  # imported late: only fleets with a remote store need it

        self.root_url = root_url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.root_url, **storage_options)
        self.protocol = self.root_url.split("://", 1)[0]

    def _path(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"archive key {key!r} leaves the store")
        return f"{self.root.rstrip('/')}/{key}"

    def put(self, local: Path, key: str) -> None:
        self.fs.put_file(str(local), self._path(key))

    def get(self, key: str, local: Path) -> None:
        self.fs.get_file(self._path(key), str(local))

    def open(self, key: str) -> BinaryIO:
        return self.fs.open(self._path(key), "rb")

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def delete(self, key: str) -> None:
        try:
            self.fs.rm_file(self._path(key))
        except FileNotFoundError:
            pass

    def url(self, key: str) -> str:
        return f"{self.protocol}://{self._path(key)}"

    def local_dir(self, presentation: str) -> Path | None:
        return None

    def __repr__(self) -> str:
        return f"FsspecStore({self.root_url})"


def open_store(spec: str | os.PathLike[str] | None, state: Path) -> ArchiveStore:
    """The fleet's store: ``spec`` (a directory or a URL), else the one remembered in the state dir, else
    ``<state>/archives``. A choice is remembered; changing it later needs the file edited on purpose."""
    state = Path(state)
    remembered = state / STORE_FILE
    chosen = str(spec) if spec else os.environ.get(ENV) or None
    if chosen is None:
        chosen = remembered.read_text().strip() if remembered.is_file() else str(state / "archives")
    elif remembered.is_file() and remembered.read_text().strip() != chosen:
        raise ValueError(f"this fleet archives to {remembered.read_text().strip()} ({remembered}); refusing to "
                         f"switch to {chosen} implicitly: edit that file if the move is intended")
    state.mkdir(parents=True, exist_ok=True)
    if not remembered.is_file():
        remembered.write_text(chosen + "\n")
    return store_for(chosen)


def store_for(location: str) -> ArchiveStore:
    if "://" in location and not location.startswith("file://"):
        return FsspecStore(location)
    return LocalStore(Path(location.removeprefix("file://")))


def open_location(location: str) -> BinaryIO:
    """Open a recorded archive (or manifest) location for reading: a local path or an fsspec URL."""
    if "://" in location and not location.startswith("file://"):
        import fsspec

        return fsspec.open(location, "rb").open()
    return open(location.removeprefix("file://"), "rb")


def delete_location(location: str) -> None:
    """Delete a recorded location; already gone is fine (a purge killed half-way is simply run again)."""
    if "://" in location and not location.startswith("file://"):
        import fsspec

        fs, path = fsspec.core.url_to_fs(location)
        try:
            fs.rm_file(path)
        except FileNotFoundError:
            pass
        return
    path = Path(location.removeprefix("file://"))
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()  # the presentation's dir, once empty
    except OSError:
        pass


def location_exists(location: str) -> bool:
    if "://" in location and not location.startswith("file://"):
        import fsspec

        fs, path = fsspec.core.url_to_fs(location)
        return bool(fs.exists(path))
    return Path(location.removeprefix("file://")).is_file()


def manifest_location(archive_location: str) -> str:
    return archive_location.removesuffix(".tar.gz") + ".manifest.json"


def sha256_of(stream: BinaryIO) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    with stream:
        while chunk := stream.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size
