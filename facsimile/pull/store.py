"""The place bundles are published to and pulled from: any URL a sync destination
takes (``file://`` or a plain path, ``sftp://`` through sshfs, ``s3://`` through
s3fs), opened with :func:`facsimile.sync.destinations.open_destination` so
that credentials, known hosts and URL checks are sync's.

Every object is written whole under its final name in one step: on S3 one PUT
(atomic per object), on a folder a temporary file beside it renamed in
(:func:`facsimile.atomic.write_atomic`, readable by all: no secret is ever in
the clear there), over SFTP a temporary name then a rename. A read that finds
nothing is ``None``; any other failure (a server gone, a connection dropped) is
one line naming the URL.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from ..errors import SyncError


def as_url(where: str) -> str:
    """``where`` as a URL: a plain path becomes ``file://`` (made absolute)."""
    if "://" in where:
        return where
    import os

    return "file://" + os.path.abspath(where)


def reason(exc: BaseException) -> str:
    """One line about why a call to the store failed."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Store:
    """A bundle store at ``url``: read, write, list and delete its objects."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None,
                 label: str = "store") -> None:
        from ..sync.destinations import open_destination
        from ..sync.urls import shown_url

        self.url = as_url(url).rstrip("/")
        self.shown = shown_url(self.url)
        scheme = urlsplit(self.url).scheme
        self.local = scheme == "file"
        #: s3fs asks for an object's size (a HEAD) before it reads it unless told to
        #: read it in one part: a read is then one GET
        self._read_kw: dict[str, Any] = {"max_concurrency": 1} if scheme == "s3" else {}
        self.dest = open_destination(self.url, dict(options or {}), label)
        self.fs = self.dest.fs

    def close(self) -> None:
        """Let go of the connection, if any."""
        self.dest.close()

    def where(self, rel: str) -> str:
        """``rel`` as messages name it: the store's URL and the path."""
        return f"{self.shown}/{rel}"

    def read(self, rel: str) -> bytes | None:
        """The bytes of ``rel``; None when there is none (one GET on S3)."""
        try:
            return bytes(self.fs.cat_file(self.dest.path(rel), **self._read_kw))
        except FileNotFoundError:
            return None
        except Exception as exc:  # a network that drops, a server gone
            raise SyncError(f"cannot read {self.where(rel)}: {reason(exc)}") from None

    def write(self, rel: str, data: bytes) -> None:
        """Write ``rel`` whole in one step (see the module's docstring)."""
        try:
            if self.local:
                from ..atomic import write_atomic

                write_atomic(self.dest.path(rel), data, 0o644)
            else:
                self.dest.write_bytes(rel, data)
        except Exception as exc:
            raise SyncError(f"cannot write {self.where(rel)}: {reason(exc)}") from None

    def find(self, prefix: str) -> list[str]:
        """Every object below the folder ``prefix`` (relative paths, sorted);
        temporary files of a write under way are left out."""
        from ..sync.destinations.base import is_tmp_name

        self.fs.invalidate_cache()
        base = self.dest.base.rstrip("/") + "/"
        try:
            found = self.fs.find(self.dest.path(prefix))
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise SyncError(f"cannot list {self.where(prefix)}: {reason(exc)}") from None
        below = base + prefix.strip("/") + "/"  # not prod.ch1/ for prod
        out = []
        for p in found:
            p = "/" + p.lstrip("/") if base.startswith("/") else p
            if p.startswith(below) and not is_tmp_name(posixpath.basename(p)):
                out.append(p[len(base):])
        return sorted(out)

    def folders(self) -> list[str]:
        """The names of the folders at the top of the store."""
        self.fs.invalidate_cache()
        try:
            found = self.fs.ls(self.dest.base, detail=True)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise SyncError(f"cannot list {self.shown}: {reason(exc)}") from None
        return sorted(posixpath.basename(str(i["name"]).rstrip("/")) for i in found
                      if i.get("type") == "directory")

    def delete(self, rels: list[str]) -> None:
        """Remove ``rels`` (missing ones are no error)."""
        if not rels:
            return
        try:
            self.dest.delete_many(rels)
        except Exception as exc:
            raise SyncError(f"cannot delete from {self.shown}: {reason(exc)}") from None

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock (sync's destination lock, ``.facsimile/lock``):
        one publish at a time changes manifests and collects blobs."""
        from ..sync import lock

        with lock.hold(self.dest):
            yield


def store_options(endpoint_url: str | None = None, ssh_key: str | None = None,
                  known_hosts: str | None = None,
                  deploy: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The options a store is opened with: the instance's ``deploy`` settings
    (``s3``, ``ssh``, ``storage_options``) where there are any, then those given."""
    deploy = deploy or {}
    out: dict[str, Any] = {k: dict(deploy[k]) for k in ("s3", "ssh", "storage_options")
                           if isinstance(deploy.get(k), Mapping)}
    if endpoint_url:
        out.setdefault("s3", {})["endpoint_url"] = endpoint_url
    if ssh_key:
        out.setdefault("ssh", {})["key"] = ssh_key
    if known_hosts:
        out.setdefault("ssh", {})["known_hosts"] = known_hosts
    return out
