"""The portal's state folder for a fleet whose hubs it does not run (Kubernetes): written from the catalog.

On the local backend the fleet side writes what the portal reads (``fleet.json``, ``hubs/<hub>/hub.json`` and
``members.json``, the password files, each hub's ``oauth_client_secret``; see ``directory.py``). In the cluster
the portal runs alone (``backends/kubernetes/portal.py``): no API rights but the waker's, the catalog from the
same git-sync or ConfigMap as the controller, its secrets from two mounted Secrets. ``CatalogState.refresh`` plans the catalog for
today and writes those same files, so ``UserDirectory`` and the provider work unchanged, with the same rules:

- each hub is a client with ``client_id`` = its name and redirect URI ``https://{hub}.{domain}/hub/oauth_callback``
  (the values' ``oauth_callback_url``), its secret copied from the mounted clients Secret (the hub's own, mirrored
  by apply). Files in a mounted Secret are symlinks the kubelet swaps, and world-readable; ``read_secret`` trusts
  neither, so each is copied to a 0600 file; a hub not yet in the Secret is no client yet;
- who exists and their roles: the catalog's rosters, teams and admins (``members.hub_members``). The hubs' own
  databases (groups added by ``enrol sync`` from LDAP, idp-group logins) are out of the portal's reach here;
  a student in a hub group only through LDAP needs ``auth.users_file`` or a roster to sign in at the portal;
- passwords: generated once per user into ``passwords.txt`` (the operator's copy to hand out, 0600) and
  ``passwords.json`` (scrypt hashes) on the portal's claim, as ``hubfleet up`` does locally;
- the portal's own secrets (session, access tokens, signing key): copied from the mounted Secret into
  ``<state>/portal/`` at start, where ``create_app`` reads them (the Secret wins over whatever the claim held).

A catalog that no longer loads keeps the last good state (and says why on stderr): a bad commit must not sign
everyone out.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubfleet.backends.local.fleetstate import write_json_atomic
from hubfleet.backends.local.members import PasswordBook, hub_members
from hubfleet.catalog import CatalogError, LoadedCatalog, load_catalog
from hubfleet.plan import FleetSpec
from hubfleet.plan import plan as make_plan

__all__ = ["CatalogState", "copy_secret_files"]

PORTAL_SECRET_FILES = ("session_secret", "token_secret", "oidc_signing_key.json")


def copy_secret_files(src: Path, dst: Path, names: tuple[str, ...] | None = None) -> list[str]:
    """Copy files of a mounted Secret (``src``) into ``dst`` as regular 0600 files; return the names copied.
    Only rewrites a file whose content changed."""
    dst.mkdir(parents=True, exist_ok=True, mode=0o700)
    copied = []
    for path in sorted(src.iterdir()) if src.is_dir() else []:
        name = path.name
        if name.startswith(".") or (names is not None and name not in names) or not path.is_file():
            continue  # the kubelet's ..data and timestamped folders
        value = path.read_bytes()
        target = dst / name
        try:
            if target.read_bytes() == value and not target.stat().st_mode & 0o077:
                copied.append(name)
                continue
        except FileNotFoundError:
            pass
        tmp = dst / f".{name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(value)
        os.replace(tmp, target)
        copied.append(name)
    return copied


@dataclass
class CatalogState:
    """Writes ``state`` for the catalog at ``catalog`` as the portal at ``public_url`` sees it."""

    catalog: Path
    state: Path
    public_url: str  # https://portal.{domain}
    clients: Path | None = None  # the mounted clients Secret: one file per hub, named after it
    today: Callable[[], dt.date] = dt.date.today

    def refresh(self) -> FleetSpec | None:
        """Plan the catalog for today and write the portal's files; None (state kept) if the catalog is bad."""
        try:
            loaded = load_catalog(self.catalog)
            spec = make_plan(loaded.catalog, self.today())
        except CatalogError as exc:
            print(f"hubfleet portal: catalog {self.catalog} not loaded, keeping the previous state:\n{exc}",
                  file=sys.stderr)
            return None
        self.write(loaded, spec)
        return spec

    def write(self, loaded: LoadedCatalog, spec: FleetSpec) -> None:
        hubs_dir = self.state / "hubs"
        hubs_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        everyone: set[str] = set()
        for hub in spec.hubs:
            hub_dir = hubs_dir / hub.name
            hub_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            members = hub_members(hub, loaded)
            everyone |= members.keys() | set(hub.admins)
            write_json_atomic(hub_dir / "members.json", members)
            write_json_atomic(hub_dir / "hub.json", {
                "spec": hub.model_dump(mode="json"), "hub_dir": str(hub_dir), "members": str(hub_dir / "members.json"),
                "storage_root": str(self.state / "no-storage"), "catalog_root": str(loaded.root),
                "front_door": self.public_url, "hub_url": self.hub_url(spec, hub.name), "demo_mode": False,
            })
            self._client_secret(hub.name, hub_dir)
        # Hubs that left the fleet are clients no more.
        wanted = {h.name for h in spec.hubs}
        for old in hubs_dir.iterdir():
            if old.is_dir() and old.name not in wanted:
                shutil.rmtree(old)
        PasswordBook(self.state / "passwords.txt", self.state / "passwords.json").ensure(everyone)
        write_json_atomic(self.state / "fleet.json", self.fleet_document(loaded, spec))

    def _client_secret(self, hub: str, hub_dir: Path) -> None:
        if self.clients is None or not (self.clients / hub).is_file():
            (hub_dir / "oauth_client_secret").unlink(missing_ok=True)
            return
        copy_secret_files(self.clients, hub_dir, (hub,))
        os.replace(hub_dir / hub, hub_dir / "oauth_client_secret")

    @staticmethod
    def hub_url(spec: FleetSpec, hub: str) -> str:
        return f"https://{hub}.{spec.domain}/"

    def fleet_document(self, loaded: LoadedCatalog, spec: FleetSpec) -> dict[str, Any]:
        branding = spec.hubs[0].branding.model_dump() if spec.hubs else loaded.catalog.fleet.branding.model_dump()
        logo = branding.get("logo")
        branding["logo_path"] = str(loaded.path(logo)) if logo else None
        return {
            "fleet": spec.fleet, "date": spec.date.isoformat(), "front_door": self.public_url,
            "portal_url": self.public_url, "demo_mode": False, "branding": branding,
            "hubs": [{
                "name": h.name, "url": self.hub_url(spec, h.name),
                # The controller runs every hub the plan wants (a hibernated one wakes on its first request).
                "up": True,
                "presentations": [{"key": p.key, "course": p.course, "presentation": p.presentation,
                                   "title": p.title, "phase": p.phase.value, "start": p.start.isoformat(),
                                   "end": p.end.isoformat()} for p in h.presentations],
            } for h in spec.hubs],
        }
