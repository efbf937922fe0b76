"""Defer pydantic's plugin loader until a validator is built with plugins switched on.

Every validator pydantic builds first imports ``pydantic.plugin._loader``, and that module imports
``importlib.metadata`` (with ``email``, ``zipfile``, ``csv``...) at its top, even when plugins are switched off with
``PYDANTIC_DISABLE_PLUGINS``. typer switches them off while it builds its parameters' adapters, and hubfleet while
it builds the catalog's models (``common.no_pydantic_plugins``), so in ``hubfleet validate`` nothing ever searches
for a plugin, yet the import was ~30 ms of the command's ~0.26 s (benchmarks/cli_startup.py).

``install()`` puts a stand-in module in its place whose ``get_plugins`` answers exactly as pydantic's does: no
plugins while they are switched off; otherwise it swaps pydantic's real loader in (from then on pydantic calls it
directly) and returns what that finds. Nothing about which plugins run changes, only when the loader is imported.
ref: .venv/.../pydantic/plugin/_loader.py ``get_plugins`` (pydantic pinned in pyproject.toml); the test
tests/test_cli_startup.py checks both answers against the real loader.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import types
from collections.abc import Iterable
from typing import Any

LOADER = "pydantic.plugin._loader"
_SWITCHED_OFF = ("__all__", "1", "true")  # the values for which pydantic's get_plugins returns () unread


_SWAP = threading.Lock()  # two threads building validators at once must not both swap (nor import it twice)


def _get_plugins() -> Iterable[Any]:
    if os.getenv("PYDANTIC_DISABLE_PLUGINS") in _SWITCHED_OFF:
        return ()
    with _SWAP:
        if getattr(sys.modules.get(LOADER), "get_plugins", None) is _get_plugins:
            del sys.modules[LOADER]  # the stand-in steps aside for good
        loader = importlib.import_module(LOADER)
    return loader.get_plugins()


def install() -> None:
    """Stand in for pydantic's plugin loader, unless it is already imported (then there is nothing to save)."""
    if LOADER not in sys.modules:
        stand_in = types.ModuleType(LOADER, "hubfleet's stand-in: imports pydantic's loader when plugins are on")
        stand_in.get_plugins = _get_plugins  # type: ignore[attr-defined]
        sys.modules[LOADER] = stand_in
