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


def _local(loaded: LoadedCatalog, state_dir: Path | None, storage_root: Path | None, port: int,
           observing: bool) -> Backend | None:
    state = state_dir_for(loaded, state_dir)
    if observing and not state.is_dir():
        return None  # never applied here (and `plan` then never imports the backend's server stack)
    from hubfleet.backends.local.backend import LocalBackend

    return LocalBackend(state, (storage_root or state / "storage").resolve(), loaded, port=port)


def _kubernetes(loaded: LoadedCatalog, state_dir: Path | None, storage_root: Path | None, port: int,
                observing: bool) -> Backend | None:
    from hubfleet.backends.kubernetes.backend import KubernetesUnavailable, connect

    if observing and not os.environ.get("KUBECONFIG"):
        return None  # no cluster named
    try:
        return connect(fleet=loaded.catalog.fleet.name, catalog_root=loaded.root)
    except KubernetesUnavailable as exc:
        err_console.print(str(exc), markup=False)
        raise typer.Exit(2) from None


# The one place a backend's name is looked at: every command after this speaks the Backend protocol.
FACTORIES = {"local": _local, "kubernetes": _kubernetes}


def make_backend(
    loaded: LoadedCatalog,
    state_dir: Path | None = None,
    *,
    backend: str | None = None,
    storage_root: Path | None = None,
    port: int = 8000,
    observing: bool = False,
) -> Backend | None:
    """The backend the catalog names (or ``backend``); exit 2 saying what is missing if it cannot be used.
    ``observing``: None instead when there is nothing to observe yet (see ``observing_backend``)."""
    kind = backend or loaded.catalog.fleet.backend
    factory = FACTORIES.get(kind)
    if factory is None:
        err_console.print(f"[red]unknown backend {kind!r}; use {' or '.join(FACTORIES)}[/]")
        raise typer.Exit(2)
    return factory(loaded, state_dir, storage_root, port, observing)


def observing_backend(loaded: LoadedCatalog, state_dir: Path | None) -> Backend | None:
    """The backend `plan` observes, or None when there is nothing to observe yet (no local state dir; no
    KUBECONFIG), in which case the plan is made against an empty fleet."""
    return make_backend(loaded, state_dir, observing=True)
