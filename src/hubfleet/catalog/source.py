"""Reading catalog YAML while keeping where every value came from, and refusing input that could hurt.

pydantic reports errors by *data path*; people fix errors by *file:line:col*. The reader builds plain dicts and
lists straight from libyaml's parse events (ruamel.yaml's C parser), recording the line and column of every key
and value under its data path, in whichever file it came from (fleet.yaml or a course file).

Course teams write course files, so a file is untrusted input (issue 16, item 7). Building from events rather
than letting a YAML library construct objects is what makes these limits cheap and exact:

- **no aliases**: ``*name`` (and so ``<<: *name``) is refused where it stands. An alias is how a 1 KB "billion
  laughs" file expands to 10^9 values; a catalog never needs one, and a refused alias costs nothing to check,
  where a bound would still have to be counted. Anchors alone (``&name``) do no harm and are ignored.
- **no tags but YAML's own** (``!!str``, ``!!int``, ...): ``!!python/...`` and application tags are refused;
- **bounded size and nesting**: ``MAX_YAML_BYTES`` per file, ``MAX_DEPTH`` levels of nesting;
- **UTF-8 only**: a UTF-16 or Latin-1 file is one clear error, not a traceback;
- duplicate keys and non-scalar keys are errors, not a silent last-one-wins.

Speed: one pass of the C parser plus one Python step per event, about a second per 3 MB on a busy machine,
whatever the file holds (``benchmarks/`` has the figure).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml import events as ev
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.nodes import ScalarNode

from hubfleet.catalog.errors import Location, Problem

DataPath = tuple[Any, ...]

MAX_YAML_BYTES = 1 << 20  # 1 MiB: a course file is a few KB; a whole inline catalog of 200 courses fits
MAX_DEPTH = 32  # the schema nests 8 deep; settings overrides a little more
_CORE = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_CORE}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}
_STR = f"{_CORE}str"
_COLLECTION_TAGS = {f"{_CORE}map", f"{_CORE}seq", f"{_CORE}omap"}


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


class _Refused(Exception):
    def __init__(self, mark: Any, message: str):
        self.mark, self.message = mark, message


def _lenient_timestamp(constructor, node):
    """An impossible date (2027-13-10) stays a string, so pydantic reports it with its position."""
    try:
        return constructor.construct_yaml_timestamp(node)
    except ValueError:
        return constructor.construct_scalar(node)


def _yaml() -> YAML:
    yaml = YAML(typ="safe", pure=False)  # libyaml's parser; the pure one is ~15x slower
    yaml.constructor.add_constructor(f"{_CORE}timestamp", _lenient_timestamp)
    return yaml


def _tag_text(tag: str) -> str:
    return "!!" + tag[len(_CORE):] if tag.startswith(_CORE) else tag


class _Builder:
    """Plain data from parse events, with the position of every key and value (1-based)."""

    def __init__(self, yaml: YAML, file: str, root: DataPath, smap: SourceMap):
        self.constructor = yaml.constructor
        # YAML 1.2's implicit types by first character, as ruamel's resolver holds them; asking the resolver per
        # scalar costs more than the whole parse (it re-derives the YAML version every time).
        self.implicit: dict[str | None, list] = yaml.resolver.versioned_resolver
        self.file, self.root, self.smap = file, root, smap
        # One frame per open collection: [container, data path, pending key (mappings), key mark]
        self.stack: list[list[Any]] = []
        self.result: Any = None
        self.documents = 0

    def loc(self, mark: Any) -> Location:
        return Location(self.file, mark.line + 1, mark.column + 1)

    def scalar(self, event: ev.ScalarEvent) -> Any:
        tag = event.tag
        if tag is None and event.implicit[0]:
            value = event.value
            for candidate, regexp in self.implicit.get(value[:1], ()):
                if regexp.match(value):
                    tag = candidate
                    break
            else:
                return value
        elif tag in (None, "!"):
            tag = _STR
        elif tag not in _SCALAR_TAGS:
            raise _Refused(event.start_mark, f"YAML tag '{_tag_text(tag)}' is not allowed; a catalog holds plain "
                                             "values only, so remove the tag")
        if tag == _STR:
            return event.value
        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        try:
            return self.constructor.yaml_constructors[tag](self.constructor, node)
        except (ValueError, ArithmeticError) as exc:  # e.g. an integer of 5,000 digits
            raise _Refused(event.start_mark, f"cannot read {_tag_text(tag)} value: {exc}") from None

    def place(self, value: Any, mark: Any, opens: bool) -> DataPath | None:
        """Put a value where the parse is: a mapping key, a mapping value, a sequence item, or the document."""
        if not self.stack:
            self.result = value
            self.smap.values.setdefault(self.root, Location(self.file, 1, 1))
            return self.root
        frame = self.stack[-1]
        container, path = frame[0], frame[1]
        if isinstance(container, dict):
            if frame[2] is _NO_KEY:
                if opens:
                    raise _Refused(mark, "a mapping or list used as a key; keys must be plain names")
                key = value if isinstance(value, (str, int)) else str(value)
                if key in container:
                    raise _Refused(mark, f"duplicate key '{key}'; a key may appear once in a mapping")
                frame[2], frame[3] = key, mark
                return None
            key, frame[2] = frame[2], _NO_KEY
            child = path + (key,)
            self.smap.keys[child] = self.loc(frame[3])
            container[key] = value
        else:
            child = path + (len(container),)
            self.smap.keys[child] = self.loc(mark)
            container.append(value)
        self.smap.values[child] = self.loc(mark)
        return child

    def feed(self, event: Any) -> None:
        kind = type(event)
        if kind is ev.ScalarEvent:
            self.place(self.scalar(event), event.start_mark, opens=False)
        elif kind is ev.MappingStartEvent or kind is ev.SequenceStartEvent:
            if event.tag not in (None, "!") and event.tag not in _COLLECTION_TAGS:
                raise _Refused(event.start_mark, f"YAML tag '{_tag_text(event.tag)}' is not allowed; a catalog "
                                                 "holds plain values only, so remove the tag")
            if len(self.stack) >= MAX_DEPTH:
                raise _Refused(event.start_mark, f"nested more than {MAX_DEPTH} levels deep; a catalog never needs "
                                                 "that, so flatten it")
            container: Any = {} if kind is ev.MappingStartEvent else []
            path = self.place(container, event.start_mark, opens=True)
            self.stack.append([container, path, _NO_KEY, None])
        elif kind is ev.MappingEndEvent or kind is ev.SequenceEndEvent:
            self.stack.pop()
        elif kind is ev.AliasEvent:
            raise _Refused(event.start_mark, f"YAML alias '*{event.anchor}' is not allowed; write the value out "
                                             "(aliases let a small file expand without limit)")
        elif kind is ev.DocumentStartEvent:
            self.documents += 1
            if self.documents > 1:
                raise _Refused(event.start_mark, "a second YAML document ('---'); a catalog file holds one")


_NO_KEY = object()


def read_text(path: Path, display: str, limit: int) -> tuple[str | None, list[Problem]]:
    """A catalog file's text, or a problem: unreadable, not a regular file, over ``limit`` bytes, or not UTF-8."""
    try:
        # O_NONBLOCK: a FIFO planted as a course file must not hang validate; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with open(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None, [Problem(Location(display, 1, 1), "", "not a regular file; catalog files are plain files")]
            raw = fh.read(limit + 1)  # never more than the limit in memory, whatever the file claims
    except OSError as exc:
        return None, [Problem(Location(display, 1, 1), "", f"cannot read the file: {exc.strerror}")]
    if len(raw) > limit:
        return None, [Problem(Location(display, 1, 1), "", f"the file is larger than {limit >> 10} KiB, the limit for "
                              "one catalog file; split it (one course per file under courses/)")]
    return decode(raw, display)


def decode(raw: bytes, display: str) -> tuple[str | None, list[Problem]]:
    """UTF-8 text (a leading byte-order mark is dropped), or a ``file: not UTF-8`` problem at the first bad byte."""
    try:
        return raw.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        utf16 = raw[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in raw[:200]
        hint = "it looks like UTF-16; " if utf16 else ""
        return None, [Problem(Location(display, line, col), "", f"not UTF-8 (byte 0x{raw[exc.start]:02x}); {hint}"
                              "save the file as UTF-8, e.g. `iconv -f utf-16 -t utf-8` or your editor's encoding menu")]


def read_yaml(path: Path, display: str, data_path: DataPath, smap: SourceMap) -> tuple[Any, list[Problem]]:
    """Load one YAML file into plain data under ``data_path`` of the source map."""
    smap.files[data_path] = display
    text, problems = read_text(path, display, MAX_YAML_BYTES)
    if text is None:
        return None, problems
    yaml = _yaml()
    builder = _Builder(yaml, display, data_path, smap)
    try:
        for event in yaml.parse(text):
            builder.feed(event)
    except _Refused as exc:
        return None, [Problem(builder.loc(exc.mark), "", exc.message)]
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = builder.loc(mark) if mark else Location(display, 1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        return None, [Problem(loc, "", f"YAML syntax error: {what}; check indentation and quoting")]
    except Exception as exc:  # noqa: BLE001 - libyaml's reader errors (control characters) carry no mark
        return None, [Problem(Location(display, 1, 1), "", f"YAML error: {exc}")]
    return builder.result, []
