"""Catalog errors that point at a file, line and column, and say how to fix the problem."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Location:
    file: str
    line: int  # 1-based
    col: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Problem:
    location: Location
    path: str  # e.g. courses[TM351].presentations[2026J].end
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.location}: {where}{self.message}"


# A person fixes a catalog from the top; a 1 MB file of bad rows must not print (or compute) 50,000 lines.
MAX_SHOWN = 100


class CatalogError(Exception):
    """Raised with every problem found in a catalog at once (up to ``MAX_SHOWN``, then a count); the CLI prints
    them and exits 2."""

    exit_code = 2

    def __init__(self, problems: list[Problem], omitted: int = 0):
        ordered = sorted(problems, key=lambda p: (p.location, p.path))
        self.problems = ordered[:MAX_SHOWN]
        self.omitted = omitted + len(ordered) - len(self.problems)  # found (or not even looked at) beyond those
        lines = [str(p) for p in self.problems]
        if self.omitted:
            lines.append(f"... and {self.omitted} more problems")
        super().__init__("\n".join(lines))

    @property
    def count(self) -> int:
        return len(self.problems) + self.omitted
