"""One exception family. Each error carries the user's file and location."""

from __future__ import annotations

TYPE_CHECKING = False  # pathlib is not imported: a no-op (facsimile.noop) needs nothing of it
if TYPE_CHECKING:
    from pathlib import Path


class FacsimileError(Exception):
    """Root of every error facsimile raises on purpose.

    ``str(err)`` is one line meant for the user: ``file:line:col: message``.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        column: int | None = None,
        pointer: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.column = column
        self.pointer = pointer

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            if self.pointer:
                where += f" at {self.pointer}"
            where += ": "
        elif self.pointer:
            where = f"{self.pointer}: "
        return where + self.message


class RootNotFoundError(FacsimileError, FileNotFoundError):
    """No facsimile root above the working directory."""


class DefinitionError(FacsimileError, ValueError):
    """A definition file is malformed, has a wrong type, or inherits badly."""


class StateError(FacsimileError, OSError):
    """The state file cannot be read, parsed or written."""


class TemplateError(FacsimileError, ValueError):
    """A template failed to load or render."""


class BuildError(FacsimileError, RuntimeError):
    """The build cannot proceed (conflicting outputs, unreadable files)."""


class SyncError(FacsimileError, RuntimeError):
    """A destination cannot be reached, read or written."""
