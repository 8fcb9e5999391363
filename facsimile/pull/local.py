"""What a pull keeps and writes on the host: its record, its lock, and staged writes.

The record (``<state dir>/<instance>.<target>.json``; the state dir is
``<dest>/.facsimile/pull`` by default, ``/var/lib/facsimile/pull`` for ``/``)
says which manifest the host last applied (lineage, serial, the digest of its
payload) and every file that pull wrote, with the blob it came from, the sha256
of what was written, its mode, size and mtime: a file whose blob, size, mtime
and mode are unchanged is not read, one whose content still matches is not
fetched again, and only the files listed there are ever deleted. It is written
after the files, so a pull stopped half way is repaired by the next.

New contents are staged first: each to a temporary file beside its place,
created with its final mode (``Staged``). Only when every file is staged, its
digest checked and decrypted, are they renamed in; a failure before (a
network that drops, a full disk, a key that does not open a secret) removes
the temporary files and changes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..atomic import write_all, write_atomic
from ..errors import SyncError

RECORD_FORMAT = 1
TMP = ".facsimile-pull"
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) \
    | getattr(os, "O_NOFOLLOW", 0)


def record_path(state_dir: Path, instance: str, target: str) -> Path:
    """Where the record of one instance's target lives in ``state_dir``."""
    return state_dir / f"{instance}.{target}.json"


def read_record(path: Path) -> dict[str, Any]:
    """The record at ``path`` (empty when there is none); a damaged one is an error."""
    from ..sync.manifest import inside

    try:
        doc = json.loads(path.read_bytes())
        assert isinstance(doc, dict) and isinstance(doc.get("files"), dict)
        assert all(inside(rel) and isinstance(e, dict) for rel, e in doc["files"].items())
        return doc
    except FileNotFoundError:
        return {"files": {}}
    except (OSError, ValueError, AssertionError) as exc:
        raise SyncError(f"the pull record is damaged ({type(exc).__name__}): move it away "
                        "to start afresh (the next pull then fetches every file)",
                        file=path) from None


def write_record(path: Path, doc: dict[str, Any]) -> None:
    """Write the record whole (fsync: it decides what a later pull deletes)."""
    doc = {"format": RECORD_FORMAT, **doc, "files": dict(sorted(doc["files"].items()))}
    try:
        write_atomic(path, (json.dumps(doc, indent=1) + "\n").encode(), 0o600, fsync=True)
    except OSError as exc:
        raise SyncError(f"cannot write the pull record: {exc.strerror}", file=path) from None


def others(state_dir: Path, mine: Path) -> dict[str, str]:
    """``{rel: "instance.target"}`` of the files the other pulls into this
    destination wrote (a pull never writes over them)."""
    out: dict[str, str] = {}
    for p in sorted(state_dir.glob("*.json")) if state_dir.is_dir() else []:
        if p != mine:
            with contextlib.suppress(SyncError):
                out.update(dict.fromkeys(read_record(p)["files"], p.stem))
    return out


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a timer's pull and one by hand wait in turn)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        raise SyncError(f"cannot make the pull's lock: {exc.strerror}", file=path) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def intact(path: str, had: dict[str, Any] | None) -> bool:
    """Whether the file at ``path`` is still as the record says the pull left it."""
    if not had:
        return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (st.st_mode & 0o170000 == 0o100000 and st.st_size == had.get("size")
            and st.st_mtime_ns == had.get("mtime_ns") and st.st_mode & 0o7777 == had.get("mode"))


def sha256_of(path: str) -> str | None:
    """The sha256 of the regular file at ``path``; None when there is none."""
    from ..sync.scan import sha256_file

    try:
        return sha256_file(path)
    except OSError:
        return None


class Staged:
    """New contents written beside their places, renamed in together by ``commit``."""

    def __init__(self) -> None:
        self.files: list[tuple[str, str, int]] = []  # (temporary, final, mode)

    def add(self, final: str, data: bytes, mode: int) -> None:
        """Write ``data`` to a temporary file beside ``final`` with ``mode``."""
        tmp = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}{TMP}")
        try:
            os.makedirs(os.path.dirname(final), exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # left by a pull that was killed
            fd = os.open(tmp, _FLAGS, mode & 0o777)
        except OSError as exc:
            raise _os_error(exc, final, len(data)) from None
        self.files.append((tmp, final, mode))
        try:
            os.fchmod(fd, mode)
            write_all(fd, data)
            os.fsync(fd)
        except OSError as exc:
            raise _os_error(exc, final, len(data)) from None
        finally:
            os.close(fd)

    def discard(self) -> None:
        """Remove every temporary file (a failure before ``commit``)."""
        for tmp, _, _ in self.files:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self.files.clear()

    def commit(self, undo: Any = None) -> None:
        """Rename every staged file into its place (``undo``: a ``health.Undo``
        that keeps each file replaced)."""
        for tmp, final, _ in self.files:
            try:
                if undo is not None:
                    undo.keep(final)
                os.replace(tmp, final)
            except OSError as exc:
                self.discard()
                raise _os_error(exc, final, 0) from None
        self.files.clear()


def _os_error(exc: OSError, path: str, size: int) -> SyncError:
    """One line about a write that failed; a full disk says how much was asked."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return SyncError(f"no space left on the device writing {path} ({size} bytes): "
                         "nothing was changed (the next pull tries again)")
    return SyncError(f"cannot write {path}: {exc.strerror}: nothing was changed")


def remove(path: str, base: str) -> None:
    """Delete ``path`` (gone already is fine), then the folders it leaves empty up
    to ``base`` (never ``base``)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    parent = os.path.dirname(path)
    base = base.rstrip(os.sep) or os.sep
    while parent.startswith(base.rstrip(os.sep) + os.sep) and parent != base:
        try:
            os.rmdir(parent)
        except OSError:
            break
        parent = os.path.dirname(parent)
