"""Remote state and its lock, against a real folder, OpenSSH's sshd and moto's S3 server."""

from __future__ import annotations

import inspect
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import s3server, sshd  # noqa: F401  (fixtures)

from facsimile.errors import StateError
from facsimile.state.remote import RemoteStore

#: server-backed kinds start sshd or moto: the slow subset (pytest -m slow)
SFTP = "sftp"
S3 = "s3"

WORKER = """
import json, sys, time
from facsimile.state.remote import RemoteStore
url, options, mode, family, n = sys.argv[1], json.loads(sys.argv[2]), *sys.argv[3:6]
store = RemoteStore(url, **options)
if mode == "hold":
    with store.lock(family, timeout=30, holder="doomed@box pid 1") as rec:
        print(rec["id"], flush=True)
        time.sleep(600)
print("ready", flush=True)
sys.stdin.readline()  # both start at once
for _ in range(int(n)):
    with store.lock(family, timeout=60):
        got = store.read(family)
        count = json.loads(got[0])["count"] if got else 0
        store.write(family, json.dumps({"count": count + 1}).encode())
store.close()
"""


class Where:
    """A state URL of one kind, its options, and a way around facsimile to look at it."""

    def __init__(self, kind: str, tmp: Path, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        self.options: dict[str, Any] = {}
        if kind == "file":
            self.base = tmp / "state"
            self.url = f"file://{self.base}"
        elif kind == "sftp":
            server = request.getfixturevalue("sshd")
            self.base = tmp / "sftp-state"
            self.url = f"sftp://{server.user}@127.0.0.1:{server.port}{self.base}"
            self.options = {"ssh": {"key": str(server.key),
                                    "known_hosts": str(server.known_hosts)}}
            self.server = server
        else:
            server = request.getfixturevalue("s3server")
            self.prefix = f"t{uuid.uuid4().hex[:8]}"
            self.url = f"s3://{server.bucket}/{self.prefix}"
            self.options = {"s3": {"endpoint_url": server.endpoint, "key": "testing",
                                   "secret": "testing", "region": "us-east-1"}}
            self.server = server

    def store(self) -> RemoteStore:
        return RemoteStore(self.url, **self.options)

    def spawn(self, mode: str, family: str, n: int = 0) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", WORKER, self.url, json.dumps(self.options), mode, family,
             str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)


@pytest.fixture(params=["file", SFTP, S3])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Where:
    return Where(request.param, tmp_path, request)


@pytest.fixture
def store(where: Where) -> Iterator[RemoteStore]:
    s = where.store()
    yield s
    s.close()


def count_listings(fs: Any) -> list[str]:
    """Wrap the real filesystem's listing methods; the outermost calls, by name."""
    calls: list[str] = []
    depth = [0]
    for name in ("ls", "find", "walk", "glob", "_ls", "_find", "_walk", "_glob", "_lsdir"):
        orig = getattr(fs, name, None)
        if orig is None:
            continue
        if inspect.iscoroutinefunction(orig):
            async def wrapped(*a: Any, _o: Any = orig, _n: str = name, **k: Any) -> Any:
                calls.append(_n) if depth[0] == 0 else None
                depth[0] += 1
                try:
                    return await _o(*a, **k)
                finally:
                    depth[0] -= 1
        else:
            def wrapped(*a: Any, _o: Any = orig, _n: str = name, **k: Any) -> Any:
                calls.append(_n) if depth[0] == 0 else None
                depth[0] += 1
                try:
                    return _o(*a, **k)
                finally:
                    depth[0] -= 1
        setattr(fs, name, wrapped)
    return calls


def test_round_trip_and_versions(store: RemoteStore) -> None:
    assert store.read("web") is None
    assert store.versions() == {}
    store.write("web", b'{"a": 1}')
    data, token = store.read("web")
    assert data == b'{"a": 1}'
    assert store.versions() == {"web": token}
    assert store.versions() == {"web": token}  # stable while nothing writes
    store.write("web", b'{"a": 2}')  # same size, at once: still a new token
    data, token2 = store.read("web")
    assert data == b'{"a": 2}' and token2 != token
    assert store.versions() == {"web": token2}
    store.write("web", b'{"a": 2}')  # same content again: a new token, or S3's same ETag
    assert store.versions()["web"] == store.read("web")[1]


def test_versions_of_many_families_is_one_listing(store: RemoteStore, where: Where) -> None:
    for i in range(6):
        store.write(f"fam{i}", f'{{"n": {i}}}'.encode())
    with store.lock("fam0", timeout=5):  # a lock is not a family
        if where.kind == "file":  # plain system calls: count the folder listings
            calls = []
            real = store._b.files
            store._b.files = lambda folder: calls.append("listdir") or real(folder)
        else:
            calls = count_listings(store._b.fs)
        requests: list[str] = []
        if where.kind == "s3":  # and the HTTP requests that go out
            store._b.fs.s3.meta.events.register(
                "before-call.s3", lambda model, **_: requests.append(model.name))
        versions = store.versions()
        sent = list(requests)
    assert sorted(versions) == [f"fam{i}" for i in range(6)]
    assert len(calls) == 1, calls
    if where.kind == "s3":
        assert sent == ["ListObjectsV2"]


def test_second_lock_waits_then_names_the_holder(store: RemoteStore, where: Where) -> None:
    other = where.store()
    try:
        with store.lock("web", timeout=5, holder="alice@ci-3 pid 412") as rec:
            start = time.monotonic()
            with pytest.raises(StateError) as err, other.lock("web", timeout=1.0):
                pass
            waited = time.monotonic() - start
            assert 1.0 <= waited < 3.0
            msg = str(err.value)
            assert "'web'" in msg and re.search(r"held by alice@ci-3 pid 412 for [12] s", msg)
            assert f"facs state unlock {rec['id']}" in msg
            assert [r["id"] for r in other.locks()] == [rec["id"]]
        assert other.locks() == []
        with other.lock("web", timeout=1.0):
            assert [r["holder"].split()[-2:] for r in store.locks()] == [["pid", str(os.getpid())]]
    finally:
        other.close()


def test_two_processes_lose_no_update(where: Where) -> None:
    procs = [where.spawn("count", "ctr", 20) for _ in range(2)]
    for p in procs:
        assert p.stdout.readline() == "ready\n", p.communicate(timeout=30)
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    s = where.store()
    try:
        assert json.loads(s.read("ctr")[0]) == {"count": 40}
        assert s.locks() == []
    finally:
        s.close()


def test_unlock_removes_a_killed_runs_lock(store: RemoteStore, where: Where) -> None:
    proc = where.spawn("hold", "web")
    try:
        lock_id = proc.stdout.readline().strip()
        assert lock_id, proc.stderr.read()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    [rec] = store.locks()
    assert (rec["id"], rec["family"], rec["holder"]) == (lock_id, "web", "doomed@box pid 1")
    with pytest.raises(StateError, match="held by doomed@box pid 1"), \
            store.lock("web", timeout=0.2):
        pass
    with pytest.raises(StateError) as err:
        store.unlock("nope")
    assert "no lock has the id 'nope'" in str(err.value) and lock_id in str(err.value)
    assert store.unlock(lock_id) == "web"
    assert store.locks() == []
    with store.lock("web", timeout=1):
        pass
    with pytest.raises(StateError, match="no lock is held"):
        store.unlock(lock_id)


def test_backend_refuses_a_second_create(store: RemoteStore, where: Where) -> None:
    """While a lock is held, the server itself refuses to create it again."""
    with store.lock("web", timeout=1):
        if where.kind == "file":
            with pytest.raises(FileExistsError):
                os.open(where.base / ".locks/web.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        elif where.kind == "sftp":
            import asyncio

            import asyncssh

            async def create() -> None:
                async with asyncssh.connect(
                        "127.0.0.1", port=where.server.port, username=where.server.user,
                        client_keys=[str(where.server.key)],
                        known_hosts=str(where.server.known_hosts)) as conn, \
                        conn.start_sftp_client() as sftp:
                    await sftp.open(f"{where.base}/.locks/web.json", "xb")

            with pytest.raises(asyncssh.SFTPFailure):
                asyncio.run(create())
        else:
            import boto3
            from botocore.exceptions import ClientError

            s3 = boto3.client("s3", endpoint_url=where.server.endpoint,
                              aws_access_key_id="testing", aws_secret_access_key="testing",
                              region_name="us-east-1")
            with pytest.raises(ClientError) as err:
                s3.put_object(Bucket=where.server.bucket, Key=f"{where.prefix}/.locks/web.json",
                              Body=b"{}", IfNoneMatch="*")
            assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
        assert store.locks()[0]["holder"].endswith(f"pid {os.getpid()}")


def test_bad_urls_and_families(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="file:///absolute/path"):
        RemoteStore("file://relative/x")
    with pytest.raises(StateError, match="scheme 'gs'"):
        RemoteStore("gs://bucket/x")
    store = RemoteStore(f"file://{tmp_path}")
    for bad in ("", ".locks", "a/b", ".."):
        with pytest.raises(StateError, match="not a family name"):
            store.read(bad)
