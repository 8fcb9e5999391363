"""``sftp://`` (or ``ssh://``) destinations through ``sshfs`` (asyncssh), host
keys verified against a known_hosts file. One connection per host per
process, reused by every target and instance that lands on it and by
``deploy.postcmd`` (``connect``). A plan reads the host in one look
(``survey``): the manifest, the pending record and a listing of every folder
involved, temporary files included, over SFTP all at once for a host of few
files, where no process need start on the host; with one command (one
``find -printf``, with ``--checksum`` the digests too) when its records say
it holds ``COMMAND_SURVEY_FROM`` files or more. Everything else goes over the SFTP
channel already open. Puts go as pipelined SFTP writes (``sshwrites``), or, from
``TAR_THRESHOLD`` files on (unless ``deploy.ssh.tar`` is false), as one tar
stream (``sshtar``) unpacked to the temporary names, renamed in by one perl process in
the same command (SFTP renames on a host without perl). The stream is sent
gzipped while the system's tar makes it, and the host renames the files in
only when a random token follows the archive, sent once that tar succeeded. A
survey by command keeps its shell waiting for one more command line, so that
the put that follows it starts no second shell on the host. A put sets each
file's mtime to one second before the host's clock at the put, so that the
next quick check knows it without a listing and any later edit on the host
moves it. ``deploy.ssh.tar: false`` (hosts without tar and GNU find) runs no
command at all. Settings come from ``deploy.ssh`` (user, port, key,
known_hosts, timeout, tar).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import shlex
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ...errors import SyncError
from ...sshlib import ssh_filesystem
from ..scan import LocalFile
from . import sftpops as sftp
from .base import (
    Destination,
    Entry,
    Location,
    Survey,
    in_roots,
    register,
)
from .sshtar import TarPuts
from .sshwire import (
    OneChannel,
    connect,
    finds,
    folders_of,
    parse_listing,
    parse_sums,
    release,
    split_survey,
    survey_script,
)

TAR_THRESHOLD = 50  # puts to one ssh host from which one tar stream beats SFTP round trips
#: files a host is expected to hold from which one command reads it faster than an
#: SFTP walk (a command starts a shell on the host, with its rc files: 10-200 ms)
COMMAND_SURVEY_FROM = 1000


class SSHDestination(TarPuts, Destination):
    """``sftp://`` through sshfs (asyncssh): host keys verified, puts pipelined."""

    has_modes = True
    runs_commands = True
    tar = True  # deploy.ssh.tar: false for hosts without tar and find
    by_command = False  # whether the survey read the host with a command (see survey)
    tar_failed = False  # whether a put's tar failed here (see put_recorded)

    def warm(self, expected: int, digests: bool) -> None:
        """Where the survey will be a command (``expected`` files from
        ``COMMAND_SURVEY_FROM`` on, or ``digests``): start the host's shell now,
        waiting for that command's line (see ``_waiting_shell``), so that its start
        (the user's login shell and its rc files, the slowest part of a survey)
        is done while the build is scanned."""
        if self.tar and (digests or expected >= COMMAND_SURVEY_FROM):
            self._sync(self._waiting_shell)

    def survey(self, records: list[str], roots: list[str], digests: list[str],
               expected: int = 0, folders: Iterable[str] = ()) -> Survey:
        """Everything a plan reads. A host of a build of fewer than
        ``COMMAND_SURVEY_FROM`` files is read over SFTP alone, the records and
        every folder of the listing at once: no process starts on the host. A
        larger one, or one asked for digests, is read with one command: the
        records, the listing, the host's clock and the digests, each part after
        a random marker that no file holds (a no-op of a large host is that one
        command, no SFTP request); so is any host whose shell was started ahead
        (``warm``)."""
        self.by_command = self.tar and (bool(digests) or expected >= COMMAND_SURVEY_FROM
                                        or self.waiting)
        if not self.by_command:
            return self._sync(lambda: self._survey_sftp(records, roots, digests, folders))
        mark, command = survey_script(self.base, records, roots, bool(digests))
        if digests:  # their paths go on its stdin
            result = self.fs.execute(command, check=False, encoding=None,
                                     input="\0".join(digests).encode())
            out = bytes(result.stdout or b"")
        else:
            out = self._sync(lambda: self._survey_kept(command))
        read, listing, self.clock, summed, self.perl = split_survey(out, mark, records)
        self.folders = folders_of(listing)
        return Survey(read, listing,
                      {r: summed.get(r) for r in digests if r in listing})

    async def _read_all(self, rels: list[str]) -> dict[str, bytes | None]:
        """The content of each of ``rels`` (None where there is none), all at once."""
        found = await asyncio.gather(*(sftp.read(self.fs._pool, self.path(r)) for r in rels))
        return dict(zip(rels, found, strict=True))

    async def _survey_sftp(self, records: list[str], roots: list[str], digests: list[str],
                           folders: Iterable[str]) -> Survey:
        """The records and the listing over SFTP, all at once (``folders`` read with
        the roots); then the digests (read back) of those the listing shows."""
        pool = self.fs._pool
        listing, got = await asyncio.gather(self._walk(roots, folders), self._read_all(records))
        self.folders = folders_of(listing)
        shown = [r for r in digests if r in listing]
        sums = await asyncio.gather(*(sftp.sha256(pool, self.path(r)) for r in shown))
        return Survey(got, listing, dict(zip(shown, sums, strict=True)))

    def listing(self, roots: list[str]) -> dict[str, Entry]:
        """The files below ``roots``, read as the survey read the host: one
        ``find -printf`` on it, or a walk over SFTP (hosts with few files, and
        hosts without GNU find: ``deploy.ssh.tar`` false)."""
        if not roots:
            return {}
        if not self.by_command:
            return self._sync(lambda: self._walk(roots))
        _, text = self._run_raw(f"cd {shlex.quote(self.base)} 2>/dev/null && "
                                f"{{ {finds(roots)}; }} 2>/dev/null; true")
        return parse_listing(text)

    async def _walk(self, roots: list[str], folders: Iterable[str] = ()) -> dict[str, Entry]:
        """Every file below ``roots`` over SFTP: the folders of one depth at once,
        the ``folders`` below a root with the roots (those not there read as empty)."""
        import stat

        out: dict[str, Entry] = {}
        level = [(r, r != "") for r in roots]
        level += [(f, True) for f in sorted(set(folders))
                  if f not in roots and any(r and f.startswith(r + "/") for r in roots)]
        read = {f for f, _ in level}
        while level:
            found = await asyncio.gather(*(
                sftp.scan(self.fs._pool, self.path(r) if r else self.base) for r, _ in level))
            nxt = []
            for (folder, deep), names in zip(level, found, strict=True):
                for name, attrs in names:
                    rel = posixpath.join(folder, name) if folder else name
                    perm = attrs.permissions or 0
                    if stat.S_ISDIR(perm) and deep:
                        if rel not in read:
                            read.add(rel)
                            nxt.append((rel, True))
                    elif stat.S_ISREG(perm) and in_roots(rel, roots):
                        out[rel] = Entry(int(attrs.size or 0), str(attrs.mtime), perm & 0o7777)
            level = nxt
        return out

    def put_many(self, files: list[LocalFile],
                 progress: Callable[[int], None]) -> dict[str, Entry]:
        """Many files: one tar stream unpacked to the temporary names, then SFTP
        renames; few files, or no tar on the host: one SFTP put each. Either way
        each file's size, mtime (as set) and mode are known without a listing."""
        stamp = self._put_tar(files) if self._tar_for(files) else None
        if stamp is None:
            return self._put_sftp(files, progress)
        progress(sum(f.size for f in files))
        return _entries(files, stamp)

    def put_recorded(self, files: list[LocalFile], progress: Callable[[int], None],
                     first: tuple[str, bytes],
                     last: tuple[str, Callable[[dict[str, Entry]], bytes]],
                     ) -> dict[str, Entry] | None:
        """Many files to a host with perl whose clock the survey read: both records
        go in the tar with them, and the host's perl renames ``first`` in before
        the files, ``last`` after them, then removes ``first`` (each file's mtime,
        which the tar sets, is known before). Else None; also when the tar put
        failed, and the puts that follow go over SFTP."""
        if not (self._tar_for(files) and self.perl and self.clock is not None):
            return None
        after = _entries(files, str(self.clock - 1))
        stamp = self._put_tar(files, (first, (last[0], last[1](after))))
        if stamp is None:
            self.tar_failed = True
            return None
        progress(sum(f.size for f in files))
        return after

    def _tar_for(self, files: list[LocalFile]) -> bool:
        """Whether ``files`` go to the host as one tar."""
        return self.tar and not self.tar_failed and len(files) >= TAR_THRESHOLD

    def keep_copies(self, pairs: list[tuple[str, str]]) -> None:
        """SFTP hard links (``hardlink@openssh.com``), all at once: no copy, the mode kept."""
        if pairs:
            self._sync(lambda: sftp.link_all(self.fs._pool, self.label,
                                             [(self.path(a), self.path(b)) for a, b in pairs]))

    def move_many(self, pairs: list[tuple[str, str]]) -> None:
        """SFTP renames that replace (``posix-rename@openssh.com``), all at once."""
        if pairs:
            self._sync(lambda: sftp.rename_all(self.fs._pool,
                                               [(self.path(a), self.path(b)) for a, b in pairs]))
            self.prune_dirs([src for src, _ in pairs])

    def chmod(self, path: str, mode: int) -> None:
        async def run() -> None:
            async with self.fs._pool.get() as channel:
                await channel.chmod(path, mode)

        self._sync(run)

    def remove_many(self, rels: list[str]) -> None:
        async def one(rel: str) -> None:
            async with self.fs._pool.get() as channel:
                with contextlib.suppress(Exception):
                    await channel.remove(self.path(rel))

        async def run() -> None:
            await asyncio.gather(*(one(r) for r in rels))

        if rels:
            self._sync(run)

    def delete_many(self, rels: list[str]) -> None:
        self.remove_many(rels)
        self.prune_dirs(rels)

    def prune_dirs(self, rels: list[str]) -> None:
        """SFTP ``rmdir`` of each folder the deletes may have emptied, the deepest
        first (a folder that is not empty stays)."""
        dirs = set()
        for rel in rels:
            parent = posixpath.dirname(self.path(rel))
            while parent.startswith(self.base + "/"):
                dirs.add(parent)
                parent = posixpath.dirname(parent)

        async def rmdir(d: str) -> None:
            async with self.fs._pool.get() as channel:
                with contextlib.suppress(Exception):
                    await channel.rmdir(d)

        async def run() -> None:
            for depth in sorted({d.count("/") for d in dirs}, reverse=True):
                await asyncio.gather(*(rmdir(d) for d in dirs if d.count("/") == depth))

        if dirs:
            self._sync(run)

    def digests(self, rels: list[str]) -> dict[str, str | None]:
        """Few files: read back over SFTP, all at once; many: one ``sha256sum``."""
        if self.tar and len(rels) >= TAR_THRESHOLD:
            result = self.fs.execute(f"cd {shlex.quote(self.base)} && xargs -0 -r sha256sum -- "
                                     "2>/dev/null; true", check=False, input="\0".join(rels))
            found = parse_sums(str(result.stdout or ""))
            return {r: found.get(r) for r in rels}

        async def run() -> list[str | None]:
            pool = self.fs._pool
            return list(await asyncio.gather(*(sftp.sha256(pool, self.path(r)) for r in rels)))

        return dict(zip(rels, self._sync(run), strict=True))

    def close(self) -> None:
        """End the survey's kept shell, and give the connection back (kept open a
        while for the host's next target or instance; see ``sshwire.release``)."""
        if self._kept is not None:
            with contextlib.suppress(Exception):
                self._sync(self._end_kept)
        release(self.fs)

    def _run_raw(self, command: str) -> tuple[int, str]:
        result = self.fs.execute(command, check=False)
        return int(result.exit_status or 0), str(result.stdout or "")

    def run(self, command: str, timeout: float | None = None) -> tuple[int, str]:
        from asyncssh import TimeoutError as SSHTimeout

        try:
            result = self.fs.execute(command, check=False, timeout=timeout)
        except SSHTimeout as exc:
            text = str(exc.stdout or "") + str(exc.stderr or "")
            return 124, text + f"timed out after {timeout:g} s\n"
        text = str(result.stdout or "") + str(result.stderr or "")
        return int(result.exit_status or 0), text


def _known_hosts(ssh: Mapping[str, Any]) -> str:
    path = os.path.expanduser(str(ssh.get("known_hosts") or "~/.ssh/known_hosts"))
    if not os.path.isfile(path):
        raise SyncError(
            f"no known_hosts file at {path}: facsimile verifies host keys; add the host "
            "with ssh-keyscan, or name a file in deploy.ssh.known_hosts"
        )
    return str(path)


@register("sftp", "ssh")
def open_ssh(where: Location, deploy: Mapping[str, Any], label: str) -> Destination:
    """An ``sftp://[user@]host[:port]/path`` destination."""
    try:
        SSHFileSystem = ssh_filesystem()
    except ImportError as exc:
        raise SyncError("sftp destinations need the sshfs package: "
                        "pip install 'facsimile[ssh]'") from exc
    parts = where.parts
    ssh = dict(deploy.get("ssh") or {})
    kwargs: dict[str, Any] = {
        "port": parts.port or int(ssh.get("port", 22)),
        "username": parts.username or ssh.get("user") or os.environ.get("USER", "root"),
        "known_hosts": _known_hosts(ssh),
        "timeout": float(ssh.get("timeout", 20)),
        "skip_instance_cache": True,
        "pool_type": OneChannel,
    }
    if ssh.get("key"):
        kwargs["client_keys"] = [os.path.expanduser(str(ssh["key"]))]
    kwargs.update(where.options)
    # the label is target/host: every target of a host shares its connection
    fs = connect(SSHFileSystem, str(parts.hostname), kwargs, label.rpartition("/")[2],
                 ahead=where.ahead)
    dest = SSHDestination(fs, where.path or ".", label)
    dest.tar = bool(ssh.get("tar", True))
    return dest


def _entries(files: list[LocalFile], stamp: str) -> dict[str, Entry]:
    """What a listing shows of ``files`` after a tar put set each one's mtime to
    ``stamp``: one Entry per size and mode (they are frozen)."""
    seen: dict[tuple[int, int], Entry] = {}
    return {f.rel: seen.get((f.size, f.mode)) or seen.setdefault(
        (f.size, f.mode), Entry(f.size, stamp, f.mode)) for f in files}
