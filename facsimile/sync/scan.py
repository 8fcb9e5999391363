"""What the build has: every regular file of ``BUILD/<instance>/`` as a
``LocalFile`` (relative path, absolute path, sha256, mode, size), the side of
the comparison that the planner holds against the destination.

A symbolic link there is never followed nor sent: the build never makes one, so
it is an error naming it (as is anything else that is not a file or a folder).

A sync reads every file of the build only once: the digest of a file is kept in
a cache (``.facsimile/scan-<instance>.json``, authenticated like the other
caches) beside its size, mtime, ctime and inode, as git's index does, and a file
whose four are unchanged is not read again. A file only its owner may read (an
output that holds a generated value) is read every time and never cached.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..define.root import shown_path
from ..errors import SyncError

_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)


@dataclass(frozen=True)
class LocalFile:
    """One file of the build: ``rel`` is its ``/`` separated path below the build."""

    rel: str
    path: str
    digest: str
    mode: int
    size: int


def sha256_file(path: str) -> str:
    """The hex sha256 of the file at ``path`` (a link there is not followed)."""
    h = hashlib.sha256()
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def scan_build(build_dir: Path,
               cache: MutableMapping[str, Any] | None = None) -> dict[str, LocalFile]:
    """Every regular file of the build with its digest and mode; a link (or a
    fifo, a socket, a device) in it is an error naming it. ``cache``: digests
    kept between runs (see the module's text); it is updated in place."""
    out: dict[str, LocalFile] = {}
    base = str(build_dir)
    _refuse(base, os.lstat(base), build_dir)
    known = {} if cache is None else cache
    seen: dict[str, list[Any]] = {}
    settled = time.time_ns() - 2_000_000_000  # an entry newer may change in its tick
    get, is_reg = known.get, stat.S_ISREG
    stack = [(base, "")]
    while stack:
        folder, prefix = stack.pop()
        # listed from an open folder, each entry's stat is one lstat from it (not a
        # walk of its whole path): half the cost of a stat each file
        fd = os.open(folder, _DIR_FLAGS)
        try:
            with os.scandir(fd) as it:
                entries = list(it)
            for entry in entries:
                name = entry.name
                if entry.is_dir(follow_symlinks=False):
                    stack.append((f"{folder}/{name}", f"{prefix}{name}/"))
                    continue
                st = entry.stat(follow_symlinks=False)
                path = f"{folder}/{name}"
                if not is_reg(st.st_mode):
                    _refuse(path, st, build_dir)
                rel = prefix + name
                size, mtime, ctime, ino = st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino
                old = get(rel)
                if type(old) is list and len(old) == 5 and old[0] == size and \
                        old[1] == mtime and old[2] == ctime and old[3] == ino:
                    digest = old[4]
                else:
                    digest = sha256_file(path)
                    old = [size, mtime, ctime, ino, digest]
                if st.st_mode & 0o077 and max(mtime, ctime) < settled:
                    seen[rel] = old  # readable by others: no generated value
                out[rel] = LocalFile(rel, path, digest, st.st_mode & 0o7777, size)
        finally:
            os.close(fd)
    if cache is not None:
        cache.clear()
        cache.update(seen)
    return dict(sorted(out.items()))


def _refuse(path: str, st: os.stat_result, build_dir: Path) -> None:
    """An error unless ``path`` is a plain file or folder."""
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return
    what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a file or a folder"
    raise SyncError(f"{what} in the build: facsimile never follows or sends one; "
                    "remove it (the next build does)",
                    file=shown_path(path, build_dir.parent.parent))
