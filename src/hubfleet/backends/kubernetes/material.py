"""Course material as data hubfleet owns: one immutable ConfigMap per seed source, named after its content.

Why ConfigMaps and not a volume apply fills: a claim has to be provisioned (ReadWriteMany), filled by some
copier, kept in sync and kept on uninstall, and nothing tells a pod which version it got. A ConfigMap named
``hubfleet-material-<source slug>-<sha8 of the content>`` is versioned by construction: changed material is a
new name, the profile's volume points at it, the release changes, and the next spawn seeds the new version with
the step's policy (``if-unchanged`` keeps student edits). It is ``immutable`` (kubelet stops watching it, and
nobody can edit what a name promises) and nothing about it is stateful, so nothing has to be kept or archived.

Limits, checked here so they fail at render time instead of at the API server or in a pod:

- ConfigMap data is at most 1 MiB; hubfleet refuses a source over ``LIMIT_BYTES`` (900 KiB, file contents plus
  keys), leaving room for metadata. Large material (datasets, media) belongs in the course image.
- keys cannot hold '/', so each file gets a flattened key and the volume's ``items`` map key -> relative path,
  which rebuilds the tree in the pod; executable files get mode 0755 there, as the local backend keeps them.
- kubelet projects a ConfigMap volume as symlinks into a hidden ``..data`` directory, and seeding.py skips
  symlinks in a source (on purpose). So the seed step reads ``<mount>/..data``, where the files are real.
  # ref: https://github.com/kubernetes/kubernetes/blob/master/pkg/volume/util/atomic_writer.go

``read_material`` is the one function here with I/O (the caller reads, the renderers stay pure). Write these
ConfigMaps with create (``kubectl create``, ``kubectl apply --server-side``): a client-side ``kubectl apply``
copies the object into an annotation, which is limited to 256 KiB.
"""

from __future__ import annotations

import base64
import hashlib
import os
import posixpath
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

from hubfleet.catalog.loader import catalog_path
from hubfleet.plan.spec import FleetSpec, HubSpec, Phase, PresentationSpec

MATERIAL_DIR = "/srv/hubfleet/material"
LIMIT_BYTES = 900 * 1024
LABEL = "hubfleet.io/material"  # on every material ConfigMap, so apply can find (and prune) old versions
SOURCE_ANNOTATION = "hubfleet.io/seed-source"
_KEY_BAD = re.compile(r"[^-._a-zA-Z0-9]")


class File(NamedTuple):
    data: bytes
    executable: bool = False


Material = Mapping[str, Mapping[str, File]]  # seed source (catalog-root relative) -> relative path -> file


class MaterialError(ValueError):
    """Seed material that cannot be shipped: missing, too large, or not read by the caller."""


def seeds(p: PresentationSpec) -> bool:
    """Whether the presentation's pods run seed steps (not in the read-only phase: nothing may change)."""
    return bool(p.seed) and p.phase != Phase.read_only


def sources(hubs: Iterable[HubSpec]) -> list[str]:
    """Distinct seed sources the hubs' seeding presentations use, in first-use order."""
    return list(dict.fromkeys(s.source for hub in hubs for p in hub.presentations if seeds(p) for s in p.seed))


# ---------------------------------------------------------------------------------------------------- I/O


def read_material(root: Path, spec: FleetSpec | HubSpec) -> dict[str, dict[str, File]]:
    """Every seed source a fleet (or one hub) ships, read from the catalog at ``root``.

    Regular files only, as seeding.py copies them: symlinks and special files are skipped, so nothing
    outside the source directory is ever shipped. Raises MaterialError for a missing or oversized source,
    before reading more than the limit."""
    hubs = spec.hubs if isinstance(spec, FleetSpec) else [spec]
    return {source: _read_source(Path(root), source) for source in sources(hubs)}


def _read_source(root: Path, source: str) -> dict[str, File]:
    try:
        # The loader's check: nothing outside the catalog folder (absolute, '..', a symlink out) is ever shipped.
        base = catalog_path(Path(root), source)
    except ValueError as exc:
        raise MaterialError(f"seed source {source!r}: {exc}") from None
    if not base.is_dir():
        raise MaterialError(f"seed source {source!r}: {base} is not a directory")
    top = base.resolve()
    found: dict[str, Path] = {}
    total = 0
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not (Path(dirpath) / d).is_symlink())
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file() or not path.resolve().is_relative_to(top):
                continue
            rel = path.relative_to(base).as_posix()
            total += path.stat().st_size + len(rel)
            if total > LIMIT_BYTES:  # stop early: the point is not to load a dataset into memory
                raise too_large(source, total)
            found[rel] = path
    return {rel: File(path.read_bytes(), bool(path.stat().st_mode & 0o111)) for rel, path in found.items()}


def too_large(source: str, size: int) -> MaterialError:
    return MaterialError(
        f"seed source {source!r} holds more than {size // 1024} KiB; the kubernetes backend ships course material "
        f"in a ConfigMap, limited to {LIMIT_BYTES // 1024} KiB per source. Bake large material (datasets, media) "
        "into the course image and seed only the notebooks from the catalog."
    )


# ------------------------------------------------------------------------------------------ pure builders


def slug(source: str) -> str:
    """A DNS-label fragment naming a source, e.g. ``course-material/TM351`` -> ``course-material-tm351``."""
    return re.sub(r"[^a-z0-9]+", "-", source.lower()).strip("-")[:40].strip("-") or "root"


def mount_dir(source: str) -> str:
    # Flat (one level under MATERIAL_DIR), so two sources never nest one mount inside another read-only one.
    return posixpath.join(MATERIAL_DIR, slug(source))


def seed_dir(source: str) -> str:
    """Where a seed step reads the files: the real directory behind kubelet's symlinks (module docstring)."""
    return posixpath.join(mount_dir(source), "..data")


def _keys(paths: Iterable[str]) -> dict[str, str]:
    """relative path -> ConfigMap key: readable where possible, always unique and valid."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for rel in sorted(paths):
        key = _KEY_BAD.sub("_", rel.replace("/", "__"))
        if key.startswith(".."):  # reserved by kubelet's projection (..data), refused by the API
            key = "_" + key
        if key in used or len(key) > 253:
            key = f"{hashlib.sha256(rel.encode()).hexdigest()[:8]}-{key[-200:]}"
        used.add(key)
        out[rel] = key
    return out


def _is_text(data: bytes) -> str | None:
    """The text of a file a reviewer can read in a diff, or None (it goes to binaryData)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if all(c in "\n\t" or c.isprintable() for c in text) else None


def _check(source: str, files: Mapping[str, File]) -> None:
    for rel in files:
        if rel.startswith("..") or ".." in rel.split("/") or rel.startswith("/"):
            raise MaterialError(f"seed source {source!r}: cannot ship {rel!r} (a top-level name starting with "
                                "'..' is reserved by Kubernetes); rename it")
    size = sum(len(f.data) + len(rel) for rel, f in files.items())
    if size > LIMIT_BYTES:
        raise too_large(source, size)


def configmap_name(source: str, files: Mapping[str, File]) -> str:
    h = hashlib.sha256(source.encode())
    for rel in sorted(files):
        f = files[rel]
        h.update(f"\0{rel}\0{int(f.executable)}\0{hashlib.sha256(f.data).hexdigest()}".encode())
    return f"hubfleet-material-{slug(source)}-{h.hexdigest()[:8]}"


def volume(name: str, source: str, files: Mapping[str, File]) -> dict:
    """The pod volume projecting a source's ConfigMap back into its directory tree."""
    _check(source, files)
    keys = _keys(files)
    items = []
    for rel in sorted(files):
        item = {"key": keys[rel], "path": rel}
        if files[rel].executable:
            item["mode"] = 0o755  # the API takes decimal (493); scripts stay runnable after seeding
        items.append(item)
    cm: dict = {"name": configmap_name(source, files)}
    if items:  # no items would mean "every key, flat": the same as none for an empty source, but say less
        cm["items"] = items
    return {"name": name, "configMap": cm}


def configmap(source: str, files: Mapping[str, File], namespace: str, labels: Mapping[str, str]) -> dict:
    _check(source, files)
    data, binary = {}, {}
    for rel, key in _keys(files).items():
        text = _is_text(files[rel].data)
        if text is None:
            binary[key] = base64.b64encode(files[rel].data).decode()
        else:
            data[key] = text
    obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": configmap_name(source, files), "namespace": namespace,
                     "labels": {**labels, LABEL: "true"}, "annotations": {SOURCE_ANNOTATION: source}},
        "immutable": True,
        "data": data,
    }
    if binary:
        obj["binaryData"] = binary
    return obj


def files_of(material: Material, source: str) -> Mapping[str, File]:
    try:
        return material[source]
    except KeyError:
        raise MaterialError(f"seed source {source!r} was not read: render with "
                            "material=read_material(catalog_root, spec)") from None
