"""What the build has: every regular file of ``BUILD/<instance>/`` as a
``LocalFile`` (relative path, absolute path, sha256, mode, size), the side of
the comparison that the planner holds against the destination.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LocalFile:
    """One file of the build: ``rel`` is its ``/`` separated path below the build."""

    rel: str
    path: str
    digest: str
    mode: int
    size: int


def sha256_file(path: str) -> str:
    """The hex sha256 of the file at ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def scan_build(build_dir: Path) -> dict[str, LocalFile]:
    """Every regular file of the build with its digest and mode."""
    out: dict[str, LocalFile] = {}
    base = str(build_dir)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            rel = os.path.relpath(path, base).replace(os.sep, "/")
            out[rel] = LocalFile(rel, path, sha256_file(path), st.st_mode & 0o7777, st.st_size)
    return out
