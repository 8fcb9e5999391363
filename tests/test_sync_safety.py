"""Sync refuses what would overwrite a host with the wrong secrets or another
instance's files, and two syncs to one destination take turns: against a real
folder, sshd and S3 server, through the real ``facs`` and ``doit`` commands."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import doit, facs, write_tree
from servers import s3server, sshd  # noqa: F401  (fixtures)
from test_sync import HOSTS, Dest, make_root, sync

MANIFEST = ".facsimile/manifest.json"
LOCK = ".facsimile/lock"


@pytest.fixture(params=["file", "sftp", "s3"])
def dest(request: pytest.FixtureRequest, tmp_path: Path) -> Dest:
    return Dest(request.param, tmp_path, request)


def lineage(root: Path) -> str:
    return json.loads((root / "state/dev/state.json").read_text())["lineage"]


def manifest(d: Dest, host: str) -> dict:
    data = d.read(host, MANIFEST)
    assert data is not None
    return json.loads(data)


def everything(d: Dest) -> dict[str, dict[str, bytes]]:
    return {h: d.files(h) for h in HOSTS}


@pytest.mark.slow
def test_manifest_records_owner_and_state(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy)
    sync(root)
    state = json.loads((root / "state/dev/state.json").read_text())
    for h in HOSTS:
        doc = manifest(dest, h)
        assert doc["instance"] == "dev" and doc["family"] == "dev"
        assert doc["lineage"] == state["lineage"]
        assert isinstance(doc["serial"], int) and doc["serial"] >= 1


@pytest.mark.slow
def test_state_made_again_is_refused_then_adopted(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy)
    sync(root)
    old, before = lineage(root), everything(dest)
    shutil.rmtree(root / "state")
    facs(root, "build", "dev", check=True)
    new = lineage(root)
    assert new != old
    for args in ((), ("--dry-run",), ("--no-build",)):
        out = sync(root, *args, code=1)
        for h in HOSTS:
            assert f"web/{h}: FAILED: instance dev: refused" in out
        assert "family dev" in out and old[:8] in out and new[:8] in out
        assert "git pull" in out and "--adopt-state" in out
        assert everything(dest) == before  # byte-identical, manifest included
    out = sync(root, "--adopt-state")
    assert "2 host(s) ok, 0 failed" in out
    for h in HOSTS:
        assert manifest(dest, h)["lineage"] == new
        assert dest.read(h, "etc/db.ini") == (root / "BUILD/dev/etc/db.ini").read_bytes()
    assert "0 put, 0 deleted" in sync(root)


@pytest.mark.slow
def test_adopt_state_rewrites_the_manifest_when_no_file_differs(tmp_path: Path) -> None:
    base = tmp_path / "dest"
    root = make_root(tmp_path, {"url": f"file://{base}/{{host}}"})
    sync(root)
    data = json.loads((root / "state/dev/state.json").read_text())
    data["lineage"] = "0123456789abcdef" * 2  # same values, another lineage
    (root / "state/dev/state.json").write_text(json.dumps(data))
    sync(root, "--no-build", code=1)
    out = sync(root, "--no-build", "--adopt-state")
    assert "0 put, 0 deleted" in out
    assert json.loads((base / "h1" / MANIFEST).read_text())["lineage"] == data["lineage"]


@pytest.mark.slow
def test_older_serial_is_refused(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy)
    sync(root)
    shutil.copytree(root / "state", tmp_path / "saved-state")
    facs(root, "state", "rotate", "dev", "db", check=True)
    sync(root)
    rotated = manifest(dest, "h1")["serial"]
    before = everything(dest)
    shutil.rmtree(root / "state")
    shutil.copytree(tmp_path / "saved-state", root / "state")
    out = sync(root, code=1)
    assert f"older than serial {rotated}" in out and "someone rotated since" in out
    assert "instance dev" in out and "family dev" in out and "web/h1" in out
    assert everything(dest) == before


@pytest.mark.slow
def test_doit_sync_refuses_the_same_way(tmp_path: Path) -> None:
    base = tmp_path / "dest"
    root = make_root(tmp_path, {"url": f"file://{base}/{{host}}"})
    doit(root, "sync:dev", check=True)
    before = {p: p.read_bytes() for p in base.rglob("*") if p.is_file()}
    shutil.rmtree(root / "state")
    proc = doit(root, "sync:dev")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    assert "web/h1: FAILED: instance dev: refused" in out and "--adopt-state" in out
    assert {p: p.read_bytes() for p in base.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_manifest_of_an_older_facsimile_is_accepted(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy)
    sync(root)
    for h in HOSTS:
        doc = manifest(dest, h)
        for key in ("instance", "family", "lineage", "serial"):
            del doc[key]
        dest.write(h, MANIFEST, json.dumps(doc).encode())
    out = sync(root)
    assert "0 put, 0 deleted" in out
    for h in HOSTS:
        assert manifest(dest, h)["lineage"] == lineage(root)
        assert manifest(dest, h)["instance"] == "dev"


@pytest.mark.slow
def test_another_instance_is_refused(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy)
    write_tree(root, {"define/staging.json": {"targets": {"web": {"hosts": HOSTS}}}})
    dest.write("h1", "shop/dev-only.txt", b"dev alone has this\n")
    sync(root)
    before = everything(dest)
    proc = facs(root, "sync", "staging")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in out
    assert "instance staging: refused" in out and "belongs to instance dev" in out
    assert "h1" in out and "deploy.url" in out
    assert everything(dest) == before


def _two_syncs(root: Path) -> list[subprocess.CompletedProcess]:
    cmd = [sys.executable, "-m", "facsimile.cli", "sync", "dev", "--no-build"]
    env = {k: v for k, v in os.environ.items() if k != "DOIT_CONFIG"}
    procs = [subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        done.append(subprocess.CompletedProcess(cmd, p.returncode, out, err))
    return done


@pytest.mark.slow
def test_two_syncs_at_once_take_turns(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy)
    for i in range(3):
        (root / f"tmpl/_ALL_/shop/page{i}.txt").write_text("x" * 200_000 + f"{i}\n")
        doit(root, check=True)
        results = _two_syncs(root)
        for r in results:
            assert "Traceback" not in r.stderr and "FileNotFoundError" not in r.stdout, r
            assert r.returncode == 0 or "holds the destination's lock" in r.stdout, r
        assert any(r.returncode == 0 for r in results)
    assert "0 put, 0 deleted" in sync(root, "--no-build")
    assert dest.read("h1", LOCK) is None and dest.read("h2", LOCK) is None


@pytest.mark.slow
def test_a_held_lock_fails_the_host_naming_its_holder(tmp_path: Path) -> None:
    base = tmp_path / "dest"
    root = make_root(tmp_path, {"url": f"file://{base}/{{host}}"})
    sync(root)
    held = {"user": "ann", "host": "elsewhere", "pid": 4242, "time": time.time() - 90}
    (base / "h1" / LOCK).write_text(json.dumps(held))
    assert "0 put, 0 deleted" in sync(root)  # a host with nothing to do takes no lock
    (root / "tmpl/_ALL_/etc/app.ini").write_text("port = 1\n")
    start = time.monotonic()
    out = sync(root, code=1)
    assert time.monotonic() - start < 60
    assert "h1: FAILED" in out and "another sync holds the destination's lock" in out
    taken = re.search(r"ann@elsewhere pid 4242, taken (\d+)s ago", out)
    assert taken and int(taken.group(1)) >= 90 and LOCK in out
    assert "h2: 1 put" in out
    assert (base / "h1" / LOCK).exists()  # someone else's: never removed


@pytest.mark.parametrize("kind", ["file", "sftp", "s3"])
@pytest.mark.slow
def test_lock_of_a_killed_sync_on_this_machine_is_taken_over(
        tmp_path: Path, kind: str, request: pytest.FixtureRequest) -> None:
    d = Dest(kind, tmp_path, request)
    root = make_root(tmp_path, d.deploy)
    sync(root)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    held = {"user": "me", "host": socket.gethostname(), "pid": int(dead.stdout),
            "time": time.time()}
    d.write("h1", LOCK, json.dumps(held).encode())
    (root / "tmpl/_ALL_/etc/app.ini").write_text("port = 2\n")
    out = sync(root)
    assert "web/h1: 1 put" in out
    assert d.read("h1", LOCK) is None


DIE_IN_LOCK_WRITE = """
import json, os, signal, sys
from facsimile.sync.destinations import open_destination
deploy, kind = json.loads(sys.argv[1]), sys.argv[2]
dest = open_destination(deploy["url"].replace("{host}", "h1"), deploy, "web/h1")
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
if kind == "sftp":
    import asyncssh
    async def die_async(*args, **kwargs):
        die()
    asyncssh.SFTPClientFile.write = die_async
    asyncssh.sftp.SFTPClientHandler.write = die_async  # the requests sent in order
else:
    os.write = die
dest.create_exclusive(".facsimile/lock", b'{"user": "me"}')
"""


@pytest.mark.parametrize("kind", ["file", "sftp"])
@pytest.mark.slow
def test_a_sync_killed_while_writing_its_lock_leaves_no_lock(
        tmp_path: Path, kind: str, request: pytest.FixtureRequest) -> None:
    """Killed after its lock's file was made, before its content was in: the lock
    is not there at all (it is linked in whole), so the next sync does not wait."""
    d = Dest(kind, tmp_path, request)
    root = make_root(tmp_path, d.deploy)
    sync(root)
    killed = subprocess.run([sys.executable, "-c", DIE_IN_LOCK_WRITE, json.dumps(d.deploy),
                             kind], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    assert d.read("h1", LOCK) is None
    (root / "tmpl/_ALL_/etc/app.ini").write_text("port = 3\n")
    start = time.monotonic()
    out = sync(root)
    assert "web/h1: 1 put" in out and time.monotonic() - start < 8, out
