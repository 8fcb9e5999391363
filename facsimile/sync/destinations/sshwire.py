"""What an ssh destination sends and reads besides SFTP requests: the text of
its one reading command (``survey_script``) and of its listing command, and
the parsing of what they print; the tar stream of a batch of puts; and the
connections of this process, one per host (``connect``, ``release``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import re
import secrets
import shlex
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from ...errors import SyncError
from ..scan import LocalFile
from .base import TMP_SUFFIX, Entry, tmp_name

LISTED = "'%s %T@ %m %p\\0'"  # find -printf: size, mtime, mode, path

#: open connections by (pid, host, port, user, settings); see ``connect``
_CONNECTIONS: dict[tuple[Any, ...], Any] = {}
_CONNECTING: dict[tuple[Any, ...], threading.Lock] = {}
_USERS: dict[tuple[Any, ...], int] = {}  # the callers of each that have not released it
_IDLE: OrderedDict[tuple[Any, ...], None] = OrderedDict()  # unused ones, the oldest first
_KEYS: dict[int, tuple[Any, ...]] = {}  # id of an open connection -> its key
_GUARD = threading.Lock()
IDLE_KEPT = 1024  # unused connections kept open for later targets and instances
#: a connection opened ahead that failed: (when, the error), for its caller (see ``connect``)
_FAILED: dict[tuple[Any, ...], tuple[float, SyncError]] = {}
FAILED_KEPT = 60.0


def finds(roots: list[str]) -> str:
    """The ``find -printf`` commands (run in the base) that list ``roots``."""
    parts = [f"find ./{shlex.quote(r)} -type f -printf {LISTED}" for r in roots if r]
    if "" in roots:
        parts.append(f"find . -maxdepth 1 -type f -printf {LISTED}")
    return "; ".join(parts) or "true"


def parse_listing(text: str) -> dict[str, Entry]:
    """The entries of ``finds``'s output; an mtime of whole seconds (one a put
    set) as the seconds alone, as SFTP shows it."""
    out: dict[str, Entry] = {}
    for item in text.split("\0"):
        size, mtime, mode, path = [*item.lstrip("\n").split(" ", 3), "", "", ""][:4]
        rel = path[2:] if path.startswith("./") else path
        if rel and size.isdigit():  # find printed only what the roots hold
            if "." in mtime:
                mtime = mtime.rstrip("0").rstrip(".")
            out[rel] = Entry(int(size), mtime, int(mode, 8))
    return out


def parse_sums(text: str) -> dict[str, str]:
    """``{rel: sha256}`` from ``sha256sum`` output lines."""
    out = {}
    for line in text.splitlines():
        word, _, rel = line.partition(" ")
        out[rel.lstrip(" ")] = word
    return out


def survey_script(base: str, records: list[str], roots: list[str],
                  digests: bool) -> tuple[str, str]:
    """The one command that reads a host (the paths of the files to digest on its
    stdin when ``digests``): each record, the listing of ``roots`` (both read in
    ``base``: none where there is no base yet), the host's clock (and whether it
    has perl) and the digests, each part after a random marker that no file
    holds. The marker, and the command."""
    mark = secrets.token_hex(16)
    parts = [f"if $here && [ -f {shlex.quote(r)} ]; then printf 1; cat {shlex.quote(r)}; fi"
             for r in records]
    parts.append(f"$here && {{ {finds(roots)}; }} 2>/dev/null")
    parts.append("date +%s; command -v perl >/dev/null 2>&1 && echo perl")
    if digests:
        parts.append("$here && xargs -0 -r sha256sum -- 2>/dev/null")
    return mark, (f"if cd {shlex.quote(base)} 2>/dev/null; then here=:; else here=false; fi; "
                  + "; ".join(f"printf %s {mark}; {p}" for p in parts) + "; true")


def split_survey(out: bytes, mark: str, records: list[str]) -> tuple[
        dict[str, bytes | None], dict[str, Entry], int | None, dict[str, str], bool]:
    """What ``survey_script`` printed: each record's bytes (None: not there), the
    listing, the host's clock (None if unreadable), the digests, and whether the
    host has perl."""
    parts = out.split(mark.encode())[1:]
    parts += [b""] * (len(records) + 3 - len(parts))
    got = {r: (parts[i][1:] if parts[i][:1] == b"1" else None) for i, r in enumerate(records)}
    text = [part.decode(errors="replace") for part in parts[len(records):]]
    said = text[1].split()
    clock = int(said[0]) if said and said[0].isdigit() else None
    return got, parse_listing(text[0]), clock, parse_sums(text[2]), "perl" in said[1:]


def folders_of(listing: Mapping[str, Entry]) -> frozenset[str]:
    """Every folder (relative, ``""`` excluded) that holds a file of ``listing``."""
    out: set[str] = set()
    for rel in listing:
        d = posixpath.dirname(rel)
        while d and d not in out:
            out.add(d)
            d = posixpath.dirname(d)
    return frozenset(out)


#: the tar member that names the files of a put, one after the other (see ``tar_bytes``)
PUT_LIST = ".facsimile/put-list"
#: the perl program that renames each file the put list (its first argument) names,
#: one after the other, from its temporary name into place, in one process on the
#: host (most hosts have perl); then removes the list. Its next two arguments are
#: the records the put holds besides, or two empty ones: the first (the pending
#: record) renamed in before any file, the second (the manifest) after every one,
#: then the first removed. The others are the put's new folders (see
#: ``new_roots``): each one unpacked whole at its own temporary name, renamed in
#: at once where it is still not there, else each of its files renamed into it
#: (its folders made first) and the rest removed.
RENAMES = r"""use File::Path qw(make_path remove_tree);
my ($list, $first, $last, @roots) = @ARGV;
sub tmp { (my $t = $_[0]) =~ s{([^/]*)$}{.$1%s}; $t }
my %%whole = map { ($_ => !(-e $_ || -l $_)) } @roots;
if ($first ne "") { rename(tmp($first), $first) or die "$first: $!\n" }
open(my $f, "<", $list) or die "$list: $!\n";
local $/ = "\0";
my %%moved;
while (my $rel = <$f>) {
  chomp $rel;
  my ($root, $up) = (undef, $rel);
  if (@roots) { while ($up =~ s{/[^/]*$}{}) { if (exists $whole{$up}) { $root = $up; last } } }
  if (!defined $root) { rename(tmp($rel), $rel) or die "$rel: $!\n" }
  elsif ($whole{$root}) { $moved{$root}++ or rename(tmp($root), $root) or die "$root: $!\n" }
  else {
    (my $dir = $rel) =~ s{/[^/]*$}{};
    make_path($dir);
    rename(tmp($root) . substr($rel, length $root), $rel) or die "$rel: $!\n";
  }
}
if ($last ne "") { rename(tmp($last), $last) or die "$last: $!\n"; unlink $first }
unlink $list;
remove_tree(map { tmp($_) } grep { !$whole{$_} } @roots);
"""

#: at most this many new folders of one put are unpacked whole (``new_roots``):
#: each is one more expression of the host tar's ``--transform``, tried on every name
NEW_ROOTS_MAX = 16
_PLAIN_PATH = re.compile(r"[\w.+@=,-]+(/[\w.+@=,-]+)*")  # nothing a sed expression reads


def new_roots(held: Mapping[str, int], folders: frozenset[str]) -> list[str]:
    """The highest folders of a put's files (``held``: how many each folder of
    them holds) that hold no file the survey listed (``folders``, see
    ``folders_of``): each is new to the host (or an empty folder), so that all
    its files can be unpacked below its temporary name and renamed in with one
    rename, not one per file. At most ``NEW_ROOTS_MAX`` of them, those with the
    most files; never ``.facsimile``; only names that need no quoting in a sed
    expression."""
    counts: dict[str, int] = {}
    for d, n in held.items():
        if not d or d in folders:
            continue
        root = d
        while (up := posixpath.dirname(root)) and up not in folders:
            root = up
        if root.split("/", 1)[0] != ".facsimile" and _PLAIN_PATH.fullmatch(root):
            counts[root] = counts.get(root, 0) + n
    return sorted(sorted(counts, key=lambda r: -counts[r])[:NEW_ROOTS_MAX])


def root_transforms(roots: list[str]) -> list[str]:
    """The host tar's ``--transform`` expressions (after the one that gives every
    file its temporary name) that move each file below one of the new ``roots``
    to its plain name below that root's temporary name."""
    dot = r"\."
    suffix = TMP_SUFFIX.replace(".", dot)
    return [rf"s|^{root.replace('.', dot)}/\(\(.*/\)\{{0,1\}}\)\.\([^/]*\){suffix}$"
            rf"|{tmp_name(root)}/\1\3|" for root in roots]


#: records a put's tar holds besides its files: (path, bytes) pairs (see ``RENAMES``)
Records = tuple[tuple[str, bytes], ...]


def _put_list(files: list[LocalFile], mtime: int | None,
              records: Records = ()) -> tuple[bytes, bytes]:
    """The members that open a put's tar (headers and padded contents): the
    ``PUT_LIST``, then the ``records``, each 0600; and the names themselves,
    NUL-separated."""
    import tarfile

    names = b"\0".join(f.rel.encode() for f in files)
    out = []
    for rel, data in ((PUT_LIST, names), *records):
        head = tarfile.TarInfo(rel)
        head.size, head.mode, head.mtime = len(data), 0o600, mtime or 0
        out += [head.tobuf(tarfile.GNU_FORMAT), data, b"\0" * (-len(data) % 512)]
    return b"".join(out), names


def _system_tar(files: list[LocalFile], mtime: int | None) -> list[str] | None:
    """The command line of the system's tar writing ``files`` (names on its stdin) to
    its stdout, each block as it is made; None without a system tar, or when the
    files do not all lie below one folder as their names say."""
    import shutil

    first = files[0]
    base = first.path[: len(first.path) - len(first.rel)]
    if not shutil.which("tar") or not all(f.path == base + f.rel for f in files):
        return None
    return ["tar", "-C", base, "--owner=0", "--group=0", "--numeric-owner", "--blocking-factor=1",
            *([f"--mtime=@{mtime}"] if mtime is not None else []), "--null", "-T", "-", "-cf", "-"]


def tar_bytes(files: list[LocalFile], mtime: int | None = None, records: Records = ()) -> bytes:
    """An uncompressed tar of the files to put, every mtime ``mtime`` when given,
    first a member ``PUT_LIST`` naming them and the ``records``: the system's tar
    when there is one (five times faster), else :mod:`tarfile`."""
    import io
    import subprocess
    import tarfile

    listed, names = _put_list(files, mtime, records)
    argv = _system_tar(files, mtime)
    if argv is not None:
        proc = subprocess.run(argv, input=names, capture_output=True)
        if proc.returncode == 0:
            return listed + proc.stdout
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for f in files:
            info = tar.gettarinfo(f.path, arcname=f.rel)
            info.mode = f.mode
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if mtime is not None:
                info.mtime = mtime
            with open(f.path, "rb") as fh:
                tar.addfile(info, fh)
    return listed + buf.getvalue()


#: the record GNU tar reads an archive in (its default blocking factor, 20 blocks)
TAR_RECORD = 20 * 512


#: zlib's gzip format: what the host's ``gzip -dc`` reads
GZIP_WBITS = 31


class TarStream:
    """A put's tar as the system's tar makes it, to be sent while it is made.

    :meth:`read` gives ``head`` (the ``PUT_LIST`` member and any records) first,
    then what the tar process writes (blocking factor 1: it ends right after its
    two zero blocks).
    Once it has ended, :meth:`tail` pads the archive with zeros to a whole
    :data:`TAR_RECORD`, so that the host's ``tar -x``, which reads whole records
    and stops at the end of the archive, has read the stream exactly to there;
    then one line: ``token`` when the tar process succeeded, else ``no``. The
    host renames the files in only on that token. ``compress``: all of it as one
    gzip stream (level 1, made here in the thread that reads the tar), which the
    host's ``gzip -dc`` hands to its command unchanged: a tar of small files is
    mostly headers and padding, ten kilobytes become a few hundred bytes. ``None``
    from :meth:`start`: no system tar here (send :func:`tar_bytes` then).
    """

    def __init__(self, head: bytes, proc: Any, writer: Any, compress: bool = False) -> None:
        import zlib

        self.head = head
        self.proc = proc
        self._writer = writer
        self.archive = 0  # bytes of the archive read so far, before any compression
        self._zip = zlib.compressobj(1, wbits=GZIP_WBITS) if compress else None

    @classmethod
    def start(cls, files: list[LocalFile], mtime: int | None, compress: bool = False,
              records: Records = ()) -> TarStream | None:
        import subprocess

        argv = _system_tar(files, mtime)
        if argv is None:
            return None
        head, names = _put_list(files, mtime, records)
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)

        def feed() -> None:  # in a thread: tar writes its stdout while it reads the names
            with contextlib.suppress(OSError):
                proc.stdin.write(names)
            with contextlib.suppress(OSError):
                proc.stdin.close()

        writer = threading.Thread(target=feed, daemon=True, name="facsimile-tar-names")
        writer.start()
        return cls(head, proc, writer, compress)

    def read(self, size: int = 1 << 18) -> bytes:
        """The next bytes to send (the head first; b"" once the tar process has
        written everything); blocks."""
        while True:
            if self.head:
                data, self.head = self.head, b""
            else:
                data = os.read(self.proc.stdout.fileno(), size)
                if not data:
                    return b""
            self.archive += len(data)
            out = data if self._zip is None else self._zip.compress(data)
            if out:
                return out

    def tail(self, token: str) -> bytes:
        """What follows the archive: the padding and the line that says whether the
        tar process succeeded (waits for it to end), and the end of the gzip stream."""
        self._writer.join()
        ok = self.proc.wait() == 0
        rest = b"\0" * (-self.archive % TAR_RECORD) + f"{token if ok else 'no'}\n".encode()
        return rest if self._zip is None else self._zip.compress(rest) + self._zip.flush()

    def close(self) -> None:
        """Stop the tar process if it still runs, and reap it."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.kill()
        self.proc.wait()
        with contextlib.suppress(OSError):
            self.proc.stdout.close()
        self._writer.join(timeout=5)


class OneChannel:
    """sshfs's channel pool as one SFTP channel that every request shares, opened
    at the first request. SFTP requests on one channel are pipelined (sent
    without waiting for the answers before); sshfs's own pool opens a channel
    per four requests waiting, one after the other, three round trips each."""

    def __init__(self, client: Any, *, sftp_client_kwargs: dict | None = None,
                 **_: Any) -> None:
        self.client = client
        self.kwargs = sftp_client_kwargs or {}
        self.opening: asyncio.Future[Any] | None = None

    @contextlib.asynccontextmanager
    async def get(self) -> Any:
        """The channel (a context manager, as sshfs's pools give theirs)."""
        if self.opening is None or (self.opening.done() and self.opening.exception()):
            self.opening = asyncio.ensure_future(self.client.start_sftp_client(**self.kwargs))
        yield await asyncio.shield(self.opening)

    @property
    def active_channels(self) -> int:
        return int(self.opening is not None and self.opening.done()
                   and not self.opening.exception())

    async def close(self) -> None:
        if self.active_channels and self.opening is not None:
            channel = self.opening.result()
            channel.exit()
            with contextlib.suppress(Exception):
                await channel.wait_closed()


def connect(make: Callable[..., Any], host: str, kwargs: Mapping[str, Any], name: str,
            ahead: bool = False) -> Any:
    """The open connection (an ``SSHFileSystem``) to ``host`` with these settings
    for the deployment's host ``name``: the one this process opened already while
    it is open, else a new one, made once however many threads ask for it at the
    same moment. Hosts of one name share it (every target and instance on it);
    two names are two connections even to one address, so that ``deploy.jobs``
    hosts run at once as they would on their own machines. Each caller gives it
    back with ``release``. ``ahead``: opened ahead of its use (see
    ``Destination.warm``): should it fail, the next caller, within
    ``FAILED_KEPT`` seconds, gets that failure rather than waiting for one more."""
    key = (os.getpid(), name, host, repr(sorted(kwargs.items())))
    with _GUARD:
        gate = _CONNECTING.setdefault(key, threading.Lock())
    with gate:
        with _GUARD:
            fs = _CONNECTIONS.get(key)
            if fs is not None and not fs.client.is_closed():
                _USERS[key] = _USERS.get(key, 0) + 1
                _IDLE.pop(key, None)
                return fs
        failed = _FAILED.pop(key, None)
        if failed is not None and time.monotonic() - failed[0] < FAILED_KEPT:
            raise failed[1]
        try:
            fs = make(host, **kwargs)
        except Exception as exc:
            why = (f"no answer within {kwargs['timeout']:g}s (deploy.ssh.timeout)"
                   if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}")
            error = SyncError(f"cannot connect: {why}")
            if ahead:
                _FAILED[key] = (time.monotonic(), error)
            raise error from exc
        with _GUARD:
            _CONNECTIONS[key] = fs
            _USERS[key] = 1
            _KEYS[id(fs)] = key
        return fs


def release(fs: Any) -> None:
    """``fs`` is no longer used by its caller. Once no one uses it, it is kept
    open for the next target or instance on its host, among the ``IDLE_KEPT``
    connections left unused the latest; the one left unused the longest beyond
    those is closed, so that a fleet of many thousands of hosts holds the
    memory of about a thousand connections (some 70 kB each), not of every
    host; up to that, every host keeps one connection for the whole run."""
    closing = []
    with _GUARD:
        key = _KEYS.get(id(fs))
        if key is None or _CONNECTIONS.get(key) is not fs:
            return
        _USERS[key] = max(0, _USERS.get(key, 1) - 1)
        if _USERS[key]:
            return
        _IDLE[key] = None
        while len(_IDLE) > IDLE_KEPT:
            old, _ = _IDLE.popitem(last=False)
            gone = _CONNECTIONS.pop(old, None)
            _USERS.pop(old, None)
            if gone is not None:
                _KEYS.pop(id(gone), None)
                closing.append(gone)
    for gone in closing:
        with contextlib.suppress(Exception):
            gone.loop.call_soon_threadsafe(gone.client.close)
