"""The catalog: strict YAML (+ CSV rosters) loaded into typed models, with file:line:col errors.

The names below are loaded on first use (PEP 562), so importing a light submodule (``naming``, ``model`` for
``hubfleet schema``) does not also import the YAML reader and the loader; hub processes import ``naming`` too.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hubfleet.catalog.errors import CatalogError, Problem
    from hubfleet.catalog.loader import LoadedCatalog, load_catalog
    from hubfleet.catalog.model import Catalog

__all__ = ["Catalog", "CatalogError", "LoadedCatalog", "Problem", "load_catalog"]

_HOME = {
    "Catalog": "model", "CatalogError": "errors", "LoadedCatalog": "loader", "Problem": "errors",
    "load_catalog": "loader",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'hubfleet.catalog' has no attribute {name!r}")
    value = getattr(import_module(f"hubfleet.catalog.{_HOME[name]}"), name)
    globals()[name] = value
    return value
