"""Per-profile Python environments on the local backend (issue 14, item 4).

The local backend cannot pull a profile's container image, so a profile may declare what it needs instead
(``images[].local_environment``: pip requirements, a requirements file in the catalog, Debian packages). hubfleet
builds one environment per distinct spec during the apply and the profile's servers and kernels run from it.

Layout: ``<state>/envs/<key>/`` where ``key`` is a hash of everything that goes into the build (the requirement
lines, the requirements file's *contents*, the Debian packages, the base interpreter and hubfleet's own
site-packages). An environment is never modified after it is built: a changed spec is a new key and a new
directory, so a server started from the old one keeps running on exactly what it started with (a rebuild in
place would swap modules under running kernels). ``<key>/hubfleet-env.json`` is written last; a directory
without it is an interrupted or failed build and is rebuilt from scratch.

How an environment is made: a venv without system site-packages, whose ``site-packages`` holds a ``.pth`` file
naming hubfleet's own site-packages, with the profile's packages pip-installed on top. Why this and not a venv
with its own copy of JupyterLab: the server must run the *same* jupyterhub-singleuser and JupyterLab as the hub
(version match, the lab assets under hubfleet's ``share/jupyter``, no minutes-long install of JupyterLab per
profile), and a ``.pth`` entry is appended *after* the venv's own site-packages, so a package the profile pins
shadows hubfleet's copy for that profile only. pip, running in the new venv, sees hubfleet's packages as installed
and does not duplicate them; one it must replace it installs into the venv and leaves hubfleet's alone ("Not
uninstalling ... outside environment"). ref: https://docs.python.org/3/library/site.html (.pth files),
https://docs.python.org/3/library/venv.html

Debian packages are machine-wide (apt has no per-profile prefix): they are installed as root with apt-get before
the Python part, and a fleet not running as root gets a clear per-hub failure instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from hubfleet.catalog.grammar import check_requirement
from hubfleet.plan.spec import EnvironmentSpec, ProfileSpec

__all__ = ["BuildFailed", "EnvironmentBook", "Resolved", "resolve"]

MARKER = "hubfleet-env.json"
FORMAT = 1  # bump when the build recipe changes, so old environments are not reused for the new recipe
PIP_TIMEOUT = 1800.0


class BuildFailed(RuntimeError):
    """A profile's environment could not be built; the message says which profile, why, and where the log is."""


@dataclass(frozen=True)
class Resolved:
    """An environment spec with its requirements file read: everything the build depends on."""

    requirements: tuple[str, ...]
    debian: tuple[str, ...]

    @property
    def key(self) -> str:
        doc = {
            "format": FORMAT,
            "requirements": list(self.requirements),
            "debian": sorted(set(self.debian)),
            "python": sys.version,
            "base": _base_site_packages(),
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def resolve(env: EnvironmentSpec, catalog_file: Callable[[str], Path]) -> Resolved:
    """Read the spec's requirements file (through ``catalog_file``, the loader's boundary check) and return every
    requirement line in order. A line that is a pip option is refused: ``-r /etc/...`` or ``--index-url`` in a
    course team's file would reach outside the catalog or to another package index."""
    lines = list(env.requirements)
    if env.requirements_file:
        try:
            path = catalog_file(env.requirements_file)
            text = path.read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:
            raise BuildFailed(f"requirements file {env.requirements_file}: {exc}") from None
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
            if not line:
                continue
            try:
                lines.append(check_requirement(line))
            except ValueError as exc:
                raise BuildFailed(f"{env.requirements_file}:{n}:1: {exc}") from None
    return Resolved(requirements=tuple(lines), debian=tuple(env.debian))


def _base_site_packages() -> list[str]:
    """hubfleet's own site-packages (its venv's), which every environment stacks on."""
    return [p for p in site.getsitepackages() if Path(p).is_dir()]


class EnvironmentBook:
    """The environments under ``<state>/envs``: find or build the one for a spec."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def python(self, key: str) -> Path:
        return self.root / key / "bin" / "python"

    def is_built(self, key: str) -> bool:
        return (self.root / key / MARKER).is_file()

    def ensure(self, profile: ProfileSpec, resolved: Resolved, say: Callable[[str], None]) -> Path:
        """The python of ``resolved``'s environment, building it first if needed (under a lock per key, so two
        hubs sharing a spec build it once)."""
        key = resolved.key
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)  # students' sandboxes bind one env each; nobody lists the others
        with open(os.open(self.root / f".{key}.lock", os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.is_built(key):
                return self.python(key)
            say(f"building environment {key} for profile {profile.name} "
                f"({len(resolved.requirements)} Python package(s), {len(resolved.debian)} Debian package(s))")
            self._build(key, resolved, profile)
            say(f"environment {key} ready")
        return self.python(key)

    def _build(self, key: str, resolved: Resolved, profile: ProfileSpec) -> None:
        target = self.root / key
        log = self.root / f"{key}.log"
        shutil.rmtree(target, ignore_errors=True)  # a leftover without the marker is a failed build
        # The log is the operator's (it may show index URLs from pip's config): private, like the rest of the state.
        with open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as out:
            def run(argv: list[str], env: dict[str, str] | None = None) -> None:
                out.write(f"$ {' '.join(argv)}\n")
                out.flush()
                try:
                    done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          env=env, umask=0o022, timeout=PIP_TIMEOUT, check=False)  # fmt: skip
                except (OSError, subprocess.TimeoutExpired) as exc:
                    raise BuildFailed(self._failure(profile, f"{argv[0]}: {exc}", log)) from None
                if done.returncode != 0:
                    raise BuildFailed(self._failure(profile, f"{' '.join(argv[:4])}... exited {done.returncode}", log))

            if resolved.debian:
                if os.geteuid() != 0:
                    raise BuildFailed(f"profile {profile.name}: Debian packages ({', '.join(resolved.debian)}) need "
                                      "the fleet to run as root; run hubfleet as root or drop local_environment.debian")
                apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
                run(["apt-get", "install", "-y", "--no-install-recommends", *resolved.debian], apt_env)
            # venv from the base interpreter hubfleet runs on; no pip of its own (hubfleet's is on the .pth path).
            run([sys.executable, "-m", "venv", "--without-pip", str(target)])
            purelib = Path(subprocess.check_output(
                [str(target / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                text=True).strip())  # fmt: skip
            pth = purelib / "_hubfleet_base.pth"
            # addsitedir, not a bare path line: hubfleet's own .pth files (an editable install) must run too.
            pth.write_text("".join(f"import site; site.addsitedir({p!r})\n" for p in _base_site_packages()),
                           encoding="utf-8")
            pth.chmod(0o644)
            if resolved.requirements:
                env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
                run([str(target / "bin" / "python"), "-m", "pip", "install", "--no-input", "--no-warn-script-location",
                     *resolved.requirements], env)  # fmt: skip
            marker = target / MARKER
            marker.write_text(json.dumps({"requirements": list(resolved.requirements), "debian": list(resolved.debian),
                                          "profile": profile.name}, indent=2) + "\n", encoding="utf-8")  # fmt: skip
            marker.chmod(0o644)
            target.chmod(0o755)

    def prune(self, referenced: set[str]) -> list[str]:
        """Remove every environment no hub records (``referenced``: keys named by some hub.json, including stopped
        hubs') and no process runs from; returns the keys removed. An environment is only ever replaced by a new
        key, so without this every edit of a requirements file would leave a whole venv behind for good.

        Never one being built (its lock is held) or one a live process uses (a server or kernel started from it
        before its hub moved to another key keeps running on exactly what it started with, as promised above):
        that one goes at a later apply, once the process has ended."""
        if not self.root.is_dir():
            return []
        in_use = _paths_in_use(self.root)
        removed = []
        for entry in sorted(self.root.iterdir()):
            key = entry.name
            if not entry.is_dir() or key.startswith(".") or key in referenced or key in in_use:
                continue
            with open(os.open(self.root / f".{key}.lock", os.O_WRONLY | os.O_CREAT, 0o600), "w") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # being built right now, by another apply
                shutil.rmtree(entry, ignore_errors=True)
                (self.root / f"{key}.log").unlink(missing_ok=True)
            (self.root / f".{key}.lock").unlink(missing_ok=True)
            removed.append(key)
        return removed

    @staticmethod
    def _failure(profile: ProfileSpec, what: str, log: Path) -> str:
        try:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-8:])
        except OSError:
            tail = ""
        return f"profile {profile.name}: building its environment failed ({what}); full log: {log}\n{tail}"


def key_of(python: str | Path) -> str:
    """The environment key of a recorded interpreter path (``<root>/<key>/bin/python``)."""
    return Path(python).parent.parent.name


def _paths_in_use(root: Path) -> set[str]:
    """Keys of the environments under ``root`` that a live process runs from (its executable or command line,
    which is how a sandboxed server names the interpreter it was given)."""
    prefix = str(root) + os.sep
    keys = set()
    for proc in psutil.process_iter(["exe", "cmdline"]):
        for text in [proc.info.get("exe") or "", *(proc.info.get("cmdline") or [])]:
            if text.startswith(prefix):
                keys.add(text[len(prefix):].split(os.sep, 1)[0])
    return keys
