"""The archive and purge steps inside a Kubernetes Job: standard library only, shipped beside ``archive.py`` in a
ConfigMap and run with the image's ``python3`` (``backends/kubernetes/archive_job.py`` renders the Job).

It runs the very ``archive_many`` / ``verify_archive`` the local backend runs, then records the outcome where the
hubfleet controller reads it: the verified-archive marker ConfigMap (``backends/kubernetes/records.py`` format,
plus ``archives.json``: student -> sha256 of the verified archive), written through the API server with the pod's
own service account (a Role allows ConfigMaps in its namespace and nothing else).

Order, as on the local backend: archive + verify every student -> marker ``verified: "true"`` -> (personal store
only) stub + course folder removal -> marker ``torn-down: "true"``. A Job killed at any point is retried by the
Job controller (``backoffLimit``) and resumes: archive.py skips complete, verified archives. Nothing is deleted and
no marker says verified unless every student's archive verified. Per-presentation claims are not touched here:
they go with the namespace, which the controller deletes only after it sees the verified marker.

    python3 jobrunner.py archive --presentation TM351-2026J --layout personal-subfolder --src-root /store \
        --course-folder TM351-2026J --dest /archives --exclude tom,ian --teardown --portal-url URL
    python3 jobrunner.py purge --presentation TM351-2026J --dest /archives
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path

try:
    from hubfleet.lifecycle.archive import archive_many
except ImportError:  # in the Job: no hubfleet package, archive.py sits beside this file in the ConfigMap
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    archive_many = importlib.import_module("archive").archive_many

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MARKER_PREFIX = "hubfleet-archive-"
STUB_NAME = "WHERE-ARE-MY-FILES.txt"


def dns_label(text: str) -> str:
    """The same rule as hubfleet.catalog.naming.dns_label (keys are validated there, so lower-casing is enough)."""
    return text.strip().lower()


def student_folders(layout: str, src_root: Path, course_folder: str, exclude: set[str]) -> list[tuple[str, Path]]:
    if layout == "personal-subfolder":
        pairs = [(h.name, h / course_folder) for h in sorted((src_root / "home").iterdir()) if h.is_dir()]
    else:  # per-presentation: each student's claim is mounted at <src_root>/<username>
        pairs = [(d.name, d) for d in sorted(src_root.iterdir()) if d.is_dir()]
    return [(u, p) for u, p in pairs if u not in exclude and p.is_dir() and not p.is_symlink()]


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


def stub(presentation: str, sha: str, portal_url: str) -> str:
    return (f"Where are my files?\n\nYour course folder {presentation} was archived and verified when the "
            f"presentation closed (sha256 {sha}).\nDownload it: log in at {portal_url} (\"My archives\").\n"
            f"Staff can restore it: hubfleet archive restore CATALOG --presentation {presentation} "
            "--into NEW-PRESENTATION\n")


def run_archive(args: argparse.Namespace, api: Api | None) -> int:
    exclude = {u for u in (args.exclude or "").split(",") if u}
    folders = student_folders(args.layout, args.src_root, args.course_folder, exclude)
    dest = args.dest / args.presentation
    results = archive_many([(p, dest, u) for u, p in folders], workers=args.workers)
    for r in results:
        print(json.dumps({"student": r.name, "ok": r.ok, "sha256": r.sha256, "resumed": r.resumed, "error": r.error}))
    if not all(r.ok for r in results):
        print(f"archive: {sum(not r.ok for r in results)} archive(s) did not verify; nothing deleted", file=sys.stderr)
        return 1
    archives = {r.name: r.sha256 for r in results}
    doc = marker(args.namespace, args.presentation, layout=args.layout, volume=args.volume, archives=archives,
                 verified=True)
    emit(api, doc, args.marker_out)
    if args.teardown and args.layout == "personal-subfolder":
        for (user, path), r in zip(folders, results):
            (path.parent / STUB_NAME).write_text(stub(args.presentation, r.sha256, args.portal_url))
            shutil.rmtree(path)
        doc["data"]["torn-down"] = "true"
        emit(api, doc, args.marker_out)
    return 0


def run_purge(args: argparse.Namespace, api: Api | None) -> int:
    shutil.rmtree(args.dest / args.presentation, ignore_errors=True)
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
