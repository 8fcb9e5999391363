"""State at a remote fsspec URL, and the lock that lets one run at a time change it.

``RemoteStore`` owns the objects below one URL (``file://``, ``sftp://`` through
sshfs, ``s3://`` through s3fs): ``<url>/<family>/state.json`` (bytes it does not
interpret) and ``<url>/.locks/<family>.json``. ``versions()`` gives every
family's version token from one listing, so a run whose tokens match its cache
reads nothing more. A write is atomic at the destination (temporary name and
rename; one PUT on S3). A lock exists only if its backend created it
exclusively (``O_EXCL``, SFTP ``FXF_EXCL``, S3 ``If-None-Match: *``), so two
processes on two machines never both hold it; it is released only if it is
still the one this run made.

Version tokens: S3's ETag (it follows the content); elsewhere ``mtime_ns-size``.
SFTP v3 gives whole seconds and a local mtime is only as fine as the kernel's
clock tick, so a write sets the new file's mtime past the one it replaces:
every write makes a new token even when writes come faster than the clock.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import posixpath
import random
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

from ..errors import StateError

STATE = "state.json"
LOCKS = ".locks"
MAX_POLL = 0.5  # seconds between two attempts at a held lock, at most


class _Local:
    """``file://``: plain system calls below an absolute path (no fsspec needed)."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def _run(self, make: Any, *args: Any) -> Any:
        """Run the coroutine ``make(*args)`` on the filesystem's event loop."""
        from fsspec.asyn import sync

        return sync(self.fs.loop, make, *args)

    def files(self, folder: str) -> list[str]:
        try:  # plain system calls: a no-op need not import fsspec for a folder
            return sorted(os.path.join(folder, n) for n in os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def close(self) -> None:  # nothing to close on a folder
        pass

    def versions(self, base: str) -> dict[str, str]:
        out = {}
        for name in self.files(base):  # the one listing; then local stats
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                st = os.stat(posixpath.join(name, STATE))
                out[posixpath.basename(name)] = f"{st.st_mtime_ns}-{st.st_size}"
        return out

    def read(self, path: str) -> tuple[bytes, str] | None:
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                return f.read(), f"{st.st_mtime_ns}-{st.st_size}"
        except FileNotFoundError:
            return None

    def write(self, path: str, data: bytes) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        floor = os.stat(path).st_mtime_ns + 1 if os.path.exists(path) else 0
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            stamp = max(time.time_ns(), floor)
            os.utime(tmp, ns=(stamp, stamp))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def create(self, path: str, data: bytes) -> bool:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True


class _FS(_Local):
    """A backend reached through an fsspec filesystem: its listing and removal."""

    def files(self, folder: str) -> list[str]:
        try:
            return [str(p) for p in self.fs.ls(folder, detail=False)]
        except FileNotFoundError:
            return []

    def remove(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)


class _SFTP(_FS):
    """``sftp://``: sshfs for the listing, its asyncssh channels for the rest."""

    def versions(self, base: str) -> dict[str, str]:
        import asyncio  # here: a file:// no-op need not pay for importing it

        async def go() -> dict[str, str]:
            try:
                names = [i["name"] for i in await self.fs._ls(base)  # the one listing
                         if i["type"] == "directory"]
            except FileNotFoundError:
                return {}
            async with self.fs._pool.get() as ch:  # the stats go out together
                stats = await asyncio.gather(
                    *(ch.stat(posixpath.join(n, STATE)) for n in names), return_exceptions=True)
            return {posixpath.basename(n): f"{int(a.mtime) * 10**9}-{a.size}"
                    for n, a in zip(names, stats, strict=True) if not isinstance(a, BaseException)}
        return self._run(go)

    def read(self, path: str) -> tuple[bytes, str] | None:
        import asyncssh

        async def go() -> tuple[bytes, str] | None:
            async with self.fs._pool.get() as ch:
                try:
                    async with ch.open(path, "rb") as fh:
                        a = await fh.stat()
                        data = await fh.read()
                except asyncssh.SFTPNoSuchFile:
                    return None
            return bytes(data), f"{int(a.mtime) * 10**9}-{a.size}"
        return self._run(go)

    def write(self, path: str, data: bytes) -> None:
        import asyncssh

        async def go() -> None:
            await self.fs._makedirs(posixpath.dirname(path), exist_ok=True)
            tmp = f"{path}.{uuid.uuid4().hex}.tmp"
            async with self.fs._pool.get() as ch:
                try:
                    floor = int((await ch.stat(path)).mtime) + 1
                except asyncssh.SFTPNoSuchFile:
                    floor = 0
                async with ch.open(tmp, "wb", asyncssh.SFTPAttrs(permissions=0o600)) as fh:
                    await fh.write(data)
                    stamp = max(int(time.time()), floor)
                    await fh.utime((stamp, stamp))
                await ch.posix_rename(tmp, path)
        self._run(go)

    def create(self, path: str, data: bytes) -> bool:
        import asyncssh
        from asyncssh.constants import FXF_CREAT, FXF_EXCL, FXF_WRITE

        async def go() -> bool:
            await self.fs._makedirs(posixpath.dirname(path), exist_ok=True)
            async with self.fs._pool.get() as ch:
                try:
                    fh = await ch.open(path, FXF_WRITE | FXF_CREAT | FXF_EXCL,
                                       asyncssh.SFTPAttrs(permissions=0o600), encoding=None)
                except asyncssh.SFTPError as exc:  # OpenSSH answers FX_FAILURE to EEXIST
                    if exc.code in (asyncssh.FX_FAILURE, asyncssh.FX_FILE_ALREADY_EXISTS):
                        return False
                    raise
                async with fh:
                    await fh.write(data)
            return True
        return self._run(go)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.fs.client.close()


class _S3(_FS):
    """``s3://``: one LIST for the versions, one GET or PUT per object."""

    def versions(self, base: str) -> dict[str, str]:
        self.fs.invalidate_cache()
        found = self.fs.find(base, detail=True)  # one ListObjectsV2 per 1000 keys
        rels = {name[len(base):].strip("/"): info for name, info in found.items()}
        return {rel[:-len(STATE) - 1]: str(info["ETag"]).strip('"')
                for rel, info in rels.items() if rel.count("/") == 1 and rel.endswith("/" + STATE)}

    def read(self, path: str) -> tuple[bytes, str] | None:
        bucket, key, _ = self.fs.split_path(path)

        async def go() -> tuple[bytes, str] | None:
            try:
                resp = await self.fs._call_s3("get_object", Bucket=bucket, Key=key)
            except FileNotFoundError:
                return None
            return bytes(await resp["Body"].read()), str(resp["ETag"]).strip('"')
        return self._run(go)

    def write(self, path: str, data: bytes) -> None:
        self.fs.pipe_file(path, data)  # one PUT replaces the object whole

    def create(self, path: str, data: bytes) -> bool:
        try:
            self.fs.pipe_file(path, data, mode="create")  # PUT with If-None-Match: *
        except FileExistsError:  # 412 Precondition Failed
            return False
        except OSError as exc:  # 409: a concurrent conditional PUT; try again
            if "ConditionalRequestConflict" in str(exc):
                return False
            raise
        return True

    def files(self, folder: str) -> list[str]:
        self.fs.invalidate_cache()
        return list(self.fs.find(folder))


def _open(url: str, options: dict[str, Any]) -> tuple[Any, str]:
    """The backend and base path behind ``url`` (copied from sync.open_destination)."""
    parts = urlsplit(url)
    scheme, path, extra = parts.scheme or "file", unquote(parts.path), dict(
        options.get("storage_options") or {})
    if "?" in url or "#" in url or ".." in path.split("/"):
        raise StateError(f"state URL {url!r} has a '?', '#' or '..'")
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise StateError(f"state URL {url!r}: write file:///absolute/path")
        return _Local(None), path.rstrip("/") or "/"
    if scheme in ("sftp", "ssh"):
        from ..sshlib import ssh_filesystem

        SSHFileSystem = ssh_filesystem()

        ssh = dict(options.get("ssh") or {})
        known = os.path.expanduser(str(ssh.get("known_hosts") or "~/.ssh/known_hosts"))
        if not os.path.isfile(known):
            raise StateError(f"no known_hosts file at {known}: facsimile verifies host keys")
        kwargs: dict[str, Any] = {
            "port": parts.port or int(ssh.get("port", 22)),
            "username": parts.username or ssh.get("user") or os.environ.get("USER", "root"),
            "known_hosts": known, "timeout": float(ssh.get("timeout", 20)),
            "skip_instance_cache": True,
            **({"client_keys": [os.path.expanduser(str(ssh["key"]))]} if ssh.get("key") else {})}
        try:
            fs = SSHFileSystem(parts.hostname, **kwargs, **extra)
        except Exception as exc:
            raise StateError(f"cannot connect to {url}: {type(exc).__name__}: {exc}") from exc
        return _SFTP(fs), path.rstrip("/") or "."
    if scheme == "s3":
        from s3fs import S3FileSystem

        s3 = dict(options.get("s3") or {})
        client = {k: s3[o] for k, o in (("endpoint_url", "endpoint_url"),
                                        ("region_name", "region")) if s3.get(o)}
        creds = {k: s3[k] for k in ("key", "secret") if s3.get(k)}
        fs = S3FileSystem(skip_instance_cache=True, client_kwargs=client, **creds, **extra)
        return _S3(fs), f"{parts.netloc}{path}".rstrip("/")
    raise StateError(f"unsupported state URL scheme {scheme!r} (file://, sftp://, s3://)")


def _age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    return f"{s // 60} min" if s < 3600 else f"{s // 3600} h {s % 3600 // 60} min"


class RemoteStore:
    """The state files and locks below one URL."""

    def __init__(self, url: str, **options: Any) -> None:
        self.url = url.rstrip("/")
        self._b, self.base = _open(url, options)

    def close(self) -> None:
        self._b.close()

    def _path(self, family: str, *more: str) -> str:
        if not family or family.startswith(".") or "/" in family or "\\" in family:
            raise StateError(f"{family!r} is not a family name")
        return posixpath.join(self.base, family, *more)

    def versions(self) -> dict[str, str]:
        """``{family: version token}`` for every state file, from one listing."""
        return {k: v for k, v in self._b.versions(self.base).items() if not k.startswith(".")}

    def read(self, family: str) -> tuple[bytes, str] | None:
        """The family's state and its version token, or None if it has none."""
        return self._b.read(self._path(family, STATE))

    def write(self, family: str, data: bytes) -> None:
        """Replace the family's state at once (hold its lock)."""
        self._b.write(self._path(family, STATE), data)

    def _record(self, path: str) -> dict[str, Any] | None:
        if (found := self._b.read(path)) is None:
            return None
        try:
            rec = json.loads(found[0])
        except ValueError:
            rec = None
        if not isinstance(rec, dict):
            rec = {"id": None, "holder": "an unreadable lock file"}
        return {**rec, "family": posixpath.basename(path)[:-len(".json")], "path": path}

    def _describe(self, rec: dict[str, Any]) -> str:
        created = rec.get("created")
        age = f" for {_age(time.time() - created)}" if isinstance(created, (int, float)) else ""
        return f"held by {rec.get('holder')}{age}"

    @contextlib.contextmanager
    def lock(self, family: str, *, timeout: float,
             holder: str | None = None) -> Iterator[dict[str, Any]]:
        """Hold the family's lock; wait for another holder up to ``timeout`` seconds."""
        path = posixpath.join(self.base, LOCKS, posixpath.basename(self._path(family)) + ".json")
        rec = {"id": uuid.uuid4().hex, "family": family,
               "holder": holder or f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}"}
        deadline, delay = time.monotonic() + timeout, 0.05
        while not self._b.create(path, json.dumps({**rec, "created": time.time()}).encode()):
            other = self._record(path)
            left = deadline - time.monotonic()
            if left <= 0:
                said = (f"{self._describe(other)}; if that run is gone: facs state unlock "
                        f"{other.get('id')}") if other else "it could not be created"
                raise StateError(f"state of family {family!r} is locked: {said} (waited "
                                 f"{timeout:g} s)", file=f"{self.url}/{LOCKS}/{family}.json")
            time.sleep(min(delay * random.uniform(0.5, 1.0), left))  # jitter: no lockstep
            delay = min(delay * 2, MAX_POLL)
        try:
            yield rec
        except BaseException:
            self._release(path, rec["id"], quiet=True)
            raise
        self._release(path, rec["id"], quiet=False)

    def _release(self, path: str, lock_id: str, *, quiet: bool) -> None:
        rec = self._record(path)
        if rec is not None and rec.get("id") == lock_id:
            self._b.remove(path)
        elif not quiet:
            raise StateError(f"lock {lock_id} was removed while this run held it (facs state "
                             "unlock?); another run may have written the state meanwhile",
                             file=path)

    def locks(self) -> list[dict[str, Any]]:
        """Every lock below the URL: id, family, holder, created, path."""
        names = sorted(n for n in self._b.files(posixpath.join(self.base, LOCKS))
                       if n.endswith(".json"))
        return [r for r in map(self._record, names) if r is not None]

    def unlock(self, lock_id: str) -> str:
        """Remove the lock with ``lock_id`` (one a gone run left); its family."""
        held = self.locks()
        for rec in held:
            if rec.get("id") == lock_id:
                again = self._record(rec["path"])
                if again is not None and again.get("id") == lock_id:
                    self._b.remove(rec["path"])
                return str(rec["family"])
        listed = "; ".join(f"{r.get('id')} ({r['family']}, {self._describe(r)})" for r in held)
        raise StateError(f"no lock has the id {lock_id!r}; "
                         + (f"the locks are: {listed}" if held else "no lock is held"),
                         file=self.url)
