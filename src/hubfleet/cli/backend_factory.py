"""Pick and build the backend a catalog names (or the one given with --backend)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from hubfleet.cli.common import err_console

if TYPE_CHECKING:
    from hubfleet.backends.base import Backend
    from hubfleet.catalog import LoadedCatalog

StateDirOption = typer.Option(None, "--state-dir", help="Where hubfleet keeps hub state; default .hubfleet/ next to the catalog.")


def state_dir_for(loaded: LoadedCatalog, state_dir: Path | None) -> Path:
    return (state_dir or loaded.root / ".hubfleet").resolve()


def make_backend(
    loaded: LoadedCatalog,
    state_dir: Path | None = None,
    *,
    backend: str | None = None,
    storage_root: Path | None = None,
    port: int = 8000,
) -> Backend:
    kind = backend or loaded.catalog.fleet.backend
    if kind == "local":
        from hubfleet.backends.local.backend import LocalBackend

        state = state_dir_for(loaded, state_dir)
        return LocalBackend(state, (storage_root or state / "storage").resolve(), loaded, port=port)
    if kind == "kubernetes":
        from hubfleet.backends.kubernetes.backend import KubernetesUnavailable, connect

        try:
            return connect(fleet=loaded.catalog.fleet.name, catalog_root=loaded.root)
        except KubernetesUnavailable as exc:
            err_console.print(str(exc), markup=False)
            raise typer.Exit(2) from None
    err_console.print(f"[red]unknown backend {kind!r}; use local or kubernetes[/]")
    raise typer.Exit(2)


def observing_backend(loaded: LoadedCatalog, state_dir: Path | None) -> Backend | None:
    """The backend `plan` observes, or None when there is nothing to observe yet (no local state dir; no
    KUBECONFIG), in which case the plan is made against an empty fleet."""
    kind = loaded.catalog.fleet.backend
    if kind == "local" and not state_dir_for(loaded, state_dir).is_dir():
        return None
    if kind == "kubernetes" and not os.environ.get("KUBECONFIG"):
        return None
    return make_backend(loaded, state_dir)
