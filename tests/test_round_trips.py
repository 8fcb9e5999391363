"""What a sync costs each ssh host, counted on the real connection to the real
sshd: connections opened, remote commands run, SFTP requests sent, and round
trips (a request sent while none of this process's is outstanding starts one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
from asyncssh.sftp import SFTPClientHandler
from servers import SSHServer, sshd  # noqa: F401  (fixture)

from facsimile.sync import sync_instance
from facsimile.sync.destinations import ssh, sshwire

pytestmark = pytest.mark.slow


@dataclasses.dataclass
class Counts:
    connections: int = 0
    execs: int = 0
    requests: int = 0
    round_trips: int = 0
    outstanding: int = 0
    commands: list[str] = dataclasses.field(default_factory=list)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counts]:
    """Count on the live connection: wrap asyncssh's connect, the one call that
    starts a command (``run`` calls it too; a streamed put calls it itself) and the
    SFTP client's one request path (every SFTP call goes through it)."""
    counts = Counts()
    connect, start, request = asyncssh.connect, \
        asyncssh.SSHClientConnection.create_process, SFTPClientHandler._make_request

    def counting_connect(*args: object, **kwargs: object) -> object:
        counts.connections += 1
        return connect(*args, **kwargs)

    async def counting_start(self: asyncssh.SSHClientConnection, command: str,
                             *args: object, **kwargs: object) -> object:
        counts.execs += 1
        counts.commands.append(command)
        return await start(self, command, *args, **kwargs)

    async def counting_request(self: SFTPClientHandler, *args: object) -> object:
        counts.requests += 1
        if counts.outstanding == 0:
            counts.round_trips += 1
        counts.outstanding += 1
        try:
            return await request(self, *args)
        finally:
            counts.outstanding -= 1

    monkeypatch.setattr(asyncssh, "connect", counting_connect)
    monkeypatch.setattr(asyncssh.SSHClientConnection, "create_process", counting_start)
    monkeypatch.setattr(SFTPClientHandler, "_make_request", counting_request)
    monkeypatch.setattr(sshwire, "_CONNECTIONS", {})  # this test's run starts with none open
    yield counts


def reset(counts: Counts, new_run: bool = True) -> None:
    """Zero the counts; ``new_run``: as a new process would, open connections afresh."""
    counts.__init__()  # type: ignore[misc]
    if new_run:
        sshwire._CONNECTIONS.clear()


def make_build(build: Path, n: int) -> None:
    for i in range(n):
        p = build / f"etc/d{i % 10}/f{i}.conf"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"key_{i} = {i}\n")


def push(tmp: Path, server: SSHServer, build: Path, instance: str = "dev",
         hosts: tuple[str, ...] = ("h1",), **deploy: object) -> None:
    outs: list[str] = []
    code = sync_instance(instance=instance, project="rt", root=tmp, build_dir=build,
                         deploy=server.deploy(str(tmp / "dest"), **deploy),
                         targets={"app": {"hosts": list(hosts)}}, out=outs.append)
    assert code == 0, "\n".join(outs)


def cost(tmp: Path, server: SSHServer, n: int, counts: Counts) -> dict[str, Counts]:
    """The counts of a first sync, a no-op and a sync of three changed files, for a
    build of ``n`` files."""
    build = tmp / f"BUILD-{n}/dev"
    make_build(build, n)
    out = {}
    reset(counts)
    push(tmp / str(n), server, build)
    out["first"] = dataclasses.replace(counts)
    reset(counts)
    push(tmp / str(n), server, build)
    out["no-op"] = dataclasses.replace(counts)
    for i in (1, 2, 3):
        (build / f"etc/d{i}/f{i}.conf").write_text(f"key_{i} = changed\n")
    reset(counts)
    push(tmp / str(n), server, build)
    out["three puts"] = dataclasses.replace(counts)
    return out


def test_round_trips_per_host_do_not_grow_with_the_files(
        tmp_path: Path, sshd: SSHServer, counted: Counts) -> None:  # noqa: F811
    """A host of fewer than ``COMMAND_SURVEY_FROM`` files is read over SFTP: no
    command starts on it but the tar stream of a first sync of many files."""
    small, large = cost(tmp_path, sshd, 60, counted), cost(tmp_path, sshd, 600, counted)
    for c in (*small.values(), *large.values()):
        assert c.connections == 1
    # a no-op: the manifest, the pending record and every folder read at once,
    # about four round trips a folder depth (open, read, read to the end, close),
    # the same requests whatever the number of files
    s, b = small["no-op"], large["no-op"]
    assert s.execs == b.execs == 0, (s.commands, b.commands)
    assert max(s.round_trips, b.round_trips) <= 24 and b.requests - s.requests <= 4, (s, b)
    # three puts: the same reads, then a fixed handful of SFTP requests (how many
    # of them overlap, and so the round trips, depends on timing)
    s, b = small["three puts"], large["three puts"]
    assert s.execs == b.execs == 0
    # (the larger manifest is read and written in more blocks, in the same round trips)
    assert max(s.round_trips, b.round_trips) <= 50 and b.requests - s.requests <= 10, (s, b)
    # a first sync of many files: one tar stream, its files renamed in by the
    # same command: ten times the files, about the same SFTP requests and round
    # trips (renamed one at a time over SFTP, 540 more requests)
    s, b = small["first"], large["first"]
    assert s.execs == b.execs == 1
    assert b.requests <= s.requests + 20 and b.round_trips <= s.round_trips + 6, (s, b)


def test_a_host_of_many_files_is_read_with_one_command(
        tmp_path: Path, sshd: SSHServer, counted: Counts,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """From ``COMMAND_SURVEY_FROM`` files on (50 here, 1,000 by default), one
    command reads the host: a no-op sends no SFTP request at all."""
    monkeypatch.setattr(ssh, "COMMAND_SURVEY_FROM", 50)
    small, large = cost(tmp_path, sshd, 60, counted), cost(tmp_path, sshd, 600, counted)
    for c in (small["no-op"], large["no-op"]):
        assert (c.connections, c.execs, c.requests, c.round_trips) == (1, 1, 0, 0), c.commands
    s, b = small["three puts"], large["three puts"]
    assert s.execs == b.execs == 1
    assert max(s.round_trips, b.round_trips) <= 24, (s, b)
    assert abs(s.round_trips - b.round_trips) <= 2, (s, b)
    s, b = small["first"], large["first"]
    # the reading command, whose shell then reads the put's command and the tar stream
    assert s.execs == b.execs == 1, (s.commands, b.commands)


def test_without_tar_a_sync_runs_no_command(
        tmp_path: Path, sshd: SSHServer, counted: Counts,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``deploy.ssh.tar: false``: no command, however many files (the threshold
    of a reading command is 50 here); a no-op sends the same SFTP requests,
    a few round trips a folder depth, whatever the number of files."""
    monkeypatch.setattr(ssh, "COMMAND_SURVEY_FROM", 50)
    noops = []
    for n in (20, 200):
        build = tmp_path / f"BUILD-{n}/dev"
        make_build(build, n)
        for _ in ("first", "no-op"):
            reset(counted)
            push(tmp_path / str(n), sshd, build, ssh={**sshd.deploy("")["ssh"], "tar": False})
            assert (counted.connections, counted.execs) == (1, 0)
        noops.append(dataclasses.replace(counted))
    s, b = noops
    assert b.requests - s.requests <= 4 and max(s.round_trips, b.round_trips) <= 25, noops


def test_targets_instances_and_postcmd_of_a_host_share_one_connection(
        tmp_path: Path, sshd: SSHServer, counted: Counts) -> None:  # noqa: F811
    build = tmp_path / "BUILD/dev"
    make_build(build, 5)
    log = tmp_path / "ran"
    deploy = sshd.deploy(str(tmp_path / "dest"), postcmd=[f"echo $PPID >> {log}"])
    deploy["url"] += "/{target}"  # two targets of one host: two destinations there
    for instance in ("dev", "dev2"):  # two instances in the same run
        outs: list[str] = []
        code = sync_instance(instance=instance, project="rt", root=tmp_path, build_dir=build,
                             deploy=deploy, targets={"web": {"hosts": ["h1"]},
                                                     "db": {"hosts": ["h1"]}},
                             out=outs.append, always=True)
        assert code == 0, "\n".join(outs)
    assert (tmp_path / "dest/h1/web/etc/d1/f1.conf").exists()
    assert (tmp_path / "dest/h1/db/etc/d1/f1.conf").exists()
    assert counted.connections == 1
    # four postcmds, each from the one sshd session process of that connection
    assert len(set(log.read_text().split())) == 1 and len(log.read_text().split()) == 4
    reset(counted, new_run=False)
    push(tmp_path, sshd, build, hosts=("h1", "h2"))
    assert counted.connections == 1  # h1's is open already; h2 gets its own


def test_connections_left_unused_beyond_the_kept_ones_are_closed(
        tmp_path: Path, sshd: SSHServer, counted: Counts,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A fleet holds the memory of ``IDLE_KEPT`` unused connections, not of
    every host: the host left unused the longest is closed, and a later sync
    to it connects again; the ones kept are reused."""
    monkeypatch.setattr(sshwire, "IDLE_KEPT", 2)
    build = tmp_path / "BUILD/dev"
    make_build(build, 3)
    hosts = tuple(f"h{i}" for i in range(6))
    push(tmp_path, sshd, build, hosts=hosts, jobs=1)  # one host at a time, in order
    assert counted.connections == 6
    kept = [fs for fs in sshwire._CONNECTIONS.values() if not fs.client.is_closed()]
    assert len(sshwire._CONNECTIONS) == 2 and len(kept) == 2
    reset(counted, new_run=False)
    push(tmp_path, sshd, build, hosts=hosts[-2:], jobs=1)  # the two kept: reused
    assert counted.connections == 0
    push(tmp_path, sshd, build, hosts=hosts[:1], jobs=1)  # closed: connects again
    assert counted.connections == 1


def test_a_first_sync_of_many_files_puts_its_records_with_them(
        tmp_path: Path, sshd: SSHServer, counted: Counts,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A first sync of a host read with one command (its clock and perl known):
    the pending record and the manifest go in the tar stream with the files
    and the host's perl renames them in, around the files; no record is written
    over SFTP. The manifest it leaves is the one the SFTP way writes: each
    file's digest and mode, and its size and mtime as the host shows them."""
    import json
    import os

    from facsimile.sync.destinations.sshwrites import SFTPWrites
    from facsimile.sync.scan import scan_build

    monkeypatch.setattr(ssh, "COMMAND_SURVEY_FROM", 50)
    written: list[str] = []
    real = SFTPWrites._write_async

    async def write(self: SFTPWrites, rel: str, *args: object) -> object:
        written.append(rel)
        return await real(self, rel, *args)

    monkeypatch.setattr(SFTPWrites, "_write_async", write)
    build = tmp_path / "BUILD/dev"
    make_build(build, 120)
    (build / "etc/d0/f0.conf").chmod(0o600)
    push(tmp_path, sshd, build)
    assert counted.execs == 1 and written == [], (counted.commands, written)
    host = tmp_path / "dest/h1"
    doc = json.loads((host / ".facsimile/manifest.json").read_text())
    files = scan_build(build)
    assert set(doc["files"]) == set(files)
    for rel, f in files.items():
        st = os.stat(host / rel)
        assert doc["files"][rel] == {"digest": f.digest, "mode": f.mode, "size": st.st_size,
                                     "mtime": str(int(st.st_mtime))}, rel
    assert os.stat(host / ".facsimile/manifest.json").st_mode & 0o777 == 0o600
    assert not (host / ".facsimile/pending.json").exists()
    assert not [p for p in host.rglob("*") if "facsimile-tmp" in p.name or p.name == "put-list"]
    # the next sync finds nothing to do, and a change goes the SFTP way again
    reset(counted)
    push(tmp_path, sshd, build)
    assert written == [] and counted.requests == 0
    (build / "etc/d1/f1.conf").write_text("changed\n")
    push(tmp_path, sshd, build)
    assert ".facsimile/manifest.json" in written and ".facsimile/pending.json" in written


def _cached_push(tmp: Path, server: SSHServer, build: Path, port: int | None = None) -> list[str]:
    """A sync as ``facs sync`` runs it, with the build's digests kept (a scan cache
    that knows the build's files: the sync then warms the hosts while it scans)."""
    from facsimile.build.digests import JsonCache

    deploy = server.deploy(str(tmp / "dest"))
    if port is not None:
        deploy["url"] = deploy["url"].replace(f":{server.port}/", f":{port}/")
    outs: list[str] = []
    cache = JsonCache(tmp / "scan-dev.json", lambda: b"k" * 32)
    cache.update({f"old{i}": [] for i in range(ssh.COMMAND_SURVEY_FROM)})  # the last scan's
    sync_instance(instance="dev", project="rt", root=tmp, build_dir=build, deploy=deploy,
                  targets={"app": {"hosts": ["h1"]}}, out=outs.append, scan_cache=cache)
    return outs


def test_a_host_s_shell_starts_while_the_build_is_scanned(
        tmp_path: Path, sshd: SSHServer, counted: Counts,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The shell of the host's survey (its login shell's start is the slowest
    part of it) is started while the build is scanned, and the survey and the put
    go to it: one command on the host in all."""
    import threading

    from facsimile.sync import jobs

    monkeypatch.setattr(ssh, "COMMAND_SURVEY_FROM", 50)
    started = threading.Event()
    start = asyncssh.SSHClientConnection.create_process

    async def starting(self: asyncssh.SSHClientConnection, *args: object, **kwargs: object):
        started.set()
        return await start(self, *args, **kwargs)

    monkeypatch.setattr(asyncssh.SSHClientConnection, "create_process", starting)
    scan = jobs.scan_build

    def slow_scan(*args: object) -> object:  # the scan waits for the shell (10 s at most)
        assert started.wait(10), "no shell was started while the build was scanned"
        return scan(*args)

    monkeypatch.setattr(jobs, "scan_build", slow_scan)
    build = tmp_path / "BUILD/dev"
    make_build(build, 120)
    outs = _cached_push(tmp_path, sshd, build)
    assert any("120 put" in line for line in outs), outs
    assert counted.connections == 1 and counted.execs == 1, counted.commands
    assert counted.commands[0] == 'IFS= read -r next || exit 0; eval "$next"'
    assert len(list((tmp_path / "dest/h1/etc").rglob("*.conf"))) == 120


def test_a_host_that_cannot_be_reached_is_tried_once(
        tmp_path: Path, sshd: SSHServer, counted: Counts) -> None:  # noqa: F811
    """The warm-up's failure to connect is the job's: one attempt, one message."""
    from servers import free_port

    build = tmp_path / "BUILD/dev"
    make_build(build, 60)
    outs = _cached_push(tmp_path, sshd, build, port=free_port())  # nothing listens there
    assert counted.connections == 1, outs
    assert any("app/h1" in line and "cannot connect" in line for line in outs), outs


def test_a_first_sync_whose_renames_fail_falls_back_with_its_pending_record(
        tmp_path: Path, sshd: SSHServer, counted: Counts,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The host's perl cannot rename one file in (a folder of the host's own has
    its name): the put with its records failed, and the sync does not take them
    as written. The files go the SFTP way after a pending record; the failed
    host keeps that record and no manifest, and the next sync, the obstacle
    gone, finishes with a manifest of every file and no pending record."""
    import json

    monkeypatch.setattr(ssh, "COMMAND_SURVEY_FROM", 50)
    build = tmp_path / "BUILD/dev"
    make_build(build, 120)
    host = tmp_path / "dest/h1"
    (host / "etc/d0/f0.conf").mkdir(parents=True)
    (host / "etc/d0/f0.conf/theirs").write_text("in the way\n")
    outs = _cached_push(tmp_path, sshd, build)
    assert any("app/h1: FAILED" in line for line in outs), outs
    pending = json.loads((host / ".facsimile/pending.json").read_text())["files"]
    assert len(pending) == 120
    assert not (host / ".facsimile/manifest.json").exists()
    assert (host / "etc/d1/f1.conf").read_text() == "key_1 = 1\n"  # the others went over SFTP
    (host / "etc/d0/f0.conf/theirs").unlink()
    (host / "etc/d0/f0.conf").rmdir()
    outs = _cached_push(tmp_path, sshd, build)
    assert not any("FAILED" in line for line in outs), outs
    manifest = json.loads((host / ".facsimile/manifest.json").read_text())["files"]
    assert len(manifest) == 120 and not (host / ".facsimile/pending.json").exists()
