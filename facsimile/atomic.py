"""The one atomic write: a temporary file next to its place, renamed over it.

Every file facsimile replaces (outputs in ``BUILD/``, state, the digest key,
doit's database, caches, files at a local destination) is written this way,
so a reader sees the old content or the new, never a part, and a write that
fails or is killed leaves the old file. The temporary file is created with
the final mode (less the umask, then exactly the mode), so a secret is never
readable by others, not even half-written.

An output that was not there is made in place (:func:`create_new`), as make
and ninja make theirs: there is no old file to keep, and a write that fails
removes what it began. One left half-written by a kill has no record in doit's
database, so the next build makes it again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_atomic(path: str | Path, data: bytes | Callable[[int], None], mode: int = 0o644, *,
                 tmp: str | None = None, fsync: bool = False,
                 check: Callable[[str], None] | None = None) -> os.stat_result:
    """Replace ``path`` with ``data`` (bytes, or a function that writes to the open fd).

    ``tmp``: the temporary file's path (default ``.<name>.<pid>.tmp`` beside it;
    one left by a killed process is replaced). Missing folders are made.
    ``fsync``: flush to disk before the rename (state, whose loss is not a
    rebuild). ``check``: called with the temporary file's path once it is written
    and closed, before the rename; what it raises leaves the old file in place
    (an output's ``validate``). Returns the temporary file's stat, taken after
    writing: the new file's mtime and size.
    """
    target = str(path)
    if tmp is None:
        folder, sep, base = target.rpartition(os.sep)
        tmp = f"{folder if sep else '.'}{os.sep}.{base}.{os.getpid()}.tmp"
    try:  # the temporary file is made inside: an interrupt at any point removes it
        try:
            fd = _open_new(tmp, mode)
        except FileExistsError:  # left by a killed process
            os.unlink(tmp)
            fd = _open_new(tmp, mode)
        st = _fill(fd, data, mode, fsync)
        if check is not None:
            check(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return st


def create_new(path: str, data: bytes, mode: int) -> os.stat_result:
    """Make the file ``path``, which is not there, holding ``data`` with exactly ``mode``
    (made with it, less the umask, so a secret is never readable by others); missing
    folders are made. :class:`FileExistsError` when something is there (a file, a link
    or a folder made since it was looked at): replace it with :func:`write_atomic`.
    A write that fails or is interrupted removes the file, also when the interrupt
    comes just after it was made (before its descriptor is kept). Returns its stat,
    taken after writing."""
    try:
        st = _fill(_open_new(path, mode), data, mode)
    except FileExistsError:
        raise  # not made here: what is there is not this write's to remove
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return st


def _open_new(path: str, mode: int) -> int:
    """Create the file ``path`` (not there: else :class:`FileExistsError`) with
    ``mode`` less the umask, making missing folders; its descriptor."""
    try:
        return os.open(path, _FLAGS, mode & 0o777)
    except FileNotFoundError:  # no folder yet: made on the first file only
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return os.open(path, _FLAGS, mode & 0o777)


def _fill(fd: int, data: bytes | Callable[[int], None], mode: int,
          fsync: bool = False) -> os.stat_result:
    """Write ``data`` to the new file ``fd``, give it exactly ``mode`` and close it;
    its stat, taken after writing."""
    try:
        if callable(data):
            data(fd)
        else:
            write_all(fd, data)
        if fsync:
            os.fsync(fd)
        st = os.fstat(fd)
        if st.st_mode & 0o7777 != mode:  # the umask took bits that the mode asks for
            os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return st
