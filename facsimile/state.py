"""Generated state: passwords, tokens, uuids and ids, made once per instance family.

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
import string
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import StateError

FORMAT = 1
PASSWORD_ALPHABET = string.ascii_letters + string.digits
DEFAULT_PASSWORD_LEN = 24
DEFAULT_TOKEN_BYTES = 32
MASK = "********"
SECRET_KINDS = ("password", "token")

Generator = Callable[[int | None], Any]


def _password(length: int | None) -> str:
    """Letters and digits from the OS's random source, each equally likely: random
    bytes below the largest multiple of the alphabet's size are kept, the rest
    thrown away (a third of the time of ``secrets.choice`` per character)."""
    n = length or DEFAULT_PASSWORD_LEN
    size = len(PASSWORD_ALPHABET)
    limit = 256 - 256 % size
    chars: list[str] = []
    while len(chars) < n:
        chars += [PASSWORD_ALPHABET[b % size] for b in secrets.token_bytes(2 * n) if b < limit]
    return "".join(chars[:n])


def _token(nbytes: int | None) -> str:
    return secrets.token_hex(nbytes or DEFAULT_TOKEN_BYTES)


def _uuid(_: int | None) -> str:
    return str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))


GENERATORS: dict[str, Generator] = {"password": _password, "token": _token, "uuid": _uuid}


@dataclass(frozen=True)
class Want:
    """One value the definitions ask for: ``section`` is ``modules`` or ``generate``."""

    section: str
    name: str
    kind: str  # "password", "token:32", "uuid", "id"

    @property
    def base_kind(self) -> str:
        return self.kind.split(":", 1)[0]

    @property
    def arg(self) -> int | None:
        _, _, a = self.kind.partition(":")
        return int(a) if a else None

    @property
    def path(self) -> str:
        """The name templates see: ``module.app.password`` or ``state.secret_key``."""
        return f"module.{self.name}.password" if self.section == "modules" else f"state.{self.name}"

    @property
    def secret(self) -> bool:
        return self.base_kind in SECRET_KINDS


@dataclass
class State:
    """The state of one instance family, as read (and maybe completed) in memory."""

    family: str
    path: Path
    data: dict[str, Any]
    generated: list[Want] = field(default_factory=list)  # made in memory, not yet saved

    def value(self, section: str, name: str) -> Any:
        return self.data.get(section, {}).get(name, {}).get("value")

    def module_password(self, module: str) -> str | None:
        return self.value("modules", module)

    def generate_values(self) -> dict[str, Any]:
        """``{name: value}`` of every ``generate`` entry."""
        return {k: v["value"] for k, v in self.data.get("generate", {}).items()}

    def kinds(self) -> dict[str, str]:
        """``{"module.app.password": "password", "state.x": "token:32"}``."""
        out = {}
        for section in ("modules", "generate"):
            for name, entry in self.data.get(section, {}).items():
                out[Want(section, name, entry["kind"]).path] = entry["kind"]
        return out


KEY_FILE = ".digest-key"


def digest_key(state_dir: Path, *, write: bool) -> bytes:
    """The root's secret key for the digests kept in doit's database and caches.

    Unkeyed, the digest of a short generated password could be reversed by trying
    every value; keyed, the database says nothing without this file. It lives
    beside the state (0600), is made once, race-free (two processes that make it
    at once end with the same key), and with ``write=False`` a missing key is
    not made: an ephemeral one stands in, so every record reads as changed.
    """
    path = state_dir / KEY_FILE
    try:
        return _read_key(path)
    except FileNotFoundError:
        if not write:
            return secrets.token_bytes(32)
    state_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".digest-key.", suffix=".tmp", dir=state_dir)
    try:
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # only the first process to get here wins
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise StateError("the digest key is damaged; delete it (the next build makes a new "
                         "one and checks every output again)", file=path)
    return key


def data_digest(data: Mapping[str, Any], key: bytes) -> str:
    """A keyed digest of a family's state data (it holds secrets: never unkeyed)."""
    import hashlib

    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8, key=key).hexdigest()


def wants_digest(wants: list[Want]) -> str:
    """A digest of what a family asks for: when it changes, so may its state."""
    import hashlib

    text = json.dumps(sorted((w.section, w.name, w.kind) for w in wants))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def state_path(state_dir: Path, family: str) -> Path:
    return state_dir / family / "state.json"


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
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(
            f"state is not valid JSON ({exc.msg}); it was left as it is: "
            "restore it from a backup (a new one would change every secret)",
            file=shown,
            line=exc.lineno,
            column=exc.colno,
        ) from exc
    check_state(data, shown)
    data.setdefault("modules", {})
    data.setdefault("generate", {})
    data.setdefault("next_id", 1)
    return data


#: a stored kind: ``password``, ``password:40``, ``token``, ``token:32``, ``uuid``, ``id``
_KIND_RE = re.compile(r"^(?:(password|token)(?::[0-9]+)?|(uuid|id))$")
SECTIONS = ("modules", "generate", "daemons")
KEEP_PREVIOUS = 3  # replaced values kept per entry, for masking only
LEFT = "; it was left as it is"


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
            where = f"/{section}/{_escape(name)}"
            if not isinstance(entry, dict) or "value" not in entry or "kind" not in entry:
                raise StateError("state entry has no kind or value" + LEFT, file=shown,
                                 pointer=where)
            kind, value = entry["kind"], entry["value"]
            match = _KIND_RE.match(kind) if isinstance(kind, str) else None
            if match is None:
                raise StateError(
                    f"state entry has kind {json.dumps(kind)}, not one of 'password[:N]', "
                    "'token[:N]', 'uuid', 'id'" + LEFT, file=shown, pointer=f"{where}/kind")
            want: type = int if kind == "id" else str
            if not isinstance(value, want) or isinstance(value, bool):
                raise StateError(
                    f"state entry's value is {_typename(value)}, not the "
                    f"{'whole number' if want is int else 'string'} its kind {kind!r} "
                    "holds" + LEFT, file=shown, pointer=f"{where}/value")
            previous = entry.get("previous", [])
            if not isinstance(previous, list) or not all(isinstance(v, str) for v in previous):
                raise StateError("state entry's previous values must be a list of strings"
                                 + LEFT, file=shown, pointer=f"{where}/previous")


def _typename(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), "a value")


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def write_state(path: Path, data: Mapping[str, Any]) -> None:
    """Atomically replace ``path`` (temp file in the same folder, fsync, rename), mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".state.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), 0o600)
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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


def fill(
    data: dict[str, Any],
    wants: list[Want],
    generators: Mapping[str, Generator] = GENERATORS,
    rotate: set[str] | None = None,
) -> list[Want]:
    """Give every wanted name a value (new, changed kind, or rotated). Returns what was made."""
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
        if entry is not None and isinstance(entry.get("value"), str):
            # the values it replaces, newest first: a plan --diff masks them in the
            # outputs that still hold them
            new["previous"] = [entry["value"], *entry.get("previous", [])][:KEEP_PREVIOUS]
        section[want.name] = new
        made.append(want)
    return made


def load(
    state_dir: Path,
    family: str,
    wants: list[Want],
    *,
    write: bool,
    shown_root: Path | None = None,
    generators: Mapping[str, Generator] = GENERATORS,
) -> State:
    """The family's state with every wanted value present.

    With ``write=False`` nothing touches the disk: missing values are made in
    memory and listed in ``State.generated`` (a plan says what would be made).
    """
    path = state_path(state_dir, family)
    shown = _shown(path, shown_root)
    if not write:
        data = read_state(path, shown)
        made = fill(data, wants, generators)
        return State(family, path, data, made)
    data = read_state(path, shown)  # fast path: nothing to add, no lock
    if not _missing(data, wants):
        return State(family, path, data)
    with locked(path, shown):
        data = read_state(path, shown)
        made = fill(data, wants, generators)
        if made:
            _write(path, data, shown)
    return State(family, path, data)


def rotate(
    state_dir: Path,
    family: str,
    wants: list[Want],
    names: set[str],
    *,
    shown_root: Path | None = None,
    generators: Mapping[str, Generator] = GENERATORS,
) -> list[Want]:
    """Give new values to ``names`` (``module.app.password``, ``state.x``)."""
    path = state_path(state_dir, family)
    shown = _shown(path, shown_root)
    with locked(path, shown):
        data = read_state(path, shown)
        made = fill(data, wants, generators, rotate=names)
        _write(path, data, shown)
    return made


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


def _write(path: Path, data: Mapping[str, Any], shown: str) -> None:
    try:
        write_state(path, data)
    except OSError as exc:
        if exc.errno in (errno.EISDIR, errno.ENOTDIR):
            raise StateError("state path is not a file", file=shown) from exc
        raise StateError(f"cannot write state: {exc.strerror}", file=shown) from exc


def _shown(path: Path, root: Path | None) -> str:
    if root is None:
        return str(path)
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def wants_for(
    modules: Mapping[str, Mapping[str, Any]], generate: Mapping[str, str]
) -> list[Want]:
    """What an instance asks for: each module's password, each ``generate`` entry."""
    out = [Want("modules", m, "password") for m in sorted(modules)]
    out += [Want("generate", n, k) for n, k in sorted(generate.items())]
    return out
