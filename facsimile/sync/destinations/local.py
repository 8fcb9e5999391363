"""``file://`` destinations: fsspec's local filesystem. A put creates its
temporary file with the final mode through ``os.open`` (no one else can read a
secret at any moment, nor after a kill), fills it, and renames it in with
``os.replace``; folders that deletes leave empty are removed.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Callable, Mapping
from typing import Any

from ...errors import SyncError
from .. import killpoints
from ..scan import LocalFile
from .base import (
    Destination,
    Entry,
    Location,
    in_roots,
    own_tmp_name,
    register,
    tmp_name,
    write_all,
)


class LocalDestination(Destination):
    """``file://``: fsspec's local filesystem; renames are atomic, modes kept."""

    has_modes = True

    def _write(self, rel: str, mode: int, write: Callable[[int], None]) -> None:
        """Create the temporary file with ``mode`` (no one else may read it at any
        moment, nor after a kill), let ``write`` fill it, rename it in."""
        final = self.path(rel)
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        tmp = tmp_name(final)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # left by a killed sync, maybe with another mode
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                     mode & 0o777)
        try:
            os.fchmod(fd, mode)  # exactly ``mode``, whatever the umask
            write(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        os.close(fd)
        os.replace(tmp, final)

    def put(self, f: LocalFile) -> None:
        def write(fd: int) -> None:
            with open(f.path, "rb") as src:
                while chunk := src.read(1 << 20):
                    write_all(fd, chunk)

        self._write(f.rel, f.mode, write)

    def write_bytes(self, rel: str, data: bytes) -> None:
        self._write(rel, 0o600, lambda fd: write_all(fd, data))

    def create_exclusive(self, rel: str, data: bytes) -> bool:
        """Written whole to a temporary name, then hard-linked to ``rel``, which
        fails if ``rel`` exists: exactly one of two racing syncs creates it, and
        it is never seen empty (a sync killed half way leaves no empty lock)."""
        final = self.path(rel)
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        tmp = own_tmp_name(final)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                write_all(fd, data)
            finally:
                os.close(fd)
            os.link(tmp, final)
        except FileExistsError:
            return False
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return True

    def keep_copies(self, pairs: list[tuple[str, str]]) -> None:
        """Hard links (no copy, the mode kept); a copy where the folder cannot have them."""
        import shutil

        for src, dst in pairs:
            final = self.path(dst)
            os.makedirs(posixpath.dirname(final), exist_ok=True)
            try:
                os.link(self.path(src), final, follow_symlinks=False)
            except (FileExistsError, FileNotFoundError):
                continue
            except OSError:  # another filesystem, or one without links
                if not os.path.lexists(final) and os.path.lexists(self.path(src)):
                    shutil.copy2(self.path(src), final, follow_symlinks=False)

    def move_many(self, pairs: list[tuple[str, str]]) -> None:
        for src, dst in pairs:
            os.makedirs(posixpath.dirname(self.path(dst)), exist_ok=True)
            os.replace(self.path(src), self.path(dst))
            killpoints.reached("move")
        self.prune_dirs([src for src, _ in pairs])

    def chmod(self, path: str, mode: int) -> None:
        os.chmod(path, mode)

    def prune_dirs(self, rels: list[str]) -> None:
        for rel in rels:
            parent = posixpath.dirname(self.path(rel))
            while parent.startswith(self.base + "/"):
                try:
                    os.rmdir(parent)
                except OSError:
                    break
                parent = posixpath.dirname(parent)

    def listing(self, roots: list[str]) -> dict[str, Entry]:
        """One walk of each root: size, mtime (nanoseconds) and mode of every file."""
        out: dict[str, Entry] = {}
        for root in roots:
            top = self.path(root) if root else self.base
            for dirpath, dirnames, filenames in os.walk(top):
                if not root:
                    dirnames.clear()
                for name in filenames:
                    path = os.path.join(dirpath, name)
                    try:
                        st = os.lstat(path)
                    except OSError:
                        continue
                    rel = os.path.relpath(path, self.base).replace(os.sep, "/")
                    if (st.st_mode & 0o170000) == 0o100000 and in_roots(rel, [root]):
                        out[rel] = Entry(st.st_size, str(st.st_mtime_ns), st.st_mode & 0o7777)
        return out


@register("file")
def open_local(where: Location, deploy: Mapping[str, Any], label: str) -> Destination:
    """A ``file:///path`` (or ``file://localhost/path``) destination."""
    from fsspec.implementations.local import LocalFileSystem

    if where.parts.netloc not in ("", "localhost"):
        raise SyncError(f"destination {where.shown!r} names the host {where.parts.netloc!r}: "
                        "a file URL takes an absolute path, file:///path (three slashes) or "
                        "file://{root}/path")
    if not where.path.startswith("/"):
        raise SyncError(f"destination {where.shown!r} is not an absolute path: write "
                        "file:///path or file://{root}/path")
    return LocalDestination(LocalFileSystem(**where.options), where.path, label)
