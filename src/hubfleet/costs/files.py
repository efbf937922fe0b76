"""Reading a model file or a prices file: the catalog's YAML reader (positions, no aliases, size limits), then the
strict pydantic model; every problem as ``file:line:col: path: what and how to fix``."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from hubfleet.catalog.errors import CatalogError, Location, Problem
from hubfleet.catalog.source import SourceMap, read_yaml
from hubfleet.simulate.model import Prices, UsageModel

M = TypeVar("M", bound=BaseModel)


def _path_text(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_file(path: Path, model: type[M]) -> M:
    """The file as ``model``, or CatalogError listing every problem."""
    smap = SourceMap()
    data, problems = read_yaml(path, str(path), (), smap)
    if problems:
        raise CatalogError(problems)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise CatalogError([Problem(Location(str(path), 1, 1), "", "expected a mapping of settings at the top")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        found = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            extra = err["type"] == "extra_forbidden"
            where = smap.locate(loc, key=extra)
            msg = err["msg"].removeprefix("Value error, ")
            if extra:
                known = ", ".join(sorted(_model_at(model, loc[:-1]).model_fields)) if _model_at(model, loc[:-1]) else ""
                msg = f"unknown key '{loc[-1]}'" + (f"; known keys: {known}" if known else "")
            elif err["type"] == "missing":
                msg = f"missing required key '{loc[-1]}'; add it"
            found.append(Problem(where, _path_text(loc), msg))
        raise CatalogError(found) from None


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None or isinstance(part, int):
            continue
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        current = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    return current


def load_model(path: Path | None) -> UsageModel:
    return load_file(path, UsageModel) if path else UsageModel()


def load_prices(path: Path | None) -> Prices:
    return load_file(path, Prices) if path else Prices()
