"""The SFTP requests an ssh destination makes, as coroutines on sshfs's pool of
SFTP channels (``pool``) and absolute paths: a file read whole (``read``,
``sha256``), a folder's entries (``scan``), folders made with their missing
parents (``mkdirs``), a file opened as new (``open_new``), and what is left on
a host whose write failed (``full``), and the links and renames of generations
(``link_all``, ``rename_all``). Requests that may go at once are sent at once
on the one channel (``writes``: asyncssh's handler and handle, under its
``SFTPClientFile``), the server taking them in order.
"""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
from collections.abc import Awaitable, Iterable
from typing import Any

from ...errors import SyncError

#: a read's first request: most records are whole in it (one round trip after the open)
FIRST_READ = 1 << 18
_CLOSING: set[asyncio.Future[Any]] = set()  # closes sent and not waited for


async def read(pool: Any, path: str) -> bytes | None:
    """The content of ``path``, None where there is none (or it cannot be read):
    the open, then one read (more only for a file larger than ``FIRST_READ``);
    the close is sent and not waited for (nothing depends on it)."""
    from asyncssh import SFTPEOFError, SFTPError

    async with pool.get() as channel:
        try:
            fh = await channel.open(path, "rb")
        except SFTPError:
            return None
        handler, handle = fh._handler, fh._handle  # asyncssh's SFTPClientFile: see the module
        step = min(FIRST_READ, int(handler.limits.max_read_len or FIRST_READ))
        data: bytes | None = None
        try:  # two reads at once: a file shorter than one is read with its end
            first, second = await asyncio.gather(handler.read(handle, 0, step),
                                                 handler.read(handle, step, step),
                                                 return_exceptions=True)
            if isinstance(first, SFTPEOFError):
                data = b""
            elif isinstance(second, SFTPEOFError) and not isinstance(first, BaseException):
                data = bytes(first[0])
            if data is None:
                data = bytes(await fh.read(-1, 0))
        except SFTPError:
            data = None
        _send(fh.close())
        return data


def _send(close: Awaitable[Any]) -> None:
    """Send a close and do not wait for its answer (nothing depends on it)."""
    task = asyncio.ensure_future(close)
    _CLOSING.add(task)
    task.add_done_callback(_closed)


def _closed(task: asyncio.Future[Any]) -> None:
    _CLOSING.discard(task)
    if not task.cancelled():
        task.exception()  # a failed close is of no consequence: retrieved, not raised


async def sha256(pool: Any, path: str) -> str | None:
    """The sha256 of ``path``, read back; None if it is gone."""
    data = await read(pool, path)
    return None if data is None else hashlib.sha256(data).hexdigest()


async def scan(pool: Any, folder: str) -> list[tuple[str, Any]]:
    """The names and attributes in one folder (none if it is not there): the
    opendir, then two readdirs at a time (a folder of up to a server's batch,
    100 names for OpenSSH, answered by the second with its end); the close sent
    and not waited for."""
    from asyncssh import SFTPEOFError, SFTPError

    async with pool.get() as channel:
        handler = channel._handler  # asyncssh's SFTPClientHandler: see the module
        try:
            handle = await handler.opendir(channel.compose_path(folder))
        except SFTPError:
            return []
        names: list[Any] = []
        try:
            done = False
            while not done:
                for got in await asyncio.gather(handler.readdir(handle),
                                                handler.readdir(handle),
                                                return_exceptions=True):
                    if isinstance(got, SFTPEOFError):
                        done = True
                    elif isinstance(got, BaseException):
                        raise got
                    else:
                        names.extend(got[0])
                        done = done or bool(got[1])
        except SFTPError:
            return []
        finally:
            _send(handler.close(handle))
        return [(channel.decode(e.filename), e.attrs) for e in names
                if e.filename not in (b".", b"..")]


async def mkdirs(pool: Any, dirs: Iterable[str]) -> None:
    """Make each folder of ``dirs`` and its missing parents: every one of them
    asked at once, the shallowest first, on one channel, whose server takes its
    requests in order (one round trip); a folder there already just fails its
    request. One still missing after that (a parent could not be made) is made
    again a parent at a time, or explained."""
    from asyncssh import SFTPError, SFTPNoSuchFile

    wanted = set(dirs)
    every = set()
    for d in wanted:
        while d not in ("", "/") and d not in every:
            every.add(d)
            d = posixpath.dirname(d)
    order = sorted(every, key=lambda d: (d.count("/"), d))

    async with pool.get() as channel:
        async def first(d: str) -> str | None:
            try:
                await channel.mkdir(d)
            except SFTPNoSuchFile:
                return d
            except SFTPError:
                pass  # there already (a file in its place fails the put)
            return None

        failed = await asyncio.gather(*(first(d) for d in order))
    again = [d for d in failed if d is not None and d in wanted]
    if again:
        await _mkdirs_slowly(pool, again)


async def _mkdirs_slowly(pool: Any, dirs: Iterable[str]) -> None:
    """``mkdirs`` a parent at a time: each folder made after its parent."""
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


def writes(fh: Any, data: bytes, offset: int = 0) -> list[Awaitable[Any]]:
    """The write requests of ``data`` to the open file ``fh``, each sent as soon
    as it is awaited (asyncssh's own ``write`` makes tasks of them, sent in no
    set order): given to one ``gather`` with the requests to follow (a setstat,
    the close), they reach the server, which takes them in order, in that order."""
    handler, handle = fh._handler, fh._handle  # asyncssh's SFTPClientFile: see the module
    step = int(handler.limits.max_write_len or 1 << 15)
    return [handler.write(handle, offset + at, data[at:at + step])
            for at in range(0, len(data), step)]


async def at_once(*requests: Awaitable[Any]) -> list[Any]:
    """The answers to ``requests``, sent at once in the order given; every one
    answered before the first failure, if any, is raised."""
    got = await asyncio.gather(*requests, return_exceptions=True)
    for answer in got:
        if isinstance(answer, BaseException):
            raise answer
    return got


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
