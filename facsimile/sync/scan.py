"""What the build has: every regular file of ``BUILD/<instance>/`` as a
``LocalFile`` (relative path, absolute path, sha256, mode, size), the side of
the comparison that the planner holds against the destination.

A symbolic link there is never followed nor sent: the build never makes one, so
it is an error naming it (as is anything else that is not a file or a folder).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

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


def scan_build(build_dir: Path) -> dict[str, LocalFile]:
    """Every regular file of the build with its digest and mode; a link (or a
    fifo, a socket, a device) in it is an error naming it."""
    out: dict[str, LocalFile] = {}
    base = str(build_dir)
    _refuse(base, os.lstat(base), build_dir)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames:  # os.walk lists a link to a folder here, and skips it
            path = os.path.join(dirpath, name)
            _refuse(path, os.lstat(path), build_dir)
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            _refuse(path, st, build_dir)
            rel = os.path.relpath(path, base).replace(os.sep, "/")
            out[rel] = LocalFile(rel, path, sha256_file(path), st.st_mode & 0o7777, st.st_size)
    return out


def _refuse(path: str, st: os.stat_result, build_dir: Path) -> None:
    """An error unless ``path`` is a plain file or folder."""
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return
    what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a file or a folder"
    raise SyncError(f"{what} in the build: facsimile never follows or sends one; "
                    "remove it (the next build does)",
                    file=shown_path(path, build_dir.parent.parent))
