"""A put's tar streamed while the system's tar makes it: the host's GNU tar reads
the stream exactly to the end of the archive, whatever the archive's length, so
the line after it (the token saying the tar here succeeded) is what the host's
command reads next; without that token the host renames nothing in."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
import zlib
from pathlib import Path

import pytest
from servers import sshd  # noqa: F401  (fixture)

from facsimile.sync.destinations import open_destination
from facsimile.sync.destinations.base import TMP_SUFFIX
from facsimile.sync.destinations.sshwire import GZIP_WBITS, PUT_LIST, TAR_RECORD, TarStream
from facsimile.sync.scan import scan_build

TOKEN = "0123456789abcdef"
RENAME = f"s,\\([^/]*\\)$,.\\1{TMP_SUFFIX},"


def _build(root: Path, count: int, big: int = 0) -> list:
    for i in range(count):
        path = root / f"d{i % 3}" / f"file-{i}.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"value {i}\n" + ("x" * 600 if i < big else ""))
    return list(scan_build(root).values())


def _streamed(stream: TarStream) -> tuple[bytes, int]:
    """The whole stream (gunzipped if it was gzipped), and the length of its
    archive (the part before the tail)."""
    data = b""
    while chunk := stream.read():
        data += chunk
    data += stream.tail(TOKEN)
    if stream._zip is not None:
        assert data[:2] == b"\x1f\x8b"
        data = zlib.decompress(data, wbits=GZIP_WBITS)
    return data, stream.archive


def _unpack(data: bytes, into: Path, gzipped: bool = False) -> str:
    """What a host's command reads after ``tar -x`` of ``data`` (through ``gzip -dc``
    first when ``gzipped``, as a put's command does)."""
    into.mkdir()
    script = (f"tar --no-same-owner --transform '{RENAME}' -xpf - && "
              "{ IFS= read -r go || go=; printf %s \"$go\"; }")
    done = subprocess.run(f"gzip -dc | sh -c {shlex.quote(script)}" if gzipped else script,
                          shell=True, input=data, cwd=into, capture_output=True, check=True)
    return done.stdout.decode()


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzipped"])
def test_the_host_reads_the_token_right_after_the_archive_at_every_alignment(
        tmp_path: Path, gzipped: bool) -> None:
    residues = set()
    for n, (count, big) in enumerate((c, b) for c in range(1, 22) for b in (0, 1)):
        files = _build(tmp_path / f"b{n}", count, big)
        stream = TarStream.start(files, 1_700_000_000, compress=gzipped)
        assert stream is not None, "this machine has a system tar"
        try:
            data, archive = _streamed(stream)
        finally:
            stream.close()
        assert archive % 512 == 0 and data[archive - 1024:archive] == b"\0" * 1024
        residues.add((archive // 512 - 2) % (TAR_RECORD // 512))  # its first zero block
        assert (len(data) - len(TOKEN) - 1) % TAR_RECORD == 0
        out = tmp_path / f"out{n}"
        if gzipped:  # what is sent is the gzip of it all, the host's command reads it
            stream = TarStream.start(files, 1_700_000_000, compress=True)
            assert stream is not None
            try:
                sent = b"".join(iter(stream.read, b"")) + stream.tail(TOKEN)
            finally:
                stream.close()
            assert _unpack(sent, out, gzipped=True) == TOKEN
        else:
            assert _unpack(data, out) == TOKEN
        for f in files:
            rel = Path(f.rel)
            kept = out / rel.parent / f".{rel.name}{TMP_SUFFIX}"
            assert kept.read_bytes() == Path(f.path).read_bytes()
            assert os.stat(kept).st_mtime == 1_700_000_000
    # the archive's first zero block fell on the last block of a record, where the
    # host's tar must read one record more to find the second
    assert TAR_RECORD // 512 - 1 in residues
    assert len(residues) > 10


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzipped"])
def test_a_tar_that_fails_here_ends_its_stream_without_the_token(tmp_path: Path,
                                                                 gzipped: bool) -> None:
    files = _build(tmp_path / "b", 60)
    os.unlink(files[30].path)  # gone since the scan: this tar cannot read it
    stream = TarStream.start(files, None, compress=gzipped)
    assert stream is not None
    try:
        data, _ = _streamed(stream)
    finally:
        stream.close()
    assert data.endswith(b"\nno\n") or data.endswith(b"\0no\n")
    assert not data.endswith(f"{TOKEN}\n".encode())


def _files(dest_base: Path) -> list[str]:
    return sorted(str(p.relative_to(dest_base)) for p in dest_base.rglob("*") if p.is_file())


@pytest.mark.parametrize("ok", [True, False])
def test_a_streamed_put_renames_in_only_when_the_tar_here_succeeded(
        sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ok: bool) -> None:  # noqa: F811
    files = _build(tmp_path / "BUILD", 80)
    base = tmp_path / "dest"
    deploy = sshd.deploy(str(base))
    dest = open_destination(deploy["url"].replace("{host}", "h1"), deploy, "app/h1")
    if not ok:  # as when the tar here fails: everything sent, then "no"
        real = TarStream.tail
        monkeypatch.setattr(TarStream, "tail", lambda self, token: real(self, "no"))
    try:
        stamp = dest._put_tar(files)
    finally:
        dest.close()
    placed = _files(base / "h1")
    if ok:
        assert stamp is not None and stamp.isdigit()
        assert placed == sorted(f.rel for f in files)
        for f in files:
            assert (base / "h1" / f.rel).read_bytes() == Path(f.path).read_bytes()
    else:
        assert stamp is None  # the caller puts them over SFTP instead
        assert placed == []  # nothing renamed in, no temporary file left
    assert PUT_LIST not in placed


def test_a_host_that_stops_reading_ends_the_streamed_put(
        sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """The host's command fails before it reads the stream (a file stands where a
    folder must be made): the put ends at once with no stamp (the caller falls
    back to SFTP, which names the error), and the tar here is stopped."""
    files = _build(tmp_path / "BUILD", 3000)
    base = tmp_path / "dest"
    (base / "h1").mkdir(parents=True)
    (base / "h1" / "d1").write_text("a file, not a folder\n")
    deploy = sshd.deploy(str(base))
    dest = open_destination(deploy["url"].replace("{host}", "h1"), deploy, "app/h1")
    started: list[TarStream] = []
    real = TarStream.start

    def start(files: list, mtime: int | None, compress: bool = False,
              records: tuple = ()) -> TarStream | None:
        started.append(real(files, mtime, compress, records))
        return started[-1]

    monkeypatch.setattr(TarStream, "start", staticmethod(start))
    try:
        assert dest._put_tar(files) is None
    finally:
        dest.close()
    assert started and started[0].proc.returncode is not None  # reaped, not left running
    assert _files(base / "h1") == ["d1"]


@pytest.mark.parametrize("has_gzip", [True, False], ids=["gzip", "no gzip"])
def test_a_put_goes_gzipped_where_the_host_has_gzip_else_plain(
        sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, has_gzip: bool) -> None:  # noqa: F811
    """A tar of 500 small files goes as a small fraction of its size; a host without
    gzip (here: one whose shell does not find it) gets the same put plain."""
    files = _build(tmp_path / "BUILD", 500)
    base = tmp_path / "dest"
    deploy = sshd.deploy(str(base))
    host = "h1" if has_gzip else "nogzip"  # its connection stays marked for the process
    dest = open_destination(deploy["url"].replace("{host}", host), deploy, f"app/{host}")
    sent: list[tuple[bool, int, int]] = []  # (gzipped, bytes sent, archive)
    real_read, real_tail = TarStream.read, TarStream.tail
    counted: dict[int, int] = {}

    def read(self: TarStream, size: int = 1 << 18) -> bytes:
        out = real_read(self, size)
        counted[id(self)] = counted.get(id(self), 0) + len(out)
        return out

    def tail(self: TarStream, token: str) -> bytes:
        out = real_tail(self, token)
        sent.append((self._zip is not None, counted.get(id(self), 0) + len(out), self.archive))
        return out

    monkeypatch.setattr(TarStream, "read", read)
    monkeypatch.setattr(TarStream, "tail", tail)
    if not has_gzip:
        client = dest.fs.client
        real_create = client.create_process

        def create_process(command: str, **kw: object) -> object:
            return real_create(command.replace("command -v gzip ", "command -v no-such-gzip "),
                               **kw)

        monkeypatch.setattr(client, "create_process", create_process)
    try:
        stamp = dest._put_tar(files)
        assert dest.gzip is has_gzip  # learnt from the host's answer
        again = open_destination(deploy["url"].replace("{host}", host) + "/b", deploy,
                                 f"app/{host}")
        try:  # another target on that host's connection knows it already
            assert again.fs is dest.fs and again.gzip is has_gzip
        finally:
            again.close()
    finally:
        dest.close()
    assert stamp is not None and stamp.isdigit()
    assert _files(base / host) == sorted(f.rel for f in files)
    for f in files:
        assert (base / host / f.rel).read_bytes() == Path(f.path).read_bytes()
    gzipped, size, archive = sent[-1]
    assert gzipped is has_gzip  # without gzip: after a first try the host turned down
    assert len(sent) == 1 or not has_gzip
    assert size < archive / 10 if has_gzip else size > archive


def _host_shells(token: str) -> list[str]:
    """The host's processes (this machine's: the sshd is on 127.0.0.1) whose command
    line holds ``token``."""
    ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True)
    return [line for line in ps.stdout.splitlines() if token in line and "ps -ww" not in line]


def _gone(token: str) -> bool:
    for _ in range(100):  # bounded: ten seconds at most
        if not _host_shells(token):
            return True
        time.sleep(0.1)
    return False


def _kept_token(dest: object) -> str:
    """The random end marker in the command line of a destination's kept shell."""
    return str(dest._kept.command).split("printf '%s\\n' ", 1)[1].split(";", 1)[0]


def _survey(dest: object, files: list) -> object:
    return dest.survey([".facsimile/manifest.json"], [""], [], expected=len(files))


def test_a_put_after_the_survey_goes_to_the_surveys_shell_and_none_is_left(
        sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A large host's survey keeps its shell for the put that may follow; a put
    uses it (no second command), a re-survey ends the first, and closing the
    destination ends one no put used: no shell is left on the host."""
    from facsimile.sync.destinations import ssh

    monkeypatch.setattr(ssh, "COMMAND_SURVEY_FROM", 50)
    files = _build(tmp_path / "BUILD", 120)
    base = tmp_path / "dest"
    deploy = sshd.deploy(str(base))
    dest = open_destination(deploy["url"].replace("{host}", "h1"), deploy, "app/h1")
    started: list[str] = []
    real = dest.fs.client.create_process

    def create_process(command: str, **kw: object) -> object:
        started.append(command)
        return real(command, **kw)

    monkeypatch.setattr(dest.fs.client, "create_process", create_process)
    try:
        _survey(dest, files)
        first = _kept_token(dest)
        assert _host_shells(first), "the survey's shell waits on the host"
        _survey(dest, files)  # as a re-plan does: the first shell is ended
        second = _kept_token(dest)
        assert _gone(first) and _host_shells(second)
        stamp = dest._put_tar(files)
        assert stamp is not None and stamp.isdigit()
        assert len(started) == 2 and dest._kept is None  # the put started no command
        assert _gone(second)
        assert _files(base / "h1") == sorted(f.rel for f in files)
        _survey(dest, files)  # a no-op: nothing follows its survey
        third = _kept_token(dest)
    finally:
        dest.close()
    assert _gone(third)


def test_one_kept_shell_a_connection(sshd, tmp_path: Path,  # noqa: F811
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Two targets on one host share its connection: the second's survey runs as a
    plain command, and both puts land."""
    from facsimile.sync.destinations import ssh

    monkeypatch.setattr(ssh, "COMMAND_SURVEY_FROM", 50)
    files = _build(tmp_path / "BUILD", 120)
    deploy = sshd.deploy(str(tmp_path / "dest"))
    url = deploy["url"].replace("{host}", "h1")
    a = open_destination(url + "/a", deploy, "app/h1")
    b = open_destination(url + "/b", deploy, "app/h1")
    try:
        assert a.fs is b.fs
        _survey(a, files)
        _survey(b, files)
        assert a._kept is not None and b._kept is None
        assert b._put_tar(files) is not None and a._put_tar(files) is not None
        assert a._kept is None
    finally:
        a.close()
        b.close()
    for sub in ("a", "b"):
        assert _files(tmp_path / "dest/h1" / sub) == sorted(f.rel for f in files)


def test_a_kept_surveys_long_listing_is_read_whole(sshd, tmp_path: Path,  # noqa: F811
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The survey's output is read to its end marker however long it is (a large
    manifest and a listing of 10,000 files of long names: more than the channel's
    reader holds at once)."""
    from facsimile.sync.destinations import ssh

    monkeypatch.setattr(ssh, "COMMAND_SURVEY_FROM", 50)
    here = tmp_path / "dest/h1"
    names = [f"etc/d{i % 7}/{'n' * 80}-{i}.conf" for i in range(10_000)]
    for name in names:
        (here / name).parent.mkdir(parents=True, exist_ok=True)
        (here / name).write_bytes(b"x")
    record = b"{" + b"x" * 3_000_000 + b"}\n"  # a manifest of some 20,000 files is as long
    (here / ".facsimile").mkdir()
    (here / ".facsimile/manifest.json").write_bytes(record)
    deploy = sshd.deploy(str(tmp_path / "dest"))
    dest = open_destination(deploy["url"].replace("{host}", "h1"), deploy, "app/h1")
    try:
        found = dest.survey([".facsimile/manifest.json"], ["etc"], [], expected=len(names))
        assert dest._kept is not None
    finally:
        dest.close()
    assert found.records[".facsimile/manifest.json"] == record
    assert sorted(found.listing) == sorted(names)
    assert dest.clock is not None and abs(dest.clock - time.time()) < 60
