"""The catalog: strict YAML (+ CSV rosters) loaded into typed models, with file:line:col errors."""

from hubfleet.catalog.errors import CatalogError, Problem
from hubfleet.catalog.loader import LoadedCatalog, load_catalog
from hubfleet.catalog.model import Catalog

__all__ = ["Catalog", "CatalogError", "LoadedCatalog", "Problem", "load_catalog"]
