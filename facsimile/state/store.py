"""The state file of one instance family: read, checked, filled, written.

``state/<family>/state.json`` holds, for each name, its kind and value::

    {"format": 1, "next_id": 3,
     "modules": {"app": {"kind": "password", "value": "..."}},
     "generate": {"secret_key": {"kind": "token:32", "value": "..."}}}

It is written atomically (temp file + rename), mode 0600, under an exclusive
lock on ``state/<family>/.lock``; a file that cannot be read or parsed is an
error and is never replaced.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import write_atomic
from ..define.shapes import escape, typename
from ..errors import StateError
from .digest import value_digest
from .files import Local, StateStore
from .kinds import GENERATORS, KIND_RE, Generator, Want

FORMAT = 1
SECTIONS = ("modules", "generate", "daemons")
KEEP_PREVIOUS = 3  # replaced values kept per entry, for masking only
SEEN = "seen"  # an entry's keyed digests of every value it has had (never the values)
#: the random key of an entry's ``seen`` digests: it is kept (and sealed) with the
#: entry, so every clone of shared state knows the values the entry replaced
SEEN_KEY = "seen_key"
LEFT = "; it was left as it is"


@dataclass
class State:
    """The state of one instance family, as read (and maybe completed) in memory."""

    family: str
    path: Path
    data: dict[str, Any]
    generated: list[Want] = field(default_factory=list)  # made in memory, not yet saved
    exists: bool = True  # whether the family had a state file when it was read
    #: where it was read: masking reads the root's other families from it
    store: StateStore | None = field(default=None, repr=False, compare=False)
    #: what :func:`facsimile.mask.state_values` made of it, once per run
    masking: Any = field(default=None, repr=False, compare=False)

    def value(self, section: str, name: str) -> Any:
        return self.data.get(section, {}).get(name, {}).get("value")

    def module_password(self, module: str) -> str | None:
        return self.value("modules", module)

    def generate_values(self) -> dict[str, Any]:
        """``{name: value}`` of every ``generate`` entry."""
        return {k: v["value"] for k, v in self.data.get("generate", {}).items()}

    @property
    def lineage(self) -> str | None:
        """The family's lineage: a random id (not secret) given at its first write."""
        return lineage_of(self.data)

    @property
    def serial(self) -> int:
        """The family's serial: it grows with every value written (see :func:`serial_of`)."""
        return serial_of(self.data)

    def kinds(self) -> dict[str, str]:
        """``{"module.app.password": "password", "state.x": "token:32"}``."""
        out = {}
        for section in ("modules", "generate"):
            for name, entry in self.data.get(section, {}).items():
                out[Want(section, name, entry["kind"]).path] = entry["kind"]
        return out


def state_path(state_dir: Path, family: str) -> Path:
    """Where the family's state file is."""
    return state_dir / family / "state.json"


# ------------------------------------------------------------------ reading


def read_state(path: Path, shown: str | None = None) -> dict[str, Any]:
    """The parsed state file, or an empty state if there is none yet."""
    shown = shown or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"format": FORMAT, "next_id": 1, "modules": {}, "generate": {}}
    except IsADirectoryError as exc:
        raise StateError("state path is a folder, not a file; move it away", file=shown) from exc
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise StateError(f"cannot read state: {reason}", file=shown) from exc
    data = parse_json(text, shown)
    check_state(data, shown)
    data.setdefault("modules", {})
    data.setdefault("generate", {})
    data.setdefault("next_id", 1)
    return data


def _no_constant(name: str) -> Any:
    """``NaN`` and ``Infinity`` are not JSON (Python's parser takes them)."""
    raise json.JSONDecodeError(f"{name} is not a JSON value", name, 0)


def parse_json(text: str | bytes, shown: str) -> Any:
    """A state file's JSON; a file that does not parse is an error, never replaced."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise StateError("state is nested too deeply to be state; it was left as it is",
                         file=shown) from None
    except UnicodeDecodeError as exc:
        raise StateError("cannot read state: not UTF-8 text", file=shown) from exc
    except json.JSONDecodeError as exc:
        raise StateError(
            f"state is not valid JSON ({exc.msg}); it was left as it is: "
            "restore it from a backup (a new one would change every secret)",
            file=shown,
            line=exc.lineno,
            column=exc.colno,
        ) from exc


def lineage_of(data: Mapping[str, Any]) -> str | None:
    """A state document's lineage, if it has one yet."""
    value = data.get("lineage")
    return value if isinstance(value, str) and value else None


def serial_of(data: Mapping[str, Any]) -> int:
    """The sum of the entries' revisions (a missing one counts 1). A stored counter
    would conflict on every concurrent write in git; this sum grows with every
    value made or rotated, and the merge of two clones' rotations of different
    entries is above both."""
    return sum(entry.get("rev", 1) if isinstance(entry, Mapping) else 1
               for section in SECTIONS if isinstance(data.get(section), Mapping)
               for entry in data[section].values())


def check_state(data: Any, shown: str) -> None:
    """The parsed state file's shape: a damaged entry is an error, never a new value."""
    if not isinstance(data, dict) or any(
        not isinstance(data.get(section, {}), dict) for section in SECTIONS
    ):
        raise StateError("state has an unexpected shape" + LEFT, file=shown)
    fmt = data.get("format", FORMAT)
    if fmt != FORMAT or isinstance(fmt, bool):
        raise StateError(f"state format {json.dumps(fmt)} is not one this facsimile reads "
                         f"({FORMAT})" + LEFT, file=shown, pointer="/format")
    next_id = data.get("next_id", 1)
    if not isinstance(next_id, int) or isinstance(next_id, bool):
        raise StateError("next_id must be a whole number" + LEFT, file=shown,
                         pointer="/next_id")
    for section in SECTIONS:
        for name, entry in data.get(section, {}).items():
            _check_entry(entry, shown, f"/{section}/{escape(name)}")


def _check_entry(entry: Any, shown: str, where: str) -> None:
    """One entry: a known kind, a value of that kind, a list of previous values."""
    if not isinstance(entry, dict) or "value" not in entry or "kind" not in entry:
        raise StateError("state entry has no kind or value" + LEFT, file=shown,
                         pointer=where)
    kind, value = entry["kind"], entry["value"]
    match = KIND_RE.match(kind) if isinstance(kind, str) else None
    if match is None:
        raise StateError(
            f"state entry has kind {json.dumps(kind)}, not one of 'password[:N]', "
            "'token[:N]', 'uuid', 'id'" + LEFT, file=shown, pointer=f"{where}/kind")
    want: type = int if kind == "id" else str
    if not isinstance(value, want) or isinstance(value, bool):
        raise StateError(
            f"state entry's value is {typename(value)}, not the "
            f"{'whole number' if want is int else 'string'} its kind {kind!r} "
            "holds" + LEFT, file=shown, pointer=f"{where}/value")
    for name in ("previous", SEEN):
        listed = entry.get(name, [])
        if not isinstance(listed, list) or not all(isinstance(v, str) for v in listed):
            raise StateError(f"state entry's {name} values must be a list of strings"
                             + LEFT, file=shown, pointer=f"{where}/{name}")
    if SEEN_KEY in entry and not (isinstance(entry[SEEN_KEY], str)
                                  and re.fullmatch(r"[0-9a-f]{64}", entry[SEEN_KEY])):
        raise StateError(f"state entry's {SEEN_KEY} must be 64 hexadecimal digits" + LEFT,
                         file=shown, pointer=f"{where}/{SEEN_KEY}")


# ------------------------------------------------------------------ writing


def write_state(path: Path, data: Mapping[str, Any]) -> None:
    """Atomically replace ``path`` with the plain document ``data``, mode 0600."""
    _replace(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def write_bytes(path: Path, data: bytes, shown: str) -> None:
    """Atomically replace a state file; errors name it."""
    try:
        _replace(path, data)
    except OSError as exc:
        if exc.errno in (errno.EISDIR, errno.ENOTDIR):
            raise StateError("state path is not a file", file=shown) from exc
        raise StateError(f"cannot write state: {exc.strerror}", file=shown) from exc


def _replace(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename; mode 0600."""
    write_atomic(path, data, 0o600, fsync=True)


@contextlib.contextmanager
def locked(path: Path, shown: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock for the family whose state is ``path``."""
    shown = shown or str(path)
    if path.is_dir():
        raise StateError("state path is a folder, not a file; move it away", file=shown)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.parent / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StateError(f"cannot lock state: {exc.strerror}", file=shown) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------------ filling


def fill(
    data: dict[str, Any],
    wants: list[Want],
    generators: Mapping[str, Generator] = GENERATORS,
    rotate: set[str] | None = None,
    seen: bool = False,
) -> list[Want]:
    """Give every wanted name a value (new, changed kind, or rotated). Returns what was made.

    With ``seen`` (when the result is written), a replaced entry keeps in ``seen``
    the digests of every value it has had before its new one, keyed with its
    ``seen_key``."""
    rotate = rotate or set()
    made = []
    for want in wants:
        section = data.setdefault(want.section, {})
        entry = section.get(want.name)
        if entry is not None and entry.get("kind") == want.kind and want.path not in rotate:
            continue
        if want.base_kind == "id":
            value: Any = max(data["next_id"], _max_id(data) + 1)
            data["next_id"] = value + 1
        else:
            gen = generators.get(want.base_kind)
            if gen is None:
                raise StateError(f"no generator for kind {want.kind!r}", pointer=want.path)
            value = gen(want.arg)
        new = {"kind": want.kind, "value": value}
        if entry is not None:  # a first value is revision 1, written without "rev"
            new["rev"] = entry.get("rev", 1) + 1
        if entry is not None and isinstance(entry.get("value"), str):
            # the values it replaces, newest first: a plan --diff masks them in the
            # outputs that still hold them
            new["previous"] = [entry["value"], *entry.get("previous", [])][:KEEP_PREVIOUS]
        if entry is not None and seen:
            new[SEEN_KEY], new[SEEN] = _seen(entry)
        section[want.name] = new
        made.append(want)
    return made


def _seen(entry: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The seen key of a replaced entry (its own, or a new random one) and the digests
    of every value it has had: its value's and its previous values' are added. The
    key travels with the entry (in the shared document, sealed with it when state is
    sealed), so every clone that reads the state knows the values it replaced. The
    digests an entry kept before it had a key were made with a clone's local digest
    key: they stay, and masking still knows them by that key."""
    hexkey = entry.get(SEEN_KEY)
    if not isinstance(hexkey, str):
        hexkey = secrets.token_hex(32)
    key, seen = bytes.fromhex(hexkey), list(entry.get(SEEN, []))
    for value in [*entry.get("previous", [])[::-1], entry["value"]]:
        if (found := value_digest(value, key)) not in seen:
            seen.append(found)
    return hexkey, seen


def _max_id(data: Mapping[str, Any]) -> int:
    """The largest id any section holds (0 when none)."""
    ids = [e["value"] for section in data.values() if isinstance(section, dict)
           for e in section.values()
           if isinstance(e, dict) and str(e.get("kind")) == "id"
           and isinstance(e.get("value"), int)]
    return max(ids, default=0)


def _missing(data: Mapping[str, Any], wants: list[Want]) -> bool:
    for w in wants:
        entry = data.get(w.section, {}).get(w.name)
        if entry is None or entry.get("kind") != w.kind:
            return True
    return False


def as_store(where: Path | StateStore, shown_root: Path | None = None) -> StateStore:
    """A store for ``where``: a :class:`StateStore`, or a plain local state folder."""
    if isinstance(where, StateStore):
        return where
    return StateStore(Local(Path(where), shown_root), key_dir=Path(where))


def load(
    where: Path | StateStore,
    family: str,
    wants: list[Want],
    *,
    write: bool,
    shown_root: Path | None = None,
    generators: Mapping[str, Generator] = GENERATORS,
) -> State:
    """The family's state with every wanted value present.

    With ``write=False`` nothing is written: missing values are made in memory
    and listed in ``State.generated`` (a plan says what would be made). State
    that cannot be read (or decrypted) is an error before anything is made.
    """
    store = as_store(where, shown_root)
    path = _path(store, family)
    data, exists = store.read(family)  # fast path: nothing to add, no lock
    if not write:
        made = fill(data, wants, generators)
        return State(family, path, data, made, exists=exists, store=store)
    if not _missing(data, wants):
        return State(family, path, data, exists=exists, store=store)
    store.digest_key(write=True)  # the root's digest key is made before its first write
    data = store.update(family, lambda d: bool(fill(d, wants, generators, seen=True)))
    return State(family, path, data, exists=True, store=store)


def _path(store: StateStore, family: str) -> Path:
    backend = store.backend
    return backend.path(family) if isinstance(backend, Local) else Path(backend.shown(family))


def ensure_lineage(where: Path | StateStore, family: str, *,
                   shown_root: Path | None = None) -> tuple[str, int]:
    """The family's lineage and serial, giving an existing state file written before
    lineages existed its lineage now (under the lock)."""
    store = as_store(where, shown_root)
    data, exists = store.read(family)
    if exists and lineage_of(data) is None:
        data = store.update(family, lambda d: lineage_of(d) is None)
    return lineage_of(data) or "", serial_of(data)


def rotate(
    where: Path | StateStore,
    family: str,
    wants: list[Want],
    names: set[str],
    *,
    shown_root: Path | None = None,
    generators: Mapping[str, Generator] = GENERATORS,
) -> list[Want]:
    """Give new values to ``names`` (``module.app.password``, ``state.x``)."""
    store = as_store(where, shown_root)
    made: list[Want] = []
    store.digest_key(write=True)  # the root's digest key is made before its first write

    def change(data: dict[str, Any]) -> bool:
        made[:] = fill(data, wants, generators, rotate=names, seen=True)
        return True

    store.update(family, change)
    return made
