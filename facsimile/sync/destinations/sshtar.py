"""The puts of many files to an ssh destination as one tar stream (``TarPuts``, a
part of ``SSHDestination``): the command that unpacks it on the host to the
temporary names and renames the files in (``_put_tar``), the stream sent gzipped
while the system's tar makes it (``_send_stream``; the host renames nothing in
unless the token that follows the archive says it was made whole), and the
survey's shell kept waiting for that command (``_survey_kept``), so that the
put starts no second shell on the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import secrets
import shlex
from collections import Counter
from typing import Any

from ..scan import LocalFile
from .base import TMP_SUFFIX, tmp_name
from .sshwire import (
    GZIP_WBITS,
    PUT_LIST,
    RENAMES,
    Records,
    TarStream,
    new_roots,
    root_transforms,
    tar_bytes,
)
from .sshwrites import SFTPWrites

NO_GZIP = "facsimile:no-gzip"  # what a put's command prints on a host without gzip
_NO_GZIP = object()  # what a put to such a host returns (see _put_tar)


class TarPuts(SFTPWrites):
    """The tar puts of ``SSHDestination`` (its ``fs``, ``base``, ``path`` and the
    survey's clock), and the survey's kept shell they are sent to."""

    base: str
    _kept: Any = None  # the survey's shell, waiting for a put's command (see _survey_kept)
    perl = False  # whether the survey (a command) saw perl on the host

    def _unpacked_to(self, folder: str, roots: list[str]) -> str:
        """Where a put unpacks the files of ``folder`` (relative): below the
        temporary name of the new root it lies in (see ``new_roots``), else there."""
        for root in roots:
            if folder == root or folder.startswith(root + "/"):
                folder = tmp_name(root) + folder[len(root):]
                break
        return self.path(folder) if folder else self.base

    async def _survey_kept(self, command: str) -> bytes:
        """What the survey ``command`` printed, its shell kept waiting for one more
        command line on its stdin (``_kept``): a put that follows is sent to it
        (``_send_stream``) instead of starting a shell anew, which costs the host
        its login shell's start (and rc files) and the client a channel's round
        trips. One kept shell per connection; ``close`` ends it."""
        await self._end_kept()
        end = secrets.token_hex(16)
        line = f"( {command} ); printf '%s\\n' {end}; IFS= read -r next || exit 0; eval \"$next\""
        proc = await self._take_waiting() if "\n" not in command else None
        if proc is not None:  # started ahead (see warm): its command as a line
            proc.stdin.write(line.encode() + b"\n")
        elif getattr(self.fs, "facsimile_kept", 0):  # another target's on this connection
            async with self.fs._client_lock:
                return bytes((await self.fs.client.run(command, check=False,
                                                       encoding=None)).stdout or b"")
        else:
            proc = await self.fs.client.create_process(line, encoding=None)
        tail, out = f"{end}\n".encode(), bytearray()
        try:  # read to the marker, the last thing it prints before it waits (not with
            while not out.endswith(tail):  # readuntil, which gives up at a full buffer)
                data = await proc.stdout.read(1 << 16)
                if not data:  # the shell ended early: that is all it printed
                    proc.close()
                    return bytes(out)
                out += data
        except BaseException:
            proc.close()
            raise
        self._kept = proc
        self.fs.facsimile_kept = 1
        return bytes(out[:-len(tail)])

    @property
    def waiting(self) -> bool:
        """Whether a shell started ahead waits on this connection (see ``warm``)."""
        return getattr(self.fs, "facsimile_waiting", None) is not None

    async def _waiting_shell(self) -> None:
        """Start a shell on the host that waits for one command line on its stdin,
        unless one waits on this connection already: the next survey's command
        goes to it (``_survey_kept``). Only started here; its start is awaited by
        that survey."""
        if not self.waiting:
            self.fs.facsimile_waiting = asyncio.ensure_future(self.fs.client.create_process(
                'IFS= read -r next || exit 0; eval "$next"', encoding=None))

    async def _take_waiting(self) -> Any:
        """The shell started ahead on this connection (no longer waiting for
        another), once started; None if there is none or it could not start."""
        started, self.fs.facsimile_waiting = getattr(self.fs, "facsimile_waiting", None), None
        if started is None:
            return None
        try:
            return await started
        except Exception:  # (the host refused it): the survey starts its own
            return None

    def _take_kept(self) -> Any:
        """The kept shell, if there is one (it is then no longer kept)."""
        proc, self._kept = self._kept, None
        if proc is not None:
            self.fs.facsimile_kept = 0
        return proc

    async def _end_kept(self) -> None:
        """End the kept shell, if any (its ``read`` sees the end of its stdin)."""
        proc = self._take_kept()
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.stdin.write_eof()
            proc.close()

    @property
    def gzip(self) -> bool:
        """Whether a put's tar goes gzipped: False once the host said it has no gzip
        (kept with the connection, for every target and instance on the host)."""
        return not getattr(self.fs, "facsimile_plain", False)

    def _put_tar(self, files: list[LocalFile], records: Records = ()) -> str | None:
        """Unpack one tar of ``files`` on the host, each file to its temporary name
        next to its place, every mtime one second before the host's clock (the
        survey's, in the tar's headers; else read and set after); then rename them
        in, in the same command where the host has perl, else over SFTP, all at
        once; a streamed tar (:class:`~.sshwire.TarStream`) only after the token
        that says it was made whole. The tar goes gzipped where the host has
        ``gzip`` (one without says so before it reads anything, and gets it plain
        from then on, over this connection). ``records``: the two records that go
        with the files (see ``RENAMES``: only where the survey saw perl and read
        the clock). That mtime, or None if the host could not unpack it (or the
        tar here failed)."""
        stamp = self._put_tar_once(files, self.gzip, records)
        if stamp is _NO_GZIP:
            self.fs.facsimile_plain = True
            stamp = self._put_tar_once(files, False, records)
        return None if stamp is _NO_GZIP else stamp

    def _put_tar_once(self, files: list[LocalFile], gzip: bool, records: Records) -> Any:
        known = None if self.clock is None else self.clock - 1
        assert not records or (known is not None and self.perl)
        # a folder new to the host goes whole to its temporary name and in with one
        # rename (perl, which the survey saw, makes the choice again on the host)
        held = Counter(posixpath.dirname(f.rel) for f in files)
        roots = new_roots(held, self.folders) if self.perl and known is not None else []
        dirs = sorted({self._unpacked_to(d, roots) for d in held} | {self.path(".facsimile")}
                      | {self.path(posixpath.dirname(rel)) for rel, _ in records})
        rename = f"s,\\([^/]*\\)$,.\\1{TMP_SUFFIX},"
        # the folders first (the umask of the host); then each file is made under
        # umask 077 before tar sets its own mode: a secret is never readable by others
        temps = ("find " + " ".join(shlex.quote(d) for d in dirs) + " -maxdepth 1 -type f "
                 f"-name '.*{TMP_SUFFIX}' -exec")
        whole = " ".join(shlex.quote(self.path(tmp_name(r))) for r in roots)
        stream = TarStream.start(files, known, compress=gzip, records=records)
        token = secrets.token_hex(16)
        undo = f"{{ {temps} rm -f {{}} +; {f'rm -rf -- {whole}; ' if roots else ''}exit 1; }}"
        args = [tmp_name(PUT_LIST), *([r for r, _ in records] or ["", ""]), *roots]
        renames = (f"perl -e {shlex.quote((RENAMES % TMP_SUFFIX).replace(chr(10), ' '))} "
                   + " ".join(shlex.quote(a) for a in args))
        # a tar that fails (a full disk) leaves no partial file behind to fill it;
        # nor does a streamed one whose making failed here (no token after it)
        lines = ["set -e", *([f"rm -rf -- {whole}"] if roots else []),  # a killed put's
                 "mkdir -p -- " + " ".join(shlex.quote(d) for d in dirs),
                 f"cd {shlex.quote(self.base)}",
                 f"t={known}" if known is not None else "t=$(( $(date +%s) - 1 ))",
                 "(umask 077 && tar --no-same-owner "
                 + " ".join(f"--transform {shlex.quote(e)}"
                            for e in [rename, *root_transforms(roots)])
                 + f" -xpf -) || {undo}",
                 *([] if stream is None else
                   [f'IFS= read -r go || go=; [ "$go" = {token} ] || {undo}']),
                 *([] if known is not None else [f"{temps} touch -d @$t {{}} +"]),
                 "printf %s $t",
                 f"if command -v perl >/dev/null 2>&1; then {renames}; printf ' renamed';"
                 + (f" else {undo}; fi" if roots or records else " fi")]
        command = "sh -c " + shlex.quote("; ".join(lines))
        if gzip:  # the whole stream, token and all, through the host's gzip
            command = (f"command -v gzip >/dev/null 2>&1 || {{ echo {NO_GZIP}; exit 1; }}; "
                       f"gzip -dc | {command}")
        if stream is None:
            data = tar_bytes(files, known, records)
            if gzip:
                import zlib

                pack = zlib.compressobj(1, wbits=GZIP_WBITS)
                data = pack.compress(data) + pack.flush()
            result = self.fs.execute(command, check=False, input=data, encoding=None)
        else:
            try:
                result = self._sync(lambda: self._send_stream(command, stream, token))
            finally:
                stream.close()
        if gzip and result.exit_status == 1 and NO_GZIP.encode() in bytes(result.stdout or b""):
            return _NO_GZIP
        said = bytes(result.stdout or b"").decode(errors="replace").split()
        if result.exit_status != 0 or not said or not said[0].isdigit():
            return None
        if said[1:] == ["renamed"]:
            return said[0]

        async def one(f: LocalFile) -> None:
            async with self.fs._pool.get() as channel:
                final = self.path(f.rel)
                await channel.posix_rename(tmp_name(final), final)

        async def run() -> None:
            await asyncio.gather(*(one(f) for f in files))
            with contextlib.suppress(Exception):
                async with self.fs._pool.get() as channel:
                    await channel.remove(self.path(tmp_name(PUT_LIST)))

        self._sync(run)
        return said[0]

    async def _send_stream(self, command: str, stream: TarStream, token: str) -> Any:
        """Run ``command`` with the tar on its stdin as the tar process makes it (see
        :class:`~facsimile.sync.destinations.sshwire.TarStream`); what it printed
        and its exit status. A host that stops reading (its command failed) ends
        the sending; its exit status says so."""
        import asyncssh  # loaded with sshfs already

        loop = asyncio.get_running_loop()

        async def send(proc: Any, first: bytes = b"") -> Any:
            try:
                with contextlib.suppress(OSError, asyncssh.Error):  # the host stopped reading
                    proc.stdin.write(first)
                    while chunk := await loop.run_in_executor(None, stream.read):
                        proc.stdin.write(chunk)
                        await proc.stdin.drain()
                    proc.stdin.write(await loop.run_in_executor(None, stream.tail, token))
                    proc.stdin.write_eof()
                return await proc.wait()
            finally:
                proc.close()

        kept = self._take_kept()
        if kept is not None and "\n" not in command:  # the survey's shell reads it as a line
            return await send(kept, command.encode() + b"\n")
        if kept is not None:
            kept.close()
        async with self.fs._client_lock:
            return await send(await self.fs.client.create_process(command, encoding=None))
