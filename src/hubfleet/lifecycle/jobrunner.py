"""The archive and purge steps inside a Kubernetes Job: standard library only, shipped with the lifecycle modules
in a ConfigMap (laid out as the ``hubfleet.lifecycle`` package) and run with the image's ``python3 -m``
(``backends/kubernetes/archive_job.py`` renders the Job).

It runs the very ``engine.Archiver`` the local backend runs: the same archive + verify, the same journal in a
ledger (kept beside the archives on the archive volume, so a retried Job resumes where the killed one stopped),
the same per-student re-verification right before each folder is removed, the same "never archived again once
its removal started" and "never overwrite an archive" rules. Then it records the outcome where the hubfleet
controller reads it: the verified-archive marker ConfigMap (``backends/kubernetes/records.py`` format, plus
``archives.json``: student -> sha256 of the verified archive), written through the API server with the pod's own
service account (a Role allows ConfigMaps in its namespace and nothing else).

Order: archive + verify every student -> marker ``verified: "true"`` -> (personal store only) per student stub,
re-verify, intent, removal -> marker ``torn-down: "true"``. A Job killed at any point is retried by the Job
controller (``backoffLimit``) and resumes from the journal. Per-presentation claims are not touched here: they go
with the namespace, which the controller deletes only after it sees the verified marker.

    python3 -m hubfleet.lifecycle.jobrunner archive --presentation TM351-2026J --layout personal-subfolder \
        --src-root /store --course-folder TM351-2026J --dest /archives --exclude tom,ian --teardown --portal-url URL
    python3 -m hubfleet.lifecycle.jobrunner purge --presentation TM351-2026J --dest /archives
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import ssl
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from hubfleet.catalog.naming import storage_name, username_of
from hubfleet.lifecycle.engine import Archiver, StudentFolder, stub_text
from hubfleet.lifecycle.ledger import Ledger
from hubfleet.lifecycle.restoring import remove_tree
from hubfleet.lifecycle.store import LocalStore

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MARKER_PREFIX = "hubfleet-archive-"
STUB_NAME = "WHERE-ARE-MY-FILES.txt"


def dns_label(text: str) -> str:
    """The same rule as hubfleet.catalog.naming.dns_label (keys are validated there, so lower-casing is enough)."""
    return text.strip().lower()




def student_folders(layout: str, src_root: Path, course_folder: str, exclude: set[str]) -> list[StudentFolder]:
    """Each student's course folder, named by username (what the ledger, the marker and ``exclude`` use), the
    archive named by storage name as on the local backend. Personal store: ``home/<storage name>``, decoded (a
    name that does not decode keeps its directory name); per-presentation: each claim is mounted at
    ``<src_root>/<username>`` (archive_job.py)."""
    if layout == "personal-subfolder":
        found = [(username_of(h.name) or h.name, h / course_folder, h.name)
                 for h in sorted((src_root / "home").iterdir()) if h.is_dir()]
    else:
        found = [(d.name, d, storage_name(d.name)) for d in sorted(src_root.iterdir()) if d.is_dir()]
    return [StudentFolder(u, p, stem) for u, p, stem in found
            if u not in exclude and p.is_dir() and not p.is_symlink()]


def marker(namespace: str, presentation: str, *, layout: str, volume: str, archives: dict[str, str],
           verified: bool, purged: bool = False, torn_down: bool = False) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": MARKER_PREFIX + dns_label(presentation),
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "hubfleet", "hubfleet.io/archive-marker": "true",
                       "hubfleet.io/presentation": dns_label(presentation)},
        },
        "data": {"presentation": presentation, "verified": str(verified).lower(), "purged": str(purged).lower(),
                 "layout": layout, "volume": volume, "torn-down": str(torn_down).lower(),
                 "archives.json": json.dumps(archives, sort_keys=True)},
    }


class Api:
    """Just enough of the API server for one ConfigMap: in-cluster config, get / create / replace."""

    def __init__(self, host: str | None = None, token: str | None = None, ca: str | None = None) -> None:
        self.host = host or f"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}"
        self.token = token or (SA_DIR / "token").read_text().strip()
        self.ctx = ssl.create_default_context(cafile=ca or str(SA_DIR / "ca.crt"))

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        req = urllib.request.Request(self.host + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=self.ctx, timeout=30) as resp:
            return json.loads(resp.read())

    def put_configmap(self, obj: dict) -> None:
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        base = f"/api/v1/namespaces/{ns}/configmaps"
        try:
            live = self._call("GET", f"{base}/{name}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
            self._call("POST", base, obj)
            return
        obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]}}
        self._call("PUT", f"{base}/{name}", obj)


def journal_path(dest: Path, presentation: str) -> Path:
    """The Job's ledger: on the archive volume, beside the presentation's archives, so it outlives the pod."""
    return dest / presentation / ".journal.sqlite"


class JobTeardown:
    """Personal store: the stub goes in the student's home, the course folder below it is removed."""

    def __init__(self, ledger: Ledger, src_root: Path, portal_url: str) -> None:
        self.ledger, self.src_root, self.portal_url = ledger, src_root, portal_url

    def stub(self, folder: StudentFolder) -> None:
        home = self.src_root / "home" / folder.stem
        if home.is_dir() and not home.is_symlink():
            text = stub_text(folder.student, self.ledger.for_student(folder.student), self.portal_url)
            tmp = home / f".{STUB_NAME}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, home / STUB_NAME)  # a planted link at the name is replaced, never written through

    def remove(self, folder: StudentFolder, halfway: Callable[[], None]) -> None:
        if folder.path is not None:
            remove_tree(folder.path, halfway)


def run_archive(args: argparse.Namespace, api: Api | None) -> int:
    exclude = {u for u in (args.exclude or "").split(",") if u}
    folders = student_folders(args.layout, args.src_root, args.course_folder, exclude)
    (args.dest / args.presentation).mkdir(parents=True, exist_ok=True)
    with Ledger(journal_path(args.dest, args.presentation), wal=False) as ledger:
        archiver = Archiver(LocalStore(args.dest), ledger, args.dest / ".staging", workers=args.workers,
                            say=lambda line: print(line, file=sys.stderr))
        teardown = JobTeardown(ledger, args.src_root, args.portal_url) if (
            args.teardown and args.layout == "personal-subfolder") else None
        # Archive and verify everyone first, with no teardown: the verified marker goes out before any removal.
        out = archiver.archive(args.presentation, folders)
        rows = {r.student: r for r in ledger.for_presentation(args.presentation, current_only=True)}
        for f in folders:
            r = rows.get(f.student)
            print(json.dumps({"student": f.student, "ok": bool(r and r.ok), "sha256": r.sha256 if r else "",
                              "resumed": f.student in out.resumed}))
        if not out.ok:
            print(f"archive: {out.summary()}; nothing deleted", file=sys.stderr)
            return 1
        archives = {s: r.sha256 for s, r in rows.items() if r.ok}
        doc = marker(args.namespace, args.presentation, layout=args.layout, volume=args.volume, archives=archives,
                     verified=True)
        emit(api, doc, args.marker_out)
        if teardown is not None:
            out = archiver.archive(args.presentation, folders, teardown=teardown)
            print(out.summary(), file=sys.stderr)
            if not out.ok:
                return 1
            doc["data"]["torn-down"] = "true"
            emit(api, doc, args.marker_out)
    return 0


def run_purge(args: argparse.Namespace, api: Api | None) -> int:
    shutil.rmtree(args.dest / args.presentation, ignore_errors=True)  # the archives and their journal
    emit(api, marker(args.namespace, args.presentation, layout=args.layout, volume=args.volume, archives={},
                     verified=True, purged=True, torn_down=True), args.marker_out)
    return 0


def emit(api: Api | None, doc: dict, out: Path | None) -> None:
    if out is not None:  # tests and dry runs: the marker as a file instead of an API call
        out.write_text(json.dumps(doc, indent=1, sort_keys=True))
    if api is not None:
        api.put_configmap(doc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="hubfleet archive/purge Job step")
    parser.add_argument("command", choices=["archive", "purge"])
    parser.add_argument("--presentation", required=True)
    parser.add_argument("--layout", default="personal-subfolder")
    parser.add_argument("--volume", default="")
    parser.add_argument("--src-root", type=Path, default=Path("/store"))
    parser.add_argument("--course-folder", default="")
    parser.add_argument("--dest", type=Path, default=Path("/archives"))
    parser.add_argument("--exclude", default="", help="comma-separated team members, never archived or removed")
    parser.add_argument("--namespace", default=None)
    parser.add_argument("--teardown", action="store_true")
    parser.add_argument("--portal-url", default="")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--marker-out", type=Path, default=None, help="write the marker here instead of the API")
    args = parser.parse_args(argv)
    if args.namespace is None:
        args.namespace = (SA_DIR / "namespace").read_text().strip() if (SA_DIR / "namespace").exists() else "default"
    api = None if args.marker_out is not None else Api()
    return run_archive(args, api) if args.command == "archive" else run_purge(args, api)


if __name__ == "__main__":
    sys.exit(main())
