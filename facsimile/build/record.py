"""The record of one output: what it was last made from, as digests.

doit saves it as the output task's values (``_values_:`` in ``.doit.db``),
under one-letter keys (a database of 10,000 records is read on every run).
:class:`Record` names them; :meth:`Record.to_values` and
:meth:`Record.from_values` convert to and from the stored dict. The check
(:mod:`facsimile.build.check`) reads the stored dict directly, by the
``KEY_*`` constants below, since it runs for every output on every run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

KEY_SOURCE = "s"
KEY_FILES = "f"
KEY_NAMES = "n"
KEY_VALUES = "v"
KEY_CONTEXT = "c"
KEY_OUTPUT = "o"
KEY_MODE = "m"
KEY_CHECKS = "k"


@dataclass
class Record:
    """What one output was made from. ``None``: not recorded for this kind of output
    (an extra file reads no value; only a template loads other templates by name)."""

    source: str  # what it is made from, as the user names it (template, extra, ...)
    files: dict[str, str]  # root-relative file -> content digest, of every file read
    names: dict[str, str] | None = None  # template name -> file it loaded (includes)
    values: dict[str, str] | None = None  # context path -> keyed digest of its value
    context: str | None = None  # keyed digest of the whole instance context
    output: list[Any] | None = None  # [mtime_ns, size, keyed digest] of the file written
    mode: list[Any] | None = None  # [mode, secret, source mode, modes digest]: build.modes
    checks: list[Any] | None = None  # [validate digest, [check, ...]]: build.validate

    def to_values(self) -> dict[str, Any]:
        """The dict doit stores, keys in the order they have always been written."""
        out: dict[str, Any] = {KEY_SOURCE: self.source, KEY_FILES: self.files}
        if self.names is not None:
            out[KEY_NAMES] = self.names
        if self.values is not None:
            out[KEY_VALUES] = self.values
        if self.context is not None:
            out[KEY_CONTEXT] = self.context
        if self.output is not None:
            out[KEY_OUTPUT] = self.output
        if self.mode is not None:
            out[KEY_MODE] = self.mode
        if self.checks is not None:
            out[KEY_CHECKS] = self.checks
        return out

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> Record:
        """A stored dict read back (one written by :meth:`to_values`)."""
        return cls(values[KEY_SOURCE], values.get(KEY_FILES, {}), values.get(KEY_NAMES),
                   values.get(KEY_VALUES), values.get(KEY_CONTEXT), values.get(KEY_OUTPUT),
                   values.get(KEY_MODE), values.get(KEY_CHECKS))

    def replace(self, **changes: Any) -> Record:
        """A copy with ``changes`` (field name -> value)."""
        return dataclasses.replace(self, **changes)
