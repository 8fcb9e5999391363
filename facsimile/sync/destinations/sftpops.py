"""The SFTP requests an ssh destination makes, as coroutines on sshfs's pool of
SFTP channels (``pool``) and absolute paths: a file read whole (``read``,
``sha256``), a folder's entries (``scan``), folders made with their missing
parents (``mkdirs``), a file opened as new (``open_new``), and what is left on
a host whose write failed (``full``), and the links and renames of generations
(``link_all``, ``rename_all``).
"""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
from collections.abc import Iterable
from typing import Any

from ...errors import SyncError


async def read(pool: Any, path: str) -> bytes | None:
    """The content of ``path``, None where there is none (or it cannot be read)."""
    from asyncssh import SFTPError

    async with pool.get() as channel:
        try:
            async with channel.open(path, "rb") as fh:
                return bytes(await fh.read())
        except SFTPError:
            return None


async def sha256(pool: Any, path: str) -> str | None:
    """The sha256 of ``path``, read back; None if it is gone."""
    data = await read(pool, path)
    return None if data is None else hashlib.sha256(data).hexdigest()


async def scan(pool: Any, folder: str) -> list[tuple[str, Any]]:
    """The names and attributes in one folder (none if it is not there)."""
    from asyncssh import SFTPError

    async with pool.get() as channel:
        try:
            return [(str(e.filename), e.attrs) async for e in channel.scandir(folder)
                    if e.filename not in (".", "..")]
        except SFTPError:
            return []


async def mkdirs(pool: Any, dirs: Iterable[str]) -> None:
    """Make each folder of ``dirs`` and its missing parents, all at once: one
    request for a folder that is there already."""
    from asyncssh import SFTPError, SFTPNoSuchFile

    made: dict[str, asyncio.Future[None]] = {}

    async def make(d: str) -> None:
        for attempt in (1, 2):
            async with pool.get() as channel:
                try:
                    await channel.mkdir(d)
                    return
                except SFTPNoSuchFile:
                    if attempt == 2:
                        await _not_a_folder(channel, d)
                        raise
                except SFTPError:
                    return  # there already (a file in its place fails the put)
            parent = posixpath.dirname(d)
            if parent in ("", "/", d):
                return
            await ensure(parent)

    def ensure(d: str) -> asyncio.Future[None]:
        if d not in made:
            made[d] = asyncio.ensure_future(make(d))
        return made[d]

    await asyncio.gather(*(ensure(d) for d in set(dirs)))


async def _not_a_folder(channel: Any, d: str) -> None:
    """Raise naming the first parent of ``d`` that is a file where a folder is
    needed (a failed folder, explained: this runs only after a ``mkdir`` failed)."""
    up = posixpath.dirname(d)
    while up not in ("", "/") and not await channel.exists(up):
        up = posixpath.dirname(up)
    if up not in ("", "/") and not await channel.isdir(up):
        raise SyncError(f"{up} is not a directory: a folder is needed there")


async def open_new(pool: Any, channel: Any, path: str, mode: int, fresh: bool) -> Any:
    """Open ``path`` for writing as a new file (``FXF_EXCL``) with at most ``mode``
    (the umask only takes bits away), its folder made if it is missing;
    ``fresh``: a file there already is one a killed sync left (removed first),
    else opening fails."""
    from asyncssh import SFTPAttrs, SFTPError, SFTPNoSuchFile

    attrs = SFTPAttrs(permissions=mode & 0o777)
    try:
        return await channel.open(path, "xb", attrs)
    except SFTPNoSuchFile:
        await mkdirs(pool, [posixpath.dirname(path)])
    except SFTPError:
        if not fresh:
            raise
        await channel.remove(path)
    return await channel.open(path, "xb", attrs)


async def full(channel: Any, path: str) -> str | None:
    """What is left on the file system of ``path`` (``statvfs@openssh.com``)
    when it is full (under 1 MB or no inode), to explain a write's plain SFTP
    "Failure"; None when it is not full, or cannot be told."""
    from ..apply import human_size  # (sync.apply imports the destinations)

    try:
        vfs = await channel.statvfs(posixpath.dirname(path))
    except Exception:
        return None
    if vfs.favail == 0:
        return "no inode left"
    free = int(vfs.bavail) * int(vfs.frsize or vfs.bsize)
    return f"{human_size(free)} free" if free < 1 << 20 else None


async def link_all(pool: Any, label: str, pairs: list[tuple[str, str]]) -> None:
    """Hard-link each ``src`` to ``dst`` (their folders made first), all at once: a
    missing ``src`` is skipped, a ``dst`` already there kept."""
    from asyncssh import SFTPError

    async def one(src: str, dst: str) -> None:
        async with pool.get() as channel:
            try:
                await channel.link(src, dst)
            except SFTPError as exc:
                if await channel.exists(dst) or not await channel.exists(src):
                    return
                raise SyncError(f"{label}: cannot keep a copy of {src}: {exc.reason}") from None

    await mkdirs(pool, {posixpath.dirname(d) for _, d in pairs})
    await asyncio.gather(*(one(s, d) for s, d in pairs))


async def rename_all(pool: Any, pairs: list[tuple[str, str]]) -> None:
    """Rename each ``src`` to ``dst``, replacing it (their folders made first), all at once."""
    async def one(src: str, dst: str) -> None:
        async with pool.get() as channel:
            await channel.posix_rename(src, dst)

    await mkdirs(pool, {posixpath.dirname(d) for _, d in pairs})
    await asyncio.gather(*(one(s, d) for s, d in pairs))
