"""What every destination is: ``Destination``, one folder on an fsspec
filesystem, with the operations a sync needs (a survey: records, listing and
digests in one look; read, put, delete, write a record, run a command). The
base class does each with single-file fsspec calls, looping for the batch
ones; a backend overrides only what it can do better. Also the temporary-name
rule shared by the backends, and the registry of backends by URL scheme
(``register``; ``open_destination`` in the package looks it up).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult

from ...errors import SyncError
from .. import killpoints
from ..scan import LocalFile

TMP_SUFFIX = ".facsimile-tmp"


@dataclass(frozen=True)
class Entry:
    """A file as one listing of the destination shows it: its size, its
    modification time as the backend gives it (compared, never interpreted), and
    its mode where the backend has modes."""

    size: int
    mtime: str
    mode: int | None = None


@dataclass
class Survey:
    """What one look at a destination shows: the bytes of each record asked for
    (None where there is none), the listing of the roots asked for, and the
    sha256 of the files asked for (None where missing)."""

    records: dict[str, bytes | None]
    listing: dict[str, Entry]
    digests: dict[str, str | None]


def listing_roots(rels: Iterable[str], owned: Iterable[str] = ()) -> list[str]:
    """The folders one listing must cover to see ``rels`` and the ``owned``
    folders: each path's first folder, each owned folder, and ``""`` (the files
    directly in the base, not below it) when a path has no folder."""
    roots = {rel.split("/", 1)[0] if "/" in rel else "" for rel in rels}
    roots |= {o.strip("/") for o in owned if o.strip("/")}
    tops = {r for r in roots if r and not any(r.startswith(o + "/") for o in roots if o)}
    return sorted(tops | ({""} & roots))


def in_roots(rel: str, roots: Iterable[str]) -> bool:
    """Whether a listing of ``roots`` (see ``listing_roots``) shows ``rel``."""
    return any(rel.startswith(r + "/") if r else "/" not in rel for r in roots)


@dataclass(frozen=True)
class Location:
    """A destination URL taken apart, for a backend's opener."""

    url: str
    parts: SplitResult
    path: str  # the URL's path, unquoted
    shown: str  # the URL fit for messages (password masked)
    options: dict[str, Any]  # deploy.storage_options, for the fsspec filesystem
    ahead: bool = False  # opened ahead of its use, to be warmed (see Destination.warm)


#: ``opener(location, deploy, label)``: the destination behind ``location``
Opener = Callable[[Location, Mapping[str, Any], str], "Destination"]

#: scheme -> opener; the first scheme a backend registers is the one error messages name
OPENERS: dict[str, Opener] = {}
PRIMARY: list[str] = []


def register(*schemes: str) -> Callable[[Opener], Opener]:
    """Decorator: the opener of a backend for the URL ``schemes`` (the first is its name)."""
    def deco(opener: Opener) -> Opener:
        for scheme in schemes:
            OPENERS[scheme] = opener
        PRIMARY.append(schemes[0])
        return opener

    return deco


def tmp_name(final: str) -> str:
    """The temporary name next to ``final`` that a put writes, then renames."""
    return posixpath.join(posixpath.dirname(final),
                          f".{posixpath.basename(final)}{TMP_SUFFIX}")


def own_tmp_name(final: str) -> str:
    """A temporary name next to ``final`` that no other process writes (for an
    exclusive create: written whole, then linked to ``final``)."""
    return posixpath.join(posixpath.dirname(final), f".{posixpath.basename(final)}."
                          f"{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")


def is_tmp_name(name: str) -> bool:
    """Whether the file name ``name`` is one that ``tmp_name`` makes."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX) and len(name) > len(TMP_SUFFIX) + 1


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the file descriptor ``fd``."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Destination:
    """One destination folder on an fsspec filesystem."""

    has_modes = False  # True where files have modes that a sync keeps
    runs_commands = False  # True where deploy.postcmd can run (ssh)

    def __init__(self, fs: Any, base: str, label: str) -> None:
        self.fs = fs
        self.base = base.rstrip("/") or "/"
        self.label = label

    def path(self, rel: str) -> str:
        """The filesystem path of ``rel``."""
        return posixpath.join(self.base, rel)

    def read(self, rel: str) -> bytes | None:
        """The content of ``rel``, None where it cannot be read."""
        try:
            return bytes(self.fs.cat_file(self.path(rel)))
        except (FileNotFoundError, OSError):
            return None

    def put_many(self, files: list[LocalFile],
                 progress: Callable[[int], None]) -> dict[str, Entry]:
        """Put each of ``files`` (``send``), calling ``progress`` with the bytes of
        each one done; what a listing shows of each now (what the next quick check
        compares)."""
        self.send(files, progress)
        rels = [f.rel for f in files]
        after = self.listing(listing_roots(rels))
        return {rel: after[rel] for rel in rels if rel in after}

    def warm(self, expected: int, digests: bool) -> None:
        """Start what this destination's survey will need, while the caller does
        other work (scans the build): a sync about to read a destination of some
        ``expected`` files (``digests``: with their digests) opens it, warms it
        and closes it; what was started stays with the connection for the next
        opening in this process. The base has nothing to start."""

    def put_recorded(self, files: list[LocalFile], progress: Callable[[int], None],
                     first: tuple[str, bytes],
                     last: tuple[str, Callable[[dict[str, Entry]], bytes]],
                     ) -> dict[str, Entry] | None:
        """Put ``files`` as ``put_many`` does, with two records in the same go where
        the backend can: ``first`` (a path and its bytes: the pending record) in
        place before any file, ``last`` (the manifest: its bytes made from what a
        listing will show of each file after the put) after every one, then
        ``first`` removed. What a listing shows of each file now; None where the
        backend cannot (this one), having written nothing: the caller then writes
        the records itself, around ``put_many``."""
        return None

    def send(self, files: list[LocalFile], progress: Callable[[int], None]) -> None:
        """Put each of ``files``, calling ``progress`` with the bytes of each one done."""
        for f in files:
            self.put(f)
            progress(f.size)
            killpoints.reached("put")

    def put(self, f: LocalFile) -> None:
        """Write ``f`` to a temporary name next to its place, then rename it in."""
        final = self.path(f.rel)
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        tmp = tmp_name(final)
        # the empty file gets its final mode before any content goes in
        self.fs.pipe_file(tmp, b"")
        self.chmod(tmp, f.mode)
        self.fs.put_file(f.path, tmp)
        self.fs.mv(tmp, final)

    def chmod(self, path: str, mode: int) -> None:
        """Set a mode where the backend has modes (the base put calls it)."""

    def delete_many(self, rels: list[str]) -> None:
        """Remove ``rels`` (missing ones are no error), then the folders left empty."""
        for rel in rels:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.path(rel))
        self.prune_dirs(rels)

    def prune_dirs(self, rels: list[str]) -> None:
        """Remove folders that deletes left empty (never the base)."""

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write a record (mode 0600 where there are modes) through a temporary name."""
        final = self.path(rel)
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        tmp = tmp_name(final)
        self.fs.pipe_file(tmp, b"")
        self.chmod(tmp, 0o600)
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, final)

    def create_exclusive(self, rel: str, data: bytes) -> bool:
        """Create ``rel`` with ``data`` unless it exists (then False), in one atomic
        step where the backend can (each backend overrides this)."""
        final = self.path(rel)
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        try:
            with self.fs.open(final, "xb") as fh:
                fh.write(data)
        except FileExistsError:
            return False
        return True

    def keep_copies(self, pairs: list[tuple[str, str]]) -> None:
        """Keep a copy of each ``src`` at ``dst`` (paths relative to the base): a
        ``src`` that is missing is skipped, a ``dst`` already there is left as it
        is (see ``generations``). The base copies on the server (fsspec's ``copy``)."""
        for src, dst in pairs:
            if self.fs.exists(self.path(dst)):
                continue
            with contextlib.suppress(FileNotFoundError):
                self.fs.copy(self.path(src), self.path(dst))

    def move_many(self, pairs: list[tuple[str, str]]) -> None:
        """Move each ``src`` to ``dst``, replacing it (a rename where the backend has one)."""
        for src, dst in pairs:
            self.fs.makedirs(posixpath.dirname(self.path(dst)), exist_ok=True)
            self.fs.mv(self.path(src), self.path(dst))
        self.prune_dirs([src for src, _ in pairs])

    def remove(self, rel: str) -> None:
        """Remove ``rel`` if it is there."""
        with contextlib.suppress(FileNotFoundError, OSError):
            self.fs.rm_file(self.path(rel))

    def remove_many(self, rels: list[str]) -> None:
        """Remove each of ``rels`` that is there; folders are left as they are."""
        for rel in rels:
            self.remove(rel)

    def digests(self, rels: list[str]) -> dict[str, str | None]:
        """The sha256 of each file at the destination (None where missing)."""
        out: dict[str, str | None] = {}
        for rel in rels:
            data = self.read(rel)
            out[rel] = hashlib.sha256(data).hexdigest() if data is not None else None
        return out

    def listing(self, roots: list[str]) -> dict[str, Entry]:
        """Every file below each of ``roots`` (``""``: the files directly in the
        base) with its size, mtime and mode: one listing, a sync's quick check."""
        out: dict[str, Entry] = {}
        prefix = self.base.rstrip("/") + "/"
        for root in roots:
            try:
                found = self.fs.find(self.path(root) if root else self.base,
                                     detail=True, maxdepth=None if root else 1)
            except (FileNotFoundError, OSError):
                continue
            for p, info in found.items():
                p = "/" + p.lstrip("/") if self.base.startswith("/") else p
                if info.get("type") == "directory" or not p.startswith(prefix):
                    continue
                rel = p[len(prefix):]
                if in_roots(rel, [root]):
                    out[rel] = _entry(info, self.has_modes)
        return out

    def survey(self, records: list[str], roots: list[str], digests: list[str],
               expected: int = 0, folders: Iterable[str] = ()) -> Survey:
        """The ``records`` (read), a ``listing`` of ``roots`` and the ``digests`` of
        ``digests`` (those the listing shows): everything a plan reads, in one
        look where the backend can (ssh: one command, or SFTP requests all at
        once). ``expected``: about how many files the destination holds (the
        build's), for a backend that reads a large one another way; ``folders``:
        folders below the roots likely there (the build's), for a backend that
        can read them all at once rather than find them a depth at a time."""
        listing = self.listing(roots)
        return Survey({rel: self.read(rel) for rel in records}, listing,
                      self.digests([rel for rel in digests if rel in listing]))

    def run(self, command: str, timeout: float | None = None) -> tuple[int, str]:
        """Run ``command`` at the destination: exit status and output (124 when it
        ran past ``timeout`` seconds)."""
        raise SyncError("post-commands run only on ssh destinations")

    def close(self) -> None:
        """Let go of the connection, if any."""


def _entry(info: Mapping[str, Any], has_modes: bool) -> Entry:
    """The ``Entry`` of an fsspec ``info`` dict."""
    mtime = next((info[k] for k in ("mtime", "LastModified", "last_modified", "created")
                  if info.get(k) is not None), "")
    etag = info.get("ETag") or info.get("etag")
    if etag:  # an object store's mtime has one-second steps; its ETag changes with the content
        mtime = f"{mtime} {str(etag).strip(chr(34))}"
    perm = info.get("permissions", info.get("mode"))
    mode = int(perm) & 0o7777 if has_modes and isinstance(perm, int) else None
    return Entry(int(info.get("size") or 0), str(mtime), mode)
