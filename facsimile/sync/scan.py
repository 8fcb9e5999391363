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
    stack = [(base, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append((entry.path, f"{prefix}{entry.name}/"))
                    continue
                _refuse(entry.path, st, build_dir)
                rel = prefix + entry.name
                mark = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
                old = known.get(rel)
                if isinstance(old, list) and old[:4] == mark and len(old) == 5:
                    digest = old[4]
                else:
                    digest = sha256_file(entry.path)
                if st.st_mode & 0o077 and max(st.st_mtime_ns, st.st_ctime_ns) < settled:
                    seen[rel] = [*mark, digest]  # readable by others: no generated value
                out[rel] = LocalFile(rel, entry.path, digest, st.st_mode & 0o7777, st.st_size)
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
