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


class CatalogError(Exception):
    """Raised with every problem found in a catalog at once; the CLI prints them and exits 2."""

    exit_code = 2

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.location, p.path))
        super().__init__("\n".join(str(p) for p in self.problems))
