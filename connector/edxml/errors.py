"""Problems found in edXML input, and the exception that carries them.

Every problem names where it is (file, element path, line) and what was expected, so that a
clerk or an operator can act on it without reading a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or odd) in a document."""

    message: str
    path: str = ""
    line: int | None = None
    severity: Severity = "error"
    code: str = "invalid"
    source: str = ""

    def located(self, source: str) -> "Problem":
        """The same problem, naming the file it was found in."""
        return Problem(self.message, self.path, self.line, self.severity, self.code, source)

    def __str__(self) -> str:
        where = []
        if self.source:
            where.append(self.source)
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.path:
            where.append(self.path)
        prefix = ", ".join(where)
        return f"{prefix}: {self.severity}: {self.message}" if prefix else f"{self.severity}: {self.message}"

    def to_dict(self) -> dict:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "path": self.path,
            "line": self.line,
            "source": self.source,
        }


class EdxmlError(Exception):
    """Input that cannot be read as edXML at all (malformed, hostile, over a limit)."""

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))

    def located(self, source: str) -> "EdxmlError":
        return EdxmlError([p.located(source) for p in self.problems])


@dataclass
class Report:
    """All problems found in one document: errors make it invalid, warnings do not."""

    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors
