"""doit's JSON database, written only when something changed, atomically, and
re-encoding only the records that changed.

Registered as the doit backend ``facsimile`` (an entry point of this package).
A no-op build changes nothing, so it skips the dump. A dump goes to a
temporary file renamed into place, so an interrupted run never leaves a
truncated database.

The file is one JSON object with one task's record per line::

    {
    "build:dev/etc/app.conf":{"_values_:":{...},"checker:":"MD5Checker","deps:":[]},
    ...
    }

so a run that changed a few records writes the others' lines back as they
were read, instead of encoding 10,000 records again (a quarter of a second at
50,000 outputs). A file in any other JSON layout (doit's own) is read as well,
and written in this one at the next change.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import tempfile
from collections.abc import Iterator
from itertools import repeat
from typing import Any

from doit.dependency import DatabaseException, JsonDB


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Garbage collection off while many long-lived objects are made (doit's
    records, 10,000 tasks); they are frozen out of later collections after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


class FacsimileDB(JsonDB):
    """:class:`doit.dependency.JsonDB` with a dirty flag, an atomic dump, and lines
    of unchanged records written back as read."""

    desc = "JSON file, written only when changed (facsimile)"

    def __init__(self, name: str, codec: Any, *, module_name: str | None = None) -> None:
        self._text: str | None = None  # the file as read, when one record a line
        self._keys: list[str] = []  # its records' keys, in order
        self._touched: set[str] = set()  # records set or removed since
        super().__init__(name, codec, module_name=module_name)
        self.dirty = False

    def _load(self) -> Any:
        """Load with the collector off: 10,000 records are as many new dicts, and
        collecting while they are made costs a third of the load. They live for
        the whole run, so they are frozen out of later collections too."""
        with open(self.name, encoding="utf-8") as fh:
            text = fh.read()
        try:
            with collector_paused():
                data = json.loads(text)
        except ValueError as error:
            raise DatabaseException(
                f"{error}\nInvalid JSON data in {os.path.abspath(self.name)}\nTo fix this "
                "problem, you can just remove the corrupted file, a new one will be "
                "generated.\n") from error
        if isinstance(data, dict) and text.startswith("{\n") and text.endswith("\n}\n"):
            self._text = text
            self._keys = list(data)
        return data

    def set(self, task_id: str, dependency: str, value: Any) -> None:
        entry = self._db.get(task_id)
        if entry is not None and dependency in entry and entry[dependency] == _as_json(value):
            return
        self.dirty = True
        self._touched.add(task_id)
        super().set(task_id, dependency, value)

    def remove(self, task_id: str) -> None:
        if task_id in self._db:
            self.dirty = True
            self._touched.add(task_id)
        super().remove(task_id)

    def remove_all(self) -> None:
        self.dirty = True
        self._text = None
        self._keys = []
        super().remove_all()

    def dump(self) -> None:
        if not self.dirty and os.path.exists(self.name):
            return
        kept = self._lines()
        touched = self._touched
        parts = []
        for task_id, record in self._db.items():
            line = None if task_id in touched else kept.get(task_id)
            if line is None:
                # compact, and without the circular-reference check (plain JSON data)
                line = (json.dumps(task_id) + ":"
                        + json.dumps(record, check_circular=False, separators=(",", ":"))
                        + ",")
            parts.append(line)
        text = "{\n" + "\n".join(parts)[:-1] + "\n}\n" if parts else "{\n}\n"
        folder = os.path.dirname(os.path.abspath(self.name))
        fd, tmp = tempfile.mkstemp(prefix=".doit.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, self.name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._text = text
        self._keys = list(self._db)
        self._touched = set()
        self.dirty = False

    def _lines(self) -> dict[str, str]:
        """``{task_id: line}`` of the file as read (nothing when it is not one record
        a line); a line is the record's key and value, and a comma.

        One record a line: there are as many lines as records, and each starts
        with its record's key, in the order they were read, and closes an object
        (a file laid out otherwise, say by hand, has more lines than records, or
        lines that open or close an object). A key that JSON writes with escapes
        is not matched, and the file is then written whole. (Checked with ``map``:
        a loop over 10,000 lines in Python costs twice as much.)
        """
        keys = self._keys
        if self._text is None or not keys:
            return {}
        lines = self._text.split("\n")  # "{", the records, "}", ""
        if len(lines) != len(keys) + 3:
            return {}
        body = lines[1:-2]
        body[-1] += ","  # the last has none
        # (a key that JSON escapes never matches the raw key)
        if not (all(map(str.startswith, body, [f'"{k}":' for k in keys]))
                and all(map(str.endswith, body, repeat("},")))):
            return {}
        return dict(zip(keys, body, strict=True))

    @property
    def data(self) -> dict[str, Any]:
        """The loaded database (read-only use)."""
        return self._db


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists)."""
    if isinstance(value, tuple):
        return [_as_json(v) for v in value]
    return value
