"""Sync: push ``BUILD/<instance>/`` to every host of its targets, only what differs.

Each destination is an fsspec filesystem (``file://``, ``sftp://`` through the
``sshfs`` package, ``s3://`` through ``s3fs``). A manifest at the destination,
``.facsimile/manifest.json``, records what facsimile wrote (path, sha256,
mode). A sync plans before it acts: it compares the build's digests with the
manifest, lists the puts and the deletes, then (unless ``dry_run``) writes each
file to a temporary name next to its place and renames it in, and writes the
manifest last.

Why the manifest can be trusted after a crash: it is only ever replaced after
every put and delete it describes has completed. A sync killed half way leaves
the previous manifest, so every file it had already put still differs from
that manifest and is put again (idempotently) by the next sync; every delete
is attempted again. Each file is at any moment either its old or its new
content, since it only changes by a rename (or an atomic S3 put). A file the
killed sync put that the next build no longer has is still found: before its
first put, a sync records the old manifest and its planned puts in
``.facsimile/pending.json`` and removes that record after the manifest.
A temporary file gets its final mode before any content, so a 0600 secret is
never readable by others on the way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import re
import shlex
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from .errors import SyncError

MANIFEST = ".facsimile/manifest.json"
PENDING = ".facsimile/pending.json"  # what a sync under way may have put: see apply_host
TMP_SUFFIX = ".facsimile-tmp"
DEFAULT_URL = "file://{root}/DEPLOY/{instance}/{host}"
DEFAULT_JOBS = 8
TAR_THRESHOLD = 50  # puts to one ssh host from which one tar stream beats SFTP round trips


# ------------------------------------------------------------------------- globs


def glob_regex(pattern: str) -> re.Pattern[str]:
    """``**`` crosses folders, ``*`` and ``?`` stay within one; a pattern without
    ``/`` matches a file name at any depth (as in rsync and .gitignore)."""
    anywhere = "/" not in pattern.rstrip("/")
    pattern = pattern.rstrip("/")
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append({"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c)))
        i += 1
    body = "".join(out)
    # a folder name matches everything below it too
    return re.compile(("(?:.*/)?" if anywhere else "") + body + "(?:/.*)?$")


def matches(rel: str, patterns: Iterable[re.Pattern[str]]) -> bool:
    return any(p.match(rel) for p in patterns)


def check_pattern(pattern: str, what: str) -> None:
    parts = pattern.split("/")
    if pattern.startswith("/") or ".." in parts:
        raise SyncError(f"{what} {pattern!r} would escape the destination: "
                        "use a relative pattern without '..'")


HOST_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\]")
HOST_RULE = ("letters, digits, and '.', '-', '_' between them (no '..'), "
             "or an IPv6 address in brackets")


def host_problem(host: Any) -> str | None:
    """Why ``host`` cannot be a host name (it is filled into URLs and folder
    names, so ``/``, ``..``, ``?``, ``#`` or spaces would mix up destinations)."""
    if not isinstance(host, str) or not HOST_RE.fullmatch(host) or ".." in host:
        return f"host name {host!r} is not allowed: use {HOST_RULE}"
    return None


def shown_url(url: str) -> str:
    """``url`` fit for output: a password in it is masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


# ------------------------------------------------------------------------- model


@dataclass(frozen=True)
class LocalFile:
    rel: str
    path: str
    digest: str
    mode: int
    size: int


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def scan_build(build_dir: Path) -> dict[str, LocalFile]:
    """Every regular file of the build with its digest and mode."""
    out: dict[str, LocalFile] = {}
    base = str(build_dir)
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            rel = os.path.relpath(path, base).replace(os.sep, "/")
            out[rel] = LocalFile(rel, path, sha256_file(path), st.st_mode & 0o7777, st.st_size)
    return out


@dataclass
class Put:
    file: LocalFile
    reason: str  # new, changed, mode


@dataclass
class HostPlan:
    """What one destination needs: puts, deletes, and what stays."""

    target: str
    host: str
    url: str
    puts: list[Put] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    unchanged: int = 0
    manifest: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, LocalFile] = field(default_factory=dict)
    #: what a killed sync may have put (its pending record): facsimile's own too
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def changes(self) -> bool:
        return bool(self.puts or self.deletes)


@dataclass
class HostResult:
    target: str
    host: str
    ok: bool
    message: str
    changed: bool = False
    drift: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ destinations


def tmp_name(final: str) -> str:
    """The temporary name next to ``final`` that a put writes, then renames."""
    return posixpath.join(posixpath.dirname(final),
                          f".{posixpath.basename(final)}{TMP_SUFFIX}")


def is_tmp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(TMP_SUFFIX) and len(name) > len(TMP_SUFFIX) + 1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Destination:
    """One destination folder on an fsspec filesystem."""

    atomic_put = False  # True where a put replaces an object atomically (S3)
    has_modes = False

    def __init__(self, fs: Any, base: str, label: str) -> None:
        self.fs = fs
        self.base = base.rstrip("/") or "/"
        self.label = label

    def path(self, rel: str) -> str:
        return posixpath.join(self.base, rel)

    def read(self, rel: str) -> bytes | None:
        try:
            return bytes(self.fs.cat_file(self.path(rel)))
        except (FileNotFoundError, OSError):
            return None

    def exists(self, rel: str) -> bool:
        try:
            return bool(self.fs.isfile(self.path(rel)))
        except OSError:
            return False

    def find(self, rel_folder: str) -> list[str]:
        """Every file below ``rel_folder`` (relative paths)."""
        top = self.path(rel_folder)
        try:
            found = self.fs.find(top)
        except (FileNotFoundError, OSError):
            return []
        out = []
        prefix = self.base.rstrip("/") + "/"
        for p in found:
            p = "/" + p.lstrip("/") if self.base.startswith("/") else p
            if p.startswith(prefix):
                out.append(p[len(prefix):])
        return out

    def put_many(self, puts: list[Put], progress: Callable[[int], None]) -> None:
        for put in puts:
            self.put(put.file)
            progress(put.file.size)

    def put(self, f: LocalFile) -> None:
        final = self.path(f.rel)
        parent = posixpath.dirname(final)
        self.fs.makedirs(parent, exist_ok=True)
        if self.atomic_put:
            self.fs.put_file(f.path, final)
            return
        tmp = tmp_name(final)
        # the empty file gets its final mode before any content goes in
        self.fs.pipe_file(tmp, b"")
        self.chmod(tmp, f.mode)
        self.fs.put_file(f.path, tmp)
        self.fs.mv(tmp, final)

    def chmod(self, path: str, mode: int) -> None:
        """Set a mode where the backend has modes."""

    def delete_many(self, rels: list[str]) -> None:
        for rel in rels:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.path(rel))
        self.prune_dirs(rels)

    def prune_dirs(self, rels: list[str]) -> None:
        """Remove folders that deletes left empty (never the base)."""

    def write_bytes(self, rel: str, data: bytes) -> None:
        final = self.path(rel)
        parent = posixpath.dirname(final)
        self.fs.makedirs(parent, exist_ok=True)
        if self.atomic_put:
            self.fs.pipe_file(final, data)
            return
        tmp = tmp_name(final)
        self.fs.pipe_file(tmp, b"")
        self.chmod(tmp, 0o600)
        self.fs.pipe_file(tmp, data)
        self.fs.mv(tmp, final)

    def remove(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            self.fs.rm_file(self.path(rel))

    def tmp_files(self, folders: Iterable[str]) -> list[str]:
        """Temporary files (``.NAME.facsimile-tmp``) directly in ``folders``, which a
        killed sync may have left behind."""
        out = []
        for folder in sorted(set(folders)):
            try:
                names = self.fs.ls(self.path(folder) if folder else self.base, detail=False)
            except (FileNotFoundError, OSError):
                continue
            for name in names:
                base = posixpath.basename(str(name).rstrip("/"))
                if is_tmp_name(base):
                    out.append(posixpath.join(folder, base) if folder else base)
        return out

    def digests(self, rels: list[str]) -> dict[str, str | None]:
        """The sha256 of each file at the destination (None where missing)."""
        out: dict[str, str | None] = {}
        for rel in rels:
            data = self.read(rel)
            out[rel] = hashlib.sha256(data).hexdigest() if data is not None else None
        return out

    def modes(self, rels: list[str]) -> dict[str, int | None]:
        return {}

    def run(self, command: str) -> tuple[int, str]:
        raise SyncError("post-commands run only on ssh destinations")

    def close(self) -> None:
        pass


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
                    _write_all(fd, chunk)

        self._write(f.rel, f.mode, write)

    def write_bytes(self, rel: str, data: bytes) -> None:
        self._write(rel, 0o600, lambda fd: _write_all(fd, data))

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

    def modes(self, rels: list[str]) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for rel in rels:
            try:
                out[rel] = os.stat(self.path(rel)).st_mode & 0o7777
            except OSError:
                out[rel] = None
        return out

    def tmp_files(self, folders: Iterable[str]) -> list[str]:
        out = []
        for folder in sorted(set(folders)):
            try:
                with os.scandir(self.path(folder) if folder else self.base) as it:
                    out += [posixpath.join(folder, e.name) if folder else e.name
                            for e in it if is_tmp_name(e.name) and e.is_file()]
            except OSError:
                continue
        return out


class S3Destination(Destination):
    """``s3://``: an object put is atomic; there are no modes or folders."""

    atomic_put = True

    def put(self, f: LocalFile) -> None:
        self.fs.put_file(f.path, self.path(f.rel))

    def put_many(self, puts: list[Put], progress: Callable[[int], None]) -> None:
        """Concurrent puts (s3fs batches them); each object replaces atomically."""
        if len(puts) < 2:
            super().put_many(puts, progress)
            return
        self.fs.put([p.file.path for p in puts], [self.path(p.file.rel) for p in puts])
        for p in puts:
            progress(p.file.size)

    def delete_many(self, rels: list[str]) -> None:
        if rels:
            self.fs.rm([self.path(r) for r in rels])

    def write_bytes(self, rel: str, data: bytes) -> None:
        self.fs.pipe_file(self.path(rel), data)

    def tmp_files(self, folders: Iterable[str]) -> list[str]:
        return []  # objects are put whole, never through a temporary name

    def read(self, rel: str) -> bytes | None:
        self.fs.invalidate_cache()
        return super().read(rel)

    def find(self, rel_folder: str) -> list[str]:
        self.fs.invalidate_cache()
        return super().find(rel_folder)


class SSHDestination(Destination):
    """``sftp://`` through sshfs (asyncssh): host keys verified, puts pipelined."""

    has_modes = True
    tar = True  # deploy.ssh.tar: false for hosts without tar and find

    def _sync(self, make: Callable[[], Any]) -> Any:
        """Run the coroutine ``make()`` on sshfs's event loop."""
        from fsspec.asyn import sync

        return sync(self.fs.loop, make)

    def put_many(self, puts: list[Put], progress: Callable[[int], None]) -> None:
        """Many files: one tar stream into a staging folder, then renames (one ``mv``
        per folder); few files, or no tar on the host: one SFTP put each."""
        if self.tar and len(puts) >= TAR_THRESHOLD and self._put_tar(puts):
            for p in puts:
                progress(p.file.size)
            return
        self._put_sftp(puts, progress)

    def _put_tar(self, puts: list[Put]) -> bool:
        import secrets

        payload = _tar_bytes(puts)
        stage = self.path(f".facsimile/staging.{secrets.token_hex(6)}")
        old = shlex.quote(self.path(".facsimile")) + "/staging.*"  # left by a killed sync
        # the staging folder is the user's alone, and tar makes each file under umask
        # 077 before it sets the file's own mode: a secret is never readable by others
        lines = ["set -e", f"rm -rf {old}", f"mkdir -p {shlex.quote(self.path('.facsimile'))}",
                 f"mkdir -m 700 {shlex.quote(stage)}",
                 f"(umask 077 && tar -C {shlex.quote(stage)} --no-same-owner -xpf -)"]
        for d in sorted({posixpath.dirname(p.file.rel) for p in puts}):
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

    def _put_sftp(self, puts: list[Put], progress: Callable[[int], None]) -> None:
        import asyncio

        fs = self.fs
        dirs = sorted({posixpath.dirname(self.path(p.file.rel)) for p in puts})

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

            await asyncio.gather(*(guarded(p.file) for p in puts))

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

    def chmod(self, path: str, mode: int) -> None:
        async def go() -> None:
            async with self.fs._pool.get() as channel:
                await channel.chmod(path, mode)

        self._sync(go)

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


def _tar_bytes(puts: list[Put]) -> bytes:
    """An uncompressed tar of the files to put: the system's tar when there is one
    (five times faster), else :mod:`tarfile`."""
    import io
    import shutil
    import subprocess
    import tarfile

    first = puts[0].file
    base = first.path[: len(first.path) - len(first.rel)]
    same_base = all(p.file.path == base + p.file.rel for p in puts)
    if shutil.which("tar") and same_base:
        names = b"\0".join(p.file.rel.encode() for p in puts)
        proc = subprocess.run(
            ["tar", "-C", base, "--owner=0", "--group=0", "--numeric-owner",
             "--null", "-T", "-", "-cf", "-"], input=names, capture_output=True)
        if proc.returncode == 0:
            return proc.stdout
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in puts:
            info = tar.gettarinfo(p.file.path, arcname=p.file.rel)
            info.mode = p.file.mode
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(p.file.path, "rb") as fh:
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


def open_destination(url: str, deploy: Mapping[str, Any], label: str) -> Destination:
    """The destination behind ``url`` (already filled in)."""
    parts = urlsplit(url)
    scheme = parts.scheme or "file"
    extra = dict(deploy.get("storage_options") or {})
    path = unquote(parts.path)
    shown = shown_url(url)
    if "?" in url or "#" in url:
        raise SyncError(f"destination {shown!r} has a '?' or '#': a URL query or fragment "
                        "is not a place (write them as %3F and %23 in a path)")
    if ".." in path.split("/"):
        raise SyncError(f"destination {shown!r} has '..' in its path")
    if scheme == "file":
        from fsspec.implementations.local import LocalFileSystem

        if parts.netloc not in ("", "localhost"):
            raise SyncError(f"destination {shown!r} names the host {parts.netloc!r}: a file "
                            "URL takes an absolute path, file:///path (three slashes) or "
                            "file://{root}/path")
        if not path.startswith("/"):
            raise SyncError(f"destination {shown!r} is not an absolute path: write "
                            "file:///path or file://{root}/path")

        return LocalDestination(LocalFileSystem(**extra), path, label)
    if scheme in ("sftp", "ssh"):
        try:
            from sshfs import SSHFileSystem
        except ImportError as exc:
            raise SyncError("sftp destinations need the sshfs package: "
                            "pip install 'facsimile[ssh]'") from exc
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
        kwargs.update(extra)
        try:
            fs = SSHFileSystem(parts.hostname, **kwargs)
        except Exception as exc:
            raise SyncError(f"cannot connect: {type(exc).__name__}: {exc}") from exc
        dest = SSHDestination(fs, path or ".", label)
        dest.tar = bool(ssh.get("tar", True))
        return dest
    if scheme == "s3":
        try:
            from s3fs import S3FileSystem
        except ImportError as exc:
            raise SyncError("s3 destinations need the s3fs package: "
                            "pip install 'facsimile[s3]'") from exc
        s3 = dict(deploy.get("s3") or {})
        kwargs = {"skip_instance_cache": True}
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
        kwargs.update(extra)
        return S3Destination(S3FileSystem(**kwargs), f"{parts.netloc}{path}", label)
    raise SyncError(f"unsupported destination scheme {scheme!r} in {shown!r} "
                    "(file://, sftp://, s3://)")


# ------------------------------------------------------------------------ planning


def _read_files(dest: Destination, rel: str) -> dict[str, dict[str, Any]]:
    data = dest.read(rel)
    if data is None:
        return {}
    try:
        doc = json.loads(data)
        files = doc["files"]
        assert isinstance(files, dict)
        return files
    except (ValueError, KeyError, AssertionError, TypeError):
        raise SyncError(f"{dest.label}: {rel} is not a facsimile manifest; "
                        "move it away to start afresh") from None


def read_manifest(dest: Destination) -> dict[str, dict[str, Any]]:
    return _read_files(dest, MANIFEST)


def read_pending(dest: Destination) -> dict[str, dict[str, Any]]:
    """The record a sync writes before its first put and removes after its
    manifest: present only when a sync was killed (or failed) half way."""
    return _read_files(dest, PENDING)


def _doc(files: Mapping[str, dict[str, Any]]) -> bytes:
    doc = {"format": 1, "written_by": "facsimile", "files": dict(sorted(files.items()))}
    return (json.dumps(doc, indent=1) + "\n").encode()


def plan_host(
    dest: Destination,
    files: Mapping[str, LocalFile],
    owned: list[str],
    exclude: list[re.Pattern[str]],
    target: str,
    host: str,
    url: str,
    actual: Mapping[str, str | None] | None = None,
    actual_modes: Mapping[str, int | None] | None = None,
) -> HostPlan:
    """Puts and deletes for one destination; nothing is changed here.

    ``actual``, ``actual_modes``: digests and modes read from the destination
    (check and repair) instead of the manifest's.
    """
    manifest = read_manifest(dest)
    pending = read_pending(dest)
    plan = HostPlan(target, host, url, manifest=manifest, files=dict(files), pending=pending)
    for rel, f in sorted(files.items()):
        seen = manifest.get(rel)
        if actual is not None:
            have = actual.get(rel)
            mode = (actual_modes or {}).get(rel)
        else:
            have = (seen or {}).get("digest")
            mode = (seen or {}).get("mode")
        if have is None:
            plan.puts.append(Put(f, "missing" if actual is not None and seen else "new"))
        elif have != f.digest:
            plan.puts.append(Put(f, "changed"))
        elif dest.has_modes and (actual is None or mode is not None) and mode != f.mode:
            plan.puts.append(Put(f, "mode"))
        else:
            plan.unchanged += 1
    # files an earlier sync put, even one killed before its manifest
    gone = {rel for rel in (*manifest, *pending) if rel not in files}
    for folder in owned:
        gone |= {rel for rel in dest.find(folder)
                 if rel not in files and not rel.startswith(".facsimile/")}
    plan.deletes = sorted(rel for rel in gone if not matches(rel, exclude))
    return plan


def apply_host(dest: Destination, plan: HostPlan, out: Callable[[str], None]) -> int:
    """Carry the plan out; the manifest last. Returns bytes sent.

    Before the first put, ``.facsimile/pending.json`` records the old manifest,
    any earlier pending record and every planned put: should this sync be killed
    before its manifest, the next one still knows each file it may have put
    (and deletes it if the build no longer has it). Temporary files a killed
    sync left in the folders written to are removed.
    """
    sent = 0
    total = sum(p.file.size for p in plan.puts)
    last = time.monotonic()

    def progress(n: int) -> None:
        nonlocal sent, last
        sent += n
        now = time.monotonic()
        if now - last > 2 and total:
            out(f"  {plan.target}/{plan.host}: {sent * 100 // total}% of {_size(total)}")
            last = now

    if plan.puts:
        record = {**plan.pending, **plan.manifest}
        record.update({p.file.rel: {"digest": p.file.digest, "mode": p.file.mode}
                       for p in plan.puts})
        dest.write_bytes(PENDING, _doc(record))
    folders = {posixpath.dirname(rel)
               for rel in (*(p.file.rel for p in plan.puts), *plan.pending)}
    if folders:
        leftovers = [rel for rel in dest.tmp_files(folders) if rel not in plan.files]
        if leftovers:
            dest.delete_many(leftovers)
    if plan.puts:
        dest.put_many(plan.puts, progress)
    if plan.deletes:
        dest.delete_many(plan.deletes)
    # every selected file is now in place: that is what facsimile owns here
    manifest = {rel: {"digest": f.digest, "mode": f.mode} for rel, f in plan.files.items()}
    if plan.changes or manifest != plan.manifest:
        dest.write_bytes(MANIFEST, _doc(manifest))
    if plan.puts or plan.pending:
        dest.remove(PENDING)
    return sent


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"


# ------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class Job:
    target: str
    host: str
    url: str
    files: dict[str, LocalFile]


def fill(template: str, values: Mapping[str, str]) -> str:
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise SyncError(f"cannot fill {template!r}: unknown placeholder {exc} "
                        f"(known: {', '.join('{' + k + '}' for k in values)})") from None


def jobs_for(
    *, instance: str, project: str, root: Path, deploy: Mapping[str, Any],
    targets: Mapping[str, Mapping[str, Any]], files: Mapping[str, LocalFile],
    target: str | None, host: str | None,
) -> list[Job]:
    """One job per destination. Targets whose hosts fill ``url`` to the same
    destination (two targets on one host) share one job with the union of their
    files, so that neither deletes what the other put there, even when
    ``--target`` names only one of them."""
    exclude = [glob_regex(p) for p in deploy.get("exclude", [])]
    by_url: dict[str, tuple[list[str], list[str], dict[str, LocalFile]]] = {}
    for tname, spec in sorted(targets.items()):
        patterns = list((spec or {}).get("files") or ["**"])
        for p in patterns:
            check_pattern(p, f"targets.{tname}.files pattern")
        regexes = [glob_regex(p) for p in patterns]
        chosen = {rel: f for rel, f in files.items()
                  if matches(rel, regexes) and not matches(rel, exclude)}
        for h in (spec or {}).get("hosts", []):
            problem = host_problem(h)
            if problem:
                raise SyncError(f"instance {instance}, target {tname}: {problem}")
            url = fill(str(deploy.get("url") or DEFAULT_URL), {
                "host": h, "instance": instance, "target": tname,
                "project": project, "root": quote(str(root), safe="/"),
            })
            names, hosts, union = by_url.setdefault(url, ([], [], {}))
            if tname not in names:
                names.append(tname)
            if h not in hosts:
                hosts.append(h)
            union.update(chosen)
    jobs = []
    for url, (names, hosts, union) in by_url.items():
        if (target is None or target in names) and (host is None or host in hosts):
            jobs.append(Job("+".join(names), hosts[0] if host is None else host, url,
                            dict(sorted(union.items()))))
    return jobs


def sync_instance(
    *,
    instance: str,
    project: str,
    root: Path,
    build_dir: Path,
    deploy: Mapping[str, Any],
    targets: Mapping[str, Mapping[str, Any]],
    dry_run: bool = False,
    check: bool = False,
    repair: bool = False,
    target: str | None = None,
    host: str | None = None,
    always: bool = False,
    out: Callable[[str], None] = print,
) -> int:
    """Push ``build_dir`` to every host. Exit code: 0 ok, 1 a host failed, 2 drift (check)."""
    if not build_dir.is_dir():
        raise SyncError(f"nothing to sync: {build_dir} does not exist (build it first)")
    files = scan_build(build_dir)
    jobs = jobs_for(instance=instance, project=project, root=root, deploy=deploy,
                    targets=targets, files=files, target=target, host=host)
    if not jobs:
        out(f"sync {instance}: no hosts to sync (no targets with hosts"
            + (" matching the filter)" if target or host else ")"))
        return 0
    values = {"project": project, "instance": instance, "root": str(root)}
    owned_templates = [str(d) for d in deploy.get("delete", ["{project}"])]
    exclude = [glob_regex(p) for p in deploy.get("exclude", [])]
    postcmds = list(deploy.get("postcmd", []))
    workers = max(1, min(int(deploy.get("jobs") or DEFAULT_JOBS), len(jobs)))
    verb = "check" if check else ("dry run" if dry_run else "sync")
    out(f"{verb} {instance}: {len(files)} files to {len(jobs)} host(s)")

    def one(job: Job) -> HostResult:
        label = f"{job.target}/{job.host}"
        try:
            owned = []
            for t in owned_templates:
                folder = fill(t, {**values, "host": job.host, "target": job.target}).strip("/")
                check_pattern(folder, "deploy.delete folder")
                if folder:
                    owned.append(folder)
            dest = open_destination(job.url, deploy, label)
            try:
                return _one_host(dest, job, owned, exclude, postcmds, label,
                                 dry_run=dry_run, check=check, repair=repair,
                                 always=always, out=out)
            finally:
                dest.close()
        except Exception as exc:  # one host's failure never stops the others
            reason = str(exc) if isinstance(exc, SyncError) else f"{type(exc).__name__}: {exc}"
            return HostResult(job.target, job.host, False, reason)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, jobs))
    failed = [r for r in results if not r.ok]
    for r in failed:
        out(f"  {r.target}/{r.host}: FAILED: {r.message}")
    drift = [r for r in results if r.drift]
    out(f"{verb} {instance}: {len(results) - len(failed)} host(s) ok, {len(failed)} failed"
        + (f", drift on {len(drift)}" if check else ""))
    if failed:
        return 1
    return 2 if drift else 0


def _one_host(
    dest: Destination, job: Job, owned: list[str], exclude: list[re.Pattern[str]],
    postcmds: list[str], label: str, *, dry_run: bool, check: bool, repair: bool,
    always: bool, out: Callable[[str], None],
) -> HostResult:
    if check or repair:
        manifest = read_manifest(dest)
        rels = sorted(set(job.files) | set(manifest))
        actual = dest.digests(rels)
        modes = dest.modes(rels) if dest.has_modes else {}
        plan = plan_host(dest, job.files, owned, exclude, job.target, job.host, job.url,
                         actual, modes)
        drift = []
        for rel in sorted(manifest):
            if actual.get(rel) is None:
                drift.append(f"{rel}: removed on the host")
            elif actual[rel] != manifest[rel].get("digest"):
                drift.append(f"{rel}: edited on the host")
        for rel in sorted(manifest):
            mode, want = modes.get(rel), manifest[rel].get("mode")
            if mode is not None and want is not None and mode != want:
                drift.append(f"{rel}: mode {mode:o} on the host, {want:o} synced")
        if check:
            for line in drift:
                out(f"  {label}: drift: {line}")
            pending = len(plan.puts) + len(plan.deletes)
            out(f"  {label}: {len(drift)} drifted, {pending} to sync")
            return HostResult(job.target, job.host, True, "checked", drift=drift)
    else:
        plan = plan_host(dest, job.files, owned, exclude, job.target, job.host, job.url)
    if dry_run:
        for p in plan.puts:
            out(f"  {label}: put {p.file.rel} ({p.reason}, {_size(p.file.size)})")
        for rel in plan.deletes:
            out(f"  {label}: delete {rel}")
        out(f"  {label}: would put {len(plan.puts)}, delete {len(plan.deletes)}, "
            f"{plan.unchanged} unchanged ({shown_url(job.url)})")
        return HostResult(job.target, job.host, True, "dry run", plan.changes)
    sent = apply_host(dest, plan, out)
    out(f"  {label}: {len(plan.puts)} put, {len(plan.deletes)} deleted, "
        f"{plan.unchanged} unchanged, {_size(sent)} sent")
    if postcmds and (plan.changes or always):
        if not isinstance(dest, SSHDestination):
            out(f"  {label}: postcmd skipped: not an ssh destination")
        else:
            for cmd in postcmds:
                code, text = dest.run(cmd)
                for line in text.splitlines():
                    out(f"{job.host}: {line}")
                if code != 0:
                    return HostResult(job.target, job.host, False,
                                      f"postcmd {cmd!r} exited {code}", plan.changes)
    return HostResult(job.target, job.host, True, "ok", plan.changes)
