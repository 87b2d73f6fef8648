"""The error every parser raises on bad input."""

from __future__ import annotations


class LogError(ValueError):
    """A log that cannot be imported: names the file, the line (or record) and the reason.

    >>> str(LogError("vm.log", 12, "expected 17 numbers, found 3"))
    'vm.log: line 12: expected 17 numbers, found 3'
    """

    def __init__(self, file: str, line: int | None, reason: str, unit: str = "line") -> None:
        where = f"{file}: {unit} {line}: " if line is not None else f"{file}: "
        super().__init__(where + reason)
        self.file = file
        self.line = line
        self.unit = unit
        self.reason = reason

    def to_json(self) -> dict:
        return {"file": self.file, self.unit: self.line, "reason": self.reason}
