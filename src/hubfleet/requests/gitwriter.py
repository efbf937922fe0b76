"""Approval writes the catalog as git: the course file (and its roster) become one commit, never a loose edit.

Through the git CLI, and without touching anyone's working tree unless the commit is for the branch checked out
there:

* the target branch is not checked out (a bare repository, or a request branch ``hub-request/<id>``): the commit is
  built with plumbing (a private index from the branch's tree, ``update-index``, ``write-tree``, ``commit-tree``)
  and the branch moved with ``update-ref <branch> <new> <old>``, which fails if someone else moved it meanwhile;
* the target branch is checked out in the repository (a fleet that runs from the catalog's own checkout with
  ``commit_to: main``): the files are written and committed there with ``git commit --only -- <paths>``, so the
  fleet's next reconcile, which reads that folder, sees them. A path with uncommitted local edits is refused
  rather than committed over.

The request id is in the message (``Hub request #12: TM351 2027B``) so ``git log --grep`` finds it.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CatalogRepo", "GitError", "Written"]

_LOCK = threading.Lock()  # one writer per process; git's own ref locks guard between processes


class GitError(Exception):
    pass


@dataclass(frozen=True)
class Written:
    commit: str
    branch: str


class CatalogRepo:
    def __init__(self, path: Path, author: tuple[str, str] = ("hubfleet", "hubfleet@localhost")) -> None:
        self.path = Path(path)
        self.author = author

    def _git(self, *args: str, env: dict[str, str] | None = None, input_text: str | None = None) -> str:
        name, email = self.author
        full_env = {**os.environ, "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": name,
                    "GIT_COMMITTER_EMAIL": email, "GIT_TERMINAL_PROMPT": "0", **(env or {})}  # fmt: skip
        proc = subprocess.run(["git", "-C", str(self.path), *args], capture_output=True, text=True, env=full_env,
                              input=input_text, check=False)  # fmt: skip
        if proc.returncode != 0:
            raise GitError(f"git {' '.join(args[:2])}: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout.strip()

    def checked_out(self) -> str | None:
        """The branch checked out in a working tree here, or None (bare repository, detached HEAD)."""
        if self._git("rev-parse", "--is-bare-repository") == "true":
            return None
        try:
            return self._git("symbolic-ref", "--quiet", "--short", "HEAD")
        except GitError:
            return None

    def toplevel(self) -> str:
        """The working tree's top folder, or the (bare) repository itself."""
        if self._git("rev-parse", "--is-bare-repository") == "true":
            return str(self.path)
        return self._git("rev-parse", "--show-toplevel")

    def head(self, branch: str) -> str:
        return self._git("rev-parse", "--verify", f"refs/heads/{branch}^{{commit}}")

    def read(self, branch: str, rel: str) -> str | None:
        try:
            return self._git("show", f"refs/heads/{branch}:{rel}")
        except GitError:
            return None

    def commit_files(self, files: dict[str, str], message: str, *, branch: str, base: str) -> Written:
        """Commit ``files`` (catalog-relative path -> text) on ``branch``, created from ``base`` if new."""
        with _LOCK:
            if self.checked_out() == branch:
                return self._commit_in_worktree(files, message, branch)
            return self._commit_plumbing(files, message, branch, base)

    def _commit_plumbing(self, files: dict[str, str], message: str, branch: str, base: str) -> Written:
        try:
            parent = self.head(branch)
            old = parent
        except GitError:
            parent, old = self.head(base), "0" * 40  # a new branch: update-ref refuses if it appeared meanwhile
        with tempfile.TemporaryDirectory(prefix="hubfleet-index-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self._git("read-tree", parent, env=env)
            for rel, text in files.items():
                blob = self._git("hash-object", "-w", "--stdin", input_text=text)
                self._git("update-index", "--add", "--cacheinfo", f"100644,{blob},{rel}", env=env)
            tree = self._git("write-tree", env=env)
        commit = self._git("commit-tree", tree, "-p", parent, "-m", message)
        self._git("update-ref", "-m", message.splitlines()[0], f"refs/heads/{branch}", commit, old)
        return Written(commit=commit, branch=branch)

    def _commit_in_worktree(self, files: dict[str, str], message: str, branch: str) -> Written:
        paths = list(files)
        dirty = self._git("status", "--porcelain", "--", *paths)
        if dirty:
            raise GitError(f"the catalog checkout has uncommitted edits to {', '.join(paths)}; commit or discard "
                           "them first, so an approval never commits someone's half-finished change")
        tracked = set(self._git("ls-files", "--", *paths).splitlines())
        try:
            for rel, text in files.items():
                target = self.path / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
            self._git("add", "--", *paths)
            self._git("commit", "--quiet", "--only", "-m", message, "--", *paths)
        except (GitError, OSError):
            # No half-done edit left behind: tracked files back to HEAD, new ones removed.
            if tracked:
                self._git("reset", "--quiet", "--", *tracked)
                self._git("checkout", "--", *tracked)
            for rel in set(paths) - tracked:
                self._git("rm", "--quiet", "--cached", "--ignore-unmatch", "--", rel)
                (self.path / rel).unlink(missing_ok=True)
            raise
        return Written(commit=self.head(branch), branch=branch)
