"""``s3://`` destinations through ``s3fs``: an object put replaces it
atomically, so there are no temporary names; many puts go to s3fs as one
concurrent batch, many deletes as one request; there are no modes or folders.
Settings come from ``deploy.s3`` (key, secret, endpoint_url, region).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from ...errors import SyncError
from ..scan import LocalFile
from .base import Destination, Entry, Location, register


class S3Destination(Destination):
    """``s3://``: an object put is atomic; there are no modes or folders."""

    def put(self, f: LocalFile) -> None:
        self.fs.put_file(f.path, self.path(f.rel))

    def send(self, files: list[LocalFile], progress: Callable[[int], None]) -> None:
        """Concurrent puts (s3fs batches them); each object replaces atomically."""
        if len(files) < 2:
            super().send(files, progress)
            return
        self.fs.put([f.path for f in files], [self.path(f.rel) for f in files])
        for f in files:
            progress(f.size)

    def delete_many(self, rels: list[str]) -> None:
        if rels:
            self.fs.rm([self.path(r) for r in rels])

    def remove_many(self, rels: list[str]) -> None:
        if rels:  # one batched request; a key that is not there is no error
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm([self.path(r) for r in rels])

    def write_bytes(self, rel: str, data: bytes) -> None:
        self.fs.pipe_file(self.path(rel), data)

    def create_exclusive(self, rel: str, data: bytes) -> bool:
        """A conditional put (``If-None-Match: *``): S3 refuses it if the key exists."""
        try:
            self.fs.pipe_file(self.path(rel), data, mode="create")
        except FileExistsError:
            return False
        return True

    def read(self, rel: str) -> bytes | None:
        self.fs.invalidate_cache()
        return super().read(rel)

    def listing(self, roots: list[str]) -> dict[str, Entry]:
        self.fs.invalidate_cache()
        return super().listing(roots)


@register("s3")
def open_s3(where: Location, deploy: Mapping[str, Any], label: str) -> Destination:
    """An ``s3://bucket/prefix`` destination."""
    try:
        from s3fs import S3FileSystem
    except ImportError as exc:
        raise SyncError("s3 destinations need the s3fs package: "
                        "pip install 'facsimile[s3]'") from exc
    s3 = dict(deploy.get("s3") or {})
    kwargs: dict[str, Any] = {"skip_instance_cache": True}
    if s3.get("key"):
        kwargs["key"] = s3["key"]
    if s3.get("secret"):
        kwargs["secret"] = s3["secret"]
    client: dict[str, Any] = {}
    if s3.get("endpoint_url"):
        client["endpoint_url"] = s3["endpoint_url"]
    if s3.get("region"):
        client["region_name"] = s3["region"]
    if client:
        kwargs["client_kwargs"] = client
    kwargs.update(where.options)
    return S3Destination(S3FileSystem(**kwargs), f"{where.parts.netloc}{where.path}", label)
