"""Reading catalog YAML while keeping where every value came from.

pydantic reports errors by *data path*; people fix errors by *file:line:col*. ruamel.yaml's
round-trip loader keeps the line and column of every key and item, so we walk the loaded tree once
and index each data path to its position, in whichever file it came from (fleet.yaml or a course file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from hubfleet.catalog.errors import Location, Problem

DataPath = tuple[Any, ...]


@dataclass
class SourceMap:
    """Positions of every data path: the value's position, and for mapping keys the key's own."""

    values: dict[DataPath, Location] = field(default_factory=dict)
    keys: dict[DataPath, Location] = field(default_factory=dict)
    files: dict[DataPath, str] = field(default_factory=dict)  # subtree root -> file

    def locate(self, path: DataPath, *, key: bool = False) -> Location:
        """The closest known position for a path: its own, else its nearest ancestor's."""
        table = self.keys if key else self.values
        for cut in range(len(path), -1, -1):
            prefix = path[:cut]
            if prefix in table:
                return table[prefix]
            if key and prefix in self.values:
                return self.values[prefix]
        return Location(self.file_for(path), 1, 1)

    def file_for(self, path: DataPath) -> str:
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.files:
                return self.files[path[:cut]]
        return "<catalog>"


def _plain(node: Any, path: DataPath, file: str, smap: SourceMap, base: Location) -> Any:
    """Convert ruamel nodes to plain dicts/lists, recording positions (1-based) on the way."""
    if isinstance(node, CommentedMap):
        smap.values.setdefault(path, base)
        out = {}
        for key, value in node.items():
            child = path + (key,)
            kl, kc = node.lc.key(key)
            vl, vc = node.lc.value(key)
            smap.keys[child] = Location(file, kl + 1, kc + 1)
            pos = Location(file, vl + 1, vc + 1)
            smap.values[child] = pos
            out[str(key) if not isinstance(key, (str, int)) else key] = _plain(value, child, file, smap, pos)
        return out
    if isinstance(node, CommentedSeq):
        smap.values.setdefault(path, base)
        items = []
        for i, value in enumerate(node):
            child = path + (i,)
            line, col = node.lc.item(i)
            pos = Location(file, line + 1, col + 1)
            smap.values[child] = pos
            smap.keys[child] = pos
            items.append(_plain(value, child, file, smap, pos))
        return items
    return node


def _lenient_timestamp(constructor, node):
    """An impossible date (2027-13-10) stays a string, so pydantic reports it with its position."""
    try:
        return constructor.construct_yaml_timestamp(node)
    except ValueError:
        return constructor.construct_scalar(node)


def _loader(positions: bool) -> YAML:
    # The C-backed safe loader is ~8x faster than the round-trip one but forgets positions; the
    # loader uses it first and re-reads with positions only when there is an error to point at.
    # Both resolve scalars by the same YAML 1.2 rules, so they build the same data.
    yaml = YAML(typ="rt") if positions else YAML(typ="safe", pure=False)
    yaml.constructor.add_constructor("tag:yaml.org,2002:timestamp", _lenient_timestamp)
    return yaml


def read_yaml(
    path: Path, display: str, data_path: DataPath, smap: SourceMap, *, positions: bool = True
) -> tuple[Any, list[Problem]]:
    """Load one YAML file into plain data under ``data_path`` of the source map."""
    yaml = _loader(positions)
    smap.files[data_path] = display
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return None, [Problem(Location(display, 1, 1), "", f"cannot read the file: {exc.strerror}")]
    try:
        node = yaml.load(text)
    except Exception as exc:
        if not positions or not isinstance(exc, MarkedYAMLError):
            # The fast path only needs to know that something is wrong; the positioned re-read says what.
            return None, [Problem(Location(display, 1, 1), "", f"YAML error: {exc}")]
        mark = exc.problem_mark or exc.context_mark
        loc = Location(display, mark.line + 1, mark.column + 1) if mark else Location(display, 1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        return None, [Problem(loc, "", f"YAML syntax error: {what}; check indentation and quoting")]
    if not positions:
        return node, []
    start = Location(display, 1, 1)
    return _plain(node, data_path, display, smap, start), []
