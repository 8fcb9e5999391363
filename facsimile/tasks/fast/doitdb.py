"""doit's JSON database, written only when something changed, atomically, and
re-encoding only the records that changed.

Registered as the doit backend ``facsimile`` (an entry point of this package,
``facsimile.tasks.fast.doitdb:FacsimileDB``).
A no-op build changes nothing, so it skips the dump. A dump goes to a
temporary file renamed into place, so an interrupted run never leaves a
truncated database.

The file is one JSON object with one task's record per line::

    {
    "build:dev/etc/app.conf":{"_values_:":{...},"checker:":"MD5Checker","deps:":[]},
    ...
    }

so a run that changed a few records writes the others' lines back as they
were read, instead of encoding 10,000 records again. A file in any other JSON
layout (doit's own) is read as well, and written in this one at the next
change.
"""

from __future__ import annotations

import json
import os
import pprint
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from doit.cmd_dumpdb import DumpDB
from doit.dependency import JsonDB

from ...atomic import write_atomic

# doit loads its backends before it reads dodo.py: the build machinery
# (facsimile.build) is imported when a database is first read, so that a no-op
# the record answers (facsimile.noop) does not load it


class FacsimileDB(JsonDB):
    """:class:`doit.dependency.JsonDB` with a dirty flag, an atomic dump, and lines
    of unchanged records written back as read."""

    desc = "JSON file, written only when changed (facsimile)"

    def __init__(self, name: str, codec: Any, *, module_name: str | None = None) -> None:
        self._text: str | None = None  # the file as read, when one record a line
        self._keys: list[str] = []  # its records' keys, in order
        self._touched: set[str] = set()  # records set or removed since
        self._encoded: dict[str, str] = {}  # lines of new records, encoded as they were made
        #: called first by :meth:`dump` (which doit calls at the end of every run,
        #: a failed or interrupted one too): last records to set
        self.before_dump: list[Callable[[], None]] = []
        super().__init__(name, codec, module_name=module_name)
        self.dirty = False

    def _load(self) -> Any:
        """Load with the collector off: 10,000 records are as many new dicts, and
        collecting while they are made is slow. They live for
        the whole run, so they are frozen out of later collections too."""
        try:
            with open(self.name, encoding="utf-8") as fh:
                text = fh.read()
            from ...build.collector import collector_paused

            with collector_paused():
                data = json.loads(text)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, RecursionError) as error:
            damaged(self.name, f"cannot be read ({getattr(error, 'strerror', None) or error})")
        check_records(self.name, data)
        if text.startswith("{\n") and text.endswith("\n}\n"):
            self._text = text
            self._keys = list(data)
        return data

    def set(self, task_id: str, dependency: str, value: Any) -> None:
        entry = self._db.get(task_id)
        if entry is not None and dependency in entry and entry[dependency] == _as_json(value):
            return
        self.dirty = True
        self._touched.add(task_id)
        self._encoded.pop(task_id, None)
        super().set(task_id, dependency, value)

    def set_new(self, task_id: str, record: dict[str, Any], line: str) -> bool:
        """Save the record of a task the database has none of, with its line already
        encoded (:func:`record_line`, by the process that made the output, so the
        dump does not encode it); False, and nothing saved, when it has one."""
        if task_id in self._db:
            return False
        self.dirty = True
        self._touched.add(task_id)
        self._db[task_id] = record
        self._encoded[task_id] = line
        return True

    def remove(self, task_id: str) -> None:
        if task_id in self._db:
            self.dirty = True
            self._touched.add(task_id)
        self._encoded.pop(task_id, None)
        super().remove(task_id)

    def remove_all(self) -> None:
        self.dirty = True
        self._text = None
        self._keys = []
        self._encoded = {}
        super().remove_all()

    def dump(self) -> None:
        for call in self.before_dump:
            call()
        if not self.dirty and os.path.exists(self.name):
            return
        lines = self._patched()
        if lines is None:  # not one record a line: every record encoded
            encoded = self._encoded
            lines = [encoded.get(k) or _line(k, r) for k, r in self._db.items()]
        def write(fd: int) -> None:
            with os.fdopen(fd, "w", encoding="utf-8", closefd=False) as fh:
                fh.write("{\n")
                for i, part in enumerate(lines):
                    if i:
                        fh.write(",\n")
                    fh.write(part)
                fh.write("\n}\n")

        write_atomic(os.path.abspath(self.name), write, 0o600)
        self._text = None  # a second dump in this process writes every record
        self._keys = []
        self._touched = set()
        self._encoded = {}
        self.dirty = False

    def _patched(self) -> list[str] | None:
        """The file as read, in pieces of whole lines (without the commas between),
        with the lines of the records set or removed since replaced or dropped, and
        new records added at the end; ``None`` when the file is not one record a line.

        One record a line: as many lines as records, and each line of a record
        changed starts with its key and is followed by a line that starts with
        the next key (or by the closing brace), so it holds exactly that record.
        (JSON strings hold no raw newline.) A file laid out otherwise, say by
        hand or by doit's own backend, fails these checks and is written whole.
        Only the changed lines are looked at, and the unchanged ones are copied
        in runs: a pass over 10,000 lines, or copies of the whole text, cost more
        than the rest of the dump.
        """
        text, keys, db = self._text, self._keys, self._db
        if text is None or not keys or text.count("\n") != len(keys) + 2:
            return None
        position = {k: i for i, k in enumerate(keys)}
        last_end = len(text) - 3  # where the last record's line ends: "\n}\n" follows
        parts = []
        pos = 2  # the start of the first line not yet copied
        for i in sorted(position[k] for k in self._touched if k in position):
            key = keys[i]
            head = json.dumps(key) + ":"
            if text.startswith(head, pos):
                start = pos
            else:
                start = text.find("\n" + head, pos) + 1
                if not start:
                    return None
            newline = text.find("\n", start)
            if i + 1 < len(keys):
                if (text[newline - 2:newline] != "},"
                        or not text.startswith(json.dumps(keys[i + 1]) + ":", newline + 1)):
                    return None
            elif newline != last_end or text[newline - 1] != "}":
                return None
            if start > pos:
                parts.append(text[pos:start - 2])  # the lines before, less their last ",\n"
            if key in db:
                parts.append(_line(key, db[key]))
            pos = newline + 1
        if pos < last_end:
            parts.append(text[pos:last_end])
        encoded = self._encoded
        parts += [encoded.get(k) or _line(k, r) for k, r in db.items() if k not in position]
        return parts

    @property
    def data(self) -> dict[str, Any]:
        """The loaded database (read-only use)."""
        return self._db


def damaged(name: str, why: str) -> NoReturn:
    """Stop the run: doit's database ``name`` is damaged (one line, exit 1)."""
    print(f"facsimile: error: {os.path.relpath(name)}: doit's database {why}; delete it "
          "to rebuild everything, or restore it", file=sys.stderr, flush=True)
    raise SystemExit(1)


def check_records(name: str, data: Any) -> None:
    """Stop the run when ``data`` is not doit's database as facsimile writes it."""
    from ...build.check import shape_problem

    problem = shape_problem(data)
    if problem:
        damaged(name, problem)


class DumpJSON(DumpDB):
    """``doit dumpdb`` that also reads facsimile's JSON database: each record, as
    doit prints those of a dbm file (doit's own command only opens dbm files).
    Registered under doit's ``COMMAND`` entry points as ``dumpdb``, so it
    replaces doit's; any other database is left to doit's."""

    def execute(self, opt_values: dict[str, Any], pos_args: list[str]) -> Any:
        dep_file = opt_values["dep_file"]
        try:
            with open(dep_file, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError, RecursionError) as exc:
            try:
                return super().execute(opt_values, pos_args)
            except Exception:  # neither JSON nor a dbm file doit can open
                damaged(dep_file, f"cannot be read ({exc})")
        check_records(dep_file, data)
        print("DB type is 'json' (facsimile)")
        for key, value in data.items():
            print(f"{key} -> {pprint.pformat(value, indent=4, width=100)}")
        return 0


#: compact, without the circular-reference check (plain JSON); made once, as
#: ``json.dumps`` with options makes an encoder per call
_ENCODE = json.JSONEncoder(check_circular=False, separators=(",", ":")).encode


def _line(task_id: str, record: Any) -> str:
    """A record's line in the file."""
    return f"{_ENCODE(task_id)}:{_ENCODE(record)}"


def record_line(task_id: str, record: dict[str, Any]) -> str:
    """The line :meth:`FacsimileDB.set_new` takes: ``record`` as the dump would encode it
    (an output task's three entries, in their order, written around its values)."""
    if list(record) != _OUTPUT_KEYS or record["deps:"]:
        return _line(task_id, record)
    return (f'{_ENCODE(task_id)}:{{"_values_:":{_ENCODE(record["_values_:"])},'
            f'"checker:":{_ENCODE(record["checker:"])},"deps:":[]}}')


_OUTPUT_KEYS = ["_values_:", "checker:", "deps:"]


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists)."""
    if isinstance(value, tuple):
        return [_as_json(v) for v in value]
    return value
