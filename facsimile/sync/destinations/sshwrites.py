"""The SFTP writes of an ssh destination (``SFTPWrites``, a part of
``SSHDestination``): a file put to its temporary name with its content, mode,
mtime and close sent at once, then renamed in (``write_bytes``, one put per
file of ``put_many`` below the tar threshold); a file created exclusively
(``create_exclusive``, the lock); a file read (``read``).
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
from collections.abc import Callable
from typing import Any

from ...errors import SyncError
from ..scan import LocalFile
from . import sftpops as sftp
from .base import Entry, own_tmp_name, tmp_name

BIG = 1 << 22  # a file written in pieces of this size, one after the other, from this size on


class SFTPWrites:
    """The writes over SFTP of ``SSHDestination`` (its ``fs``, ``path`` and survey)."""

    fs: Any
    path: Callable[[str], str]  # (Destination's: the host's path of a relative one)
    clock: int | None = None  # the host's clock (seconds) when the survey read it
    folders: frozenset[str] = frozenset()  # the folders (relative) the survey saw files in

    def _sync(self, make: Callable[[], Any]) -> Any:
        """Run the coroutine ``make()`` on sshfs's event loop."""
        from fsspec.asyn import sync

        return sync(self.fs.loop, make)

    def _put_sftp(self, files: list[LocalFile],
                  progress: Callable[[int], None]) -> dict[str, Entry]:
        """One SFTP put per file, 16 at a time; first the folders the survey did
        not see, all in one round (a folder missing all the same is made when its
        first file fails to open)."""
        out: dict[str, Entry] = {}
        missing: set[str] = set()
        for f in files:
            d = posixpath.dirname(f.rel)
            while d and d not in self.folders:
                missing.add(self.path(d))
                d = posixpath.dirname(d)

        async def one(f: LocalFile) -> None:
            with open(f.path, "rb") as src:
                out[f.rel] = await self._write_async(f.rel, f.mode, src.read)
            progress(f.size)

        async def run() -> None:
            if missing:
                await sftp.mkdirs(self.fs._pool, missing)
            sem = asyncio.Semaphore(16)

            async def guarded(f: LocalFile) -> None:
                async with sem:
                    await one(f)

            # every put runs to its end (a failed one removes its temporary
            # file) before the first failure is raised
            failed = [r for r in await asyncio.gather(*(guarded(f) for f in files),
                                                      return_exceptions=True)
                      if isinstance(r, BaseException)]
            if failed:
                raise failed[0]

        self._sync(run)
        return out

    async def _write_async(self, rel: str, mode: int, read: Callable[[int], bytes]) -> Entry:
        """Write the temporary file, made with at most ``mode`` before any content
        goes in; set its mode and its mtime (one second before the host's clock),
        rename it in. What a listing shows of it."""
        from asyncssh import SFTPAttrs, SFTPFailure

        final = self.path(rel)
        tmp = tmp_name(final)
        data = read(BIG)
        more = read(BIG) if len(data) == BIG else b""
        async with self.fs._pool.get() as channel:
            fh = await sftp.open_new(self.fs._pool, channel, tmp, mode, fresh=True)
            try:
                # requests on one handle are done in order, so they go at once (one
                # round trip): the content, the host's clock read after it when it
                # is not known yet, the mode and mtime, the close; then the rename
                size = len(data)
                if more:  # a large file: a piece at a time
                    await fh.write(data, 0)
                    while more:
                        await fh.write(more, size)
                        size += len(more)
                        more = read(BIG)
                    data = b""
                sent = sftp.writes(fh, data)
                if self.clock is None:  # read over SFTP: the first file written tells it
                    attrs = (await sftp.at_once(*sent, fh.stat()))[-1]
                    self.clock = int(attrs.mtime or 1)
                    sent = []
                clock = self.clock
                await sftp.at_once(
                    *sent,
                    fh.setstat(SFTPAttrs(permissions=mode, atime=clock - 1, mtime=clock - 1)),
                    fh.close())
            except BaseException as exc:  # (a full disk): no partial file left to fill it
                with contextlib.suppress(Exception):
                    await fh.close()
                full = await sftp.full(channel, final) if isinstance(exc, SFTPFailure) else None
                with contextlib.suppress(Exception):
                    await channel.remove(tmp)
                if full:
                    raise SyncError(f"no space left on the host's disk ({full} at "
                                    f"{posixpath.dirname(final)}) writing {final}") from exc
                raise
            await channel.posix_rename(tmp, final)
        return Entry(size, str(clock - 1), mode)

    def read(self, rel: str) -> bytes | None:
        """The content of ``rel`` (None where there is none): the open, then one read."""
        return self._sync(lambda: sftp.read(self.fs._pool, self.path(rel)))

    def write_bytes(self, rel: str, data: bytes) -> None:
        import io

        self._sync(lambda: self._write_async(rel, 0o600, io.BytesIO(data).read))

    def create_exclusive(self, rel: str, data: bytes) -> bool:
        """Written whole to a temporary name (``FXF_EXCL``, 0600), then hard-linked
        to ``rel`` (``hardlink@openssh.com``), which the server refuses if ``rel``
        exists: never seen empty, even after a kill half way. A server without
        that extension gets ``rel`` itself opened with ``FXF_EXCL``."""
        from asyncssh import SFTPError, SFTPOpUnsupported

        final = self.path(rel)

        async def direct(channel: Any) -> bool:
            try:
                fh = await sftp.open_new(self.fs._pool, channel, final, 0o600, fresh=False)
            except SFTPError:
                if await channel.exists(final):
                    return False
                raise
            try:
                await fh.write(data)
            finally:
                await fh.close()
            return True

        async def go() -> bool:
            async with self.fs._pool.get() as channel:
                tmp = own_tmp_name(final)
                fh = await sftp.open_new(self.fs._pool, channel, tmp, 0o600, fresh=False)
                removed = False
                try:
                    try:  # in order, at once: the content, its mtime (the host's clock), the close
                        attrs = (await sftp.at_once(*sftp.writes(fh, data), fh.stat(),
                                                    fh.close()))[-2]
                        if self.clock is None and attrs.mtime:
                            self.clock = int(attrs.mtime)
                    finally:
                        await fh.close()
                    # the link, then the temporary name's remove, at once
                    linked, gone = await asyncio.gather(channel.link(tmp, final),
                                                        channel.remove(tmp),
                                                        return_exceptions=True)
                    removed = not isinstance(gone, BaseException)
                    if isinstance(linked, BaseException):
                        raise linked
                except SFTPOpUnsupported:
                    return await direct(channel)
                except SFTPError:
                    if await channel.exists(final):
                        return False
                    raise
                finally:
                    if not removed:
                        with contextlib.suppress(Exception):
                            await channel.remove(tmp)
            return True

        return bool(self._sync(go))

