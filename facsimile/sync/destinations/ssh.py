"""``sftp://`` (or ``ssh://``) destinations through ``sshfs`` (asyncssh), host
keys verified against a known_hosts file. Puts go as pipelined SFTP writes, or,
from ``TAR_THRESHOLD`` files on (unless ``deploy.ssh.tar`` is false), as one
tar stream unpacked into a staging folder and renamed in; finding files,
reading digests and modes and pruning folders run as shell commands on the
host, which also runs ``deploy.postcmd``. Settings come from ``deploy.ssh``
(user, port, key, known_hosts, timeout, tar).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shlex
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ...errors import SyncError
from ..scan import LocalFile
from .base import (
    TMP_SUFFIX,
    Destination,
    Entry,
    Location,
    in_roots,
    is_tmp_name,
    register,
    tmp_name,
)

TAR_THRESHOLD = 50  # puts to one ssh host from which one tar stream beats SFTP round trips


class SSHDestination(Destination):
    """``sftp://`` through sshfs (asyncssh): host keys verified, puts pipelined."""

    has_modes = True
    runs_commands = True
    tar = True  # deploy.ssh.tar: false for hosts without tar and find

    def _sync(self, make: Callable[[], Any]) -> Any:
        """Run the coroutine ``make()`` on sshfs's event loop."""
        from fsspec.asyn import sync

        return sync(self.fs.loop, make)

    def put_many(self, files: list[LocalFile], progress: Callable[[int], None]) -> None:
        """Many files: one tar stream into a staging folder, then renames (one ``mv``
        per folder); few files, or no tar on the host: one SFTP put each."""
        if self.tar and len(files) >= TAR_THRESHOLD and self._put_tar(files):
            for f in files:
                progress(f.size)
            return
        self._put_sftp(files, progress)

    def _put_tar(self, files: list[LocalFile]) -> bool:
        """Unpack one tar of ``files`` on the host; False if the host could not."""
        import secrets

        payload = _tar_bytes(files)
        stage = self.path(f".facsimile/staging.{secrets.token_hex(6)}")
        old = shlex.quote(self.path(".facsimile")) + "/staging.*"  # left by a killed sync
        # the staging folder is the user's alone, and tar makes each file under umask
        # 077 before it sets the file's own mode: a secret is never readable by others
        lines = ["set -e", f"rm -rf {old}", f"mkdir -p {shlex.quote(self.path('.facsimile'))}",
                 f"mkdir -m 700 {shlex.quote(stage)}",
                 f"(umask 077 && tar -C {shlex.quote(stage)} --no-same-owner -xpf -)"]
        for d in sorted({posixpath.dirname(f.rel) for f in files}):
            src = posixpath.join(stage, d) if d else stage
            dst = self.path(d) if d else self.base
            lines.append(f"mkdir -p {shlex.quote(dst)} && find {shlex.quote(src)} -maxdepth 1 "
                         f"-type f -exec mv -f -t {shlex.quote(dst)} {{}} +")
        lines.append(f"rm -rf {shlex.quote(stage)}")
        result = self.fs.execute("sh -c " + shlex.quote("\n".join(lines)), check=False,
                                 input=payload, encoding=None)
        if result.exit_status != 0:
            self._run_raw(f"rm -rf {shlex.quote(stage)}")
            return False
        return True

    def _put_sftp(self, files: list[LocalFile], progress: Callable[[int], None]) -> None:
        """One SFTP put per file, 16 at a time, after their folders exist."""
        import asyncio

        fs = self.fs
        dirs = sorted({posixpath.dirname(self.path(f.rel)) for f in files})

        async def makedirs() -> None:
            for d in dirs:  # parents first; each is one round trip at most
                await fs._makedirs(d, exist_ok=True)

        async def one(f: LocalFile) -> None:
            with open(f.path, "rb") as src:
                await self._write_async(f.rel, f.mode, src.read)
            progress(f.size)

        async def run() -> None:
            await makedirs()
            sem = asyncio.Semaphore(16)

            async def guarded(f: LocalFile) -> None:
                async with sem:
                    await one(f)

            await asyncio.gather(*(guarded(f) for f in files))

        self._sync(run)

    async def _write_async(self, rel: str, mode: int, read: Callable[[int], bytes]) -> None:
        """Open the temporary file with ``mode`` and set it (umask, or a file left by
        a killed sync) before any content goes in; then write, rename it in."""
        from asyncssh import SFTPAttrs

        final = self.path(rel)
        tmp = tmp_name(final)
        async with self.fs._pool.get() as channel:
            fh = await channel.open(tmp, "wb", SFTPAttrs(permissions=mode & 0o777))
            try:
                await fh.chmod(mode)
                while chunk := read(1 << 22):
                    await fh.write(chunk)
            finally:
                await fh.close()
            await channel.posix_rename(tmp, final)

    def write_bytes(self, rel: str, data: bytes) -> None:
        import io

        async def go() -> None:
            await self.fs._makedirs(posixpath.dirname(self.path(rel)), exist_ok=True)
            await self._write_async(rel, 0o600, io.BytesIO(data).read)

        self._sync(go)

    def create_exclusive(self, rel: str, data: bytes) -> bool:
        """SFTP open with ``FXF_EXCL`` (mode ``xb``), 0600: the server refuses it if
        the file exists."""
        from asyncssh import SFTPAttrs, SFTPError

        final = self.path(rel)

        async def go() -> bool:
            await self.fs._makedirs(posixpath.dirname(final), exist_ok=True)
            async with self.fs._pool.get() as channel:
                try:
                    fh = await channel.open(final, "xb", SFTPAttrs(permissions=0o600))
                except SFTPError:
                    if await channel.exists(final):
                        return False
                    raise
                try:
                    await fh.write(data)
                finally:
                    await fh.close()
            return True

        return bool(self._sync(go))

    def find(self, rel_folder: str) -> list[str]:
        top = self.path(rel_folder)
        _, out = self._run_raw(f"find {shlex.quote(top)} -type f 2>/dev/null")
        prefix = self.base.rstrip("/") + "/"
        return [p[len(prefix):] for p in out.splitlines() if p.startswith(prefix)]

    def delete_many(self, rels: list[str]) -> None:
        import asyncio

        async def one(rel: str) -> None:
            async with self.fs._pool.get() as channel:
                with contextlib.suppress(Exception):
                    await channel.remove(self.path(rel))

        async def run() -> None:
            await asyncio.gather(*(one(r) for r in rels))

        self._sync(run)
        self.prune_dirs(rels)

    def prune_dirs(self, rels: list[str]) -> None:
        dirs = set()
        for rel in rels:
            parent = posixpath.dirname(self.path(rel))
            while parent.startswith(self.base + "/"):
                dirs.add(parent)
                parent = posixpath.dirname(parent)
        if dirs:
            quoted = " ".join(shlex.quote(d) for d in sorted(dirs, key=len, reverse=True))
            self._run_raw(f"rmdir {quoted} 2>/dev/null; true")

    def _per_file(self, command: str, rels: list[str]) -> dict[str, str]:
        """Run ``command FILE...`` on the host over ``rels`` (names through xargs, so
        no argument list is too long); ``{rel: first word of its output line}``."""
        if not rels:
            return {}
        result = self.fs.execute(
            f"cd {shlex.quote(self.base)} && xargs -0 {command} 2>/dev/null; true",
            check=False, input="\0".join(rels))
        out = {}
        for line in str(result.stdout or "").splitlines():
            word, _, rel = line.partition(" ")
            out[rel.lstrip(" ")] = word
        return out

    def digests(self, rels: list[str]) -> dict[str, str | None]:
        found = self._per_file("sha256sum --", rels)
        return {r: found.get(r) for r in rels}

    def modes(self, rels: list[str]) -> dict[str, int | None]:
        found = self._per_file("stat -c '%a %n' --", rels)
        return {r: int(found[r], 8) if r in found else None for r in rels}

    def listing(self, roots: list[str]) -> dict[str, Entry]:
        """One ``find -printf`` on the host over every root (SFTP listings where
        ``deploy.ssh.tar`` is false: hosts without GNU find)."""
        if not self.tar:
            return super().listing(roots)
        fmt = "'%s %T@ %m %p\\0'"
        parts = [f"find ./{shlex.quote(r)} -type f -printf {fmt}" for r in roots if r]
        if "" in roots:
            parts.append(f"find . -maxdepth 1 -type f -printf {fmt}")
        if not parts:
            return {}
        _, text = self._run_raw(f"cd {shlex.quote(self.base)} 2>/dev/null && "
                                f"{{ {'; '.join(parts)}; }} 2>/dev/null; true")
        out: dict[str, Entry] = {}
        for item in text.split("\0"):
            size, mtime, mode, path = [*item.lstrip("\n").split(" ", 3), "", "", ""][:4]
            rel = path[2:] if path.startswith("./") else path
            if rel and size.isdigit() and in_roots(rel, roots):
                out[rel] = Entry(int(size), mtime, int(mode, 8))
        return out

    def _run_raw(self, command: str) -> tuple[int, str]:
        result = self.fs.execute(command, check=False)
        return int(result.exit_status or 0), str(result.stdout or "")

    def run(self, command: str) -> tuple[int, str]:
        result = self.fs.execute(command, check=False)
        text = str(result.stdout or "") + str(result.stderr or "")
        return int(result.exit_status or 0), text

    def tmp_files(self, folders: Iterable[str]) -> list[str]:
        folders = sorted({f or "." for f in folders})
        if not folders:
            return []
        result = self.fs.execute(
            f"cd {shlex.quote(self.base)} && xargs -0 sh -c 'exec find \"$@\" -maxdepth 1 "
            f"-type f -name \".*{TMP_SUFFIX}\"' sh 2>/dev/null; true",
            check=False, input="\0".join(folders))
        out = []
        for line in str(result.stdout or "").splitlines():
            rel = line[2:] if line.startswith("./") else line
            if is_tmp_name(posixpath.basename(rel)):
                out.append(rel)
        return out


def _tar_bytes(files: list[LocalFile]) -> bytes:
    """An uncompressed tar of the files to put: the system's tar when there is one
    (five times faster), else :mod:`tarfile`."""
    import io
    import shutil
    import subprocess
    import tarfile

    first = files[0]
    base = first.path[: len(first.path) - len(first.rel)]
    same_base = all(f.path == base + f.rel for f in files)
    if shutil.which("tar") and same_base:
        names = b"\0".join(f.rel.encode() for f in files)
        proc = subprocess.run(
            ["tar", "-C", base, "--owner=0", "--group=0", "--numeric-owner",
             "--null", "-T", "-", "-cf", "-"], input=names, capture_output=True)
        if proc.returncode == 0:
            return proc.stdout
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in files:
            info = tar.gettarinfo(f.path, arcname=f.rel)
            info.mode = f.mode
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(f.path, "rb") as fh:
                tar.addfile(info, fh)
    return buf.getvalue()


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
        from sshfs import SSHFileSystem
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
    }
    if ssh.get("key"):
        kwargs["client_keys"] = [os.path.expanduser(str(ssh["key"]))]
    kwargs.update(where.options)
    try:
        fs = SSHFileSystem(parts.hostname, **kwargs)
    except Exception as exc:
        why = (f"no answer within {kwargs['timeout']:g}s (deploy.ssh.timeout)"
               if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}")
        raise SyncError(f"cannot connect: {why}") from exc
    dest = SSHDestination(fs, where.path or ".", label)
    dest.tar = bool(ssh.get("tar", True))
    return dest
