"""A fleet: slices of the hosts (`facs sync --slice I/N`) and the hosts synced by
the workers of a real dask cluster (`--engine dask`), on a folder and on sshd."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DODO, doit, facs, write_tree
from daskcluster import DaskCluster, dask_cluster  # noqa: F401  (fixture)
from servers import free_port, sshd  # noqa: F401  (fixture)
from test_sync import SFTP, Dest, sync

from facsimile.sync.generations import GENERATIONS
from facsimile.sync.manifest import LOCK
from facsimile.sync.slices import Slice, parse_slice, slice_of

FILES = {"etc/app.ini", "etc/db.ini", ".facsimile/manifest.json"}
SHOPEXT = """
import facsimile

class Shop(facsimile.Project):
    def extra_context(self, inst):
        return {"flavour": "ext-" + inst.name}
"""


def make_root(tmp: Path, deploy: dict, targets: dict) -> Path:
    """A project with a class override, region ch1, and instance dev's ``targets``."""
    root = tmp / "root"
    write_tree(root, {
        "dodo.py": DODO,
        "shopext.py": SHOPEXT,
        "define/facsimile.json": {"name": "shop", "port": 8080, "class": "shopext:Shop",
                                  "deploy": deploy},
        "define/modules.json": {"db": {}},
        "define/regions/ch1.json": {"region": {"name": "ch1"}},
        "define/dev.json": {"targets": targets},
        "tmpl/_ALL_/etc/app.ini": "port = {{ instance.port }} {{ flavour }}\n",
        "tmpl/_ALL_/etc/db.ini": "password = {{ module.db.password }}\n",
    })
    doit(root, check=True)
    return root


def synced(out: str) -> list[str]:
    """The hosts a sync's output says it put files to."""
    return re.findall(r"^  \w+/([\w.-]+): \d+ put", out, re.M)


def files(base: Path, host: str) -> set[str]:
    """The files at a host, but for the generations it keeps (tests/test_rollout.py)."""
    top = base / host
    return {p.relative_to(top).as_posix() for p in top.rglob("*")
            if p.is_file() and not p.relative_to(top).as_posix().startswith(GENERATIONS + "/")}


def test_slice_specs() -> None:
    assert parse_slice("2/5") == Slice(2, 5) and str(Slice(2, 5)) == "2/5"
    for bad in ("0/5", "6/5", "1/0", "2", "a/b", "-1/3"):
        with pytest.raises(ValueError, match=r"expected I/N"):
            parse_slice(bad)
    assert slice_of("web-017", 5) == slice_of("web-017", 5)  # no hash() randomisation
    assert {slice_of(f"h{i}", 1) for i in range(50)} == {1}


def test_hosts_go_to_dask_in_batches() -> None:
    pytest.importorskip("distributed")
    from facsimile.sync.dask_engine import MAX_BATCH, batch_size

    assert batch_size(3, 4) == 1  # a few hosts: one task each
    assert batch_size(1000, 10) == 50  # about two tasks per worker thread
    assert batch_size(100_000, 2) == MAX_BATCH


@pytest.mark.slow
def test_slices_cover_the_fleet_exactly_once(tmp_path: Path) -> None:
    hosts = [f"h{i:02}" for i in range(20)]
    base = tmp_path / "dest"
    root = make_root(tmp_path, {"url": f"file://{base}/{{host}}"}, {"web": {"hosts": hosts}})
    seen: list[str] = []
    for i in range(1, 6):
        out = sync(root, "--no-build", "--slice", f"{i}/5")
        assert f"slice {i}/5: " in out and "of 20 host(s)" in out
        seen += synced(out)
    assert sorted(seen) == hosts  # every host once, none twice
    assert all(files(base, h) == FILES for h in hosts)
    out = sync(root, "--no-build")
    assert out.count(": 0 put, 0 deleted, 2 unchanged") == 20


def test_a_bad_slice_is_a_usage_error(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_tree(root, {"dodo.py": DODO, "define/facsimile.json": {"name": "shop"},
                      "define/dev.json": {"targets": {"web": {"hosts": ["h1"]}}}})
    proc = facs(root, "sync", "dev", "--slice", "6/5")
    assert proc.returncode == 1  # a usage error, as every other (see the exit-code rule)
    assert "--slice" in proc.stderr and "expected I/N" in proc.stderr
    proc = facs(root, "sync", "dev", "--no-build", "--engine", "dask")
    assert proc.returncode == 1 and "--scheduler" in proc.stdout + proc.stderr


#: a sync that SIGKILLs itself the moment its plan is carried out (manifest written),
#: before it removes its lock: the window in which a killed dask worker leaves a lock
KILLED_AFTER_MANIFEST = """
import os, signal, sys
from collections.abc import Iterator
from pathlib import Path
from facsimile.sync import host, sync_instance

def apply_then_die(*args, **kwargs):
    host_apply(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)

host_apply, host.apply_host = host.apply_host, apply_then_die
sync_instance(instance="dev", project="shop", root=Path(sys.argv[1]),
              build_dir=Path(sys.argv[1]) / "BUILD/dev", deploy=DEPLOY,
              targets={"web": {"hosts": ["h1"]}}, out=print)
"""


@pytest.mark.parametrize("kind", ["file", SFTP])
@pytest.mark.slow
def test_a_sync_killed_after_its_manifest_leaves_no_lock_after_the_next(
        tmp_path: Path, kind: str, request: pytest.FixtureRequest) -> None:
    d = Dest(kind, tmp_path, request)
    root = make_root(tmp_path, d.deploy, {"web": {"hosts": ["h1"]}})
    script = KILLED_AFTER_MANIFEST.replace("DEPLOY", repr(d.deploy))
    proc = subprocess.run([sys.executable, "-c", script, str(root)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert d.read("h1", LOCK) is not None  # the killed sync's: its pid is gone
    out = sync(root, "--no-build")
    assert "web/h1: 0 put, 0 deleted, 2 unchanged" in out  # nothing else was left to do
    assert set(d.files("h1")) == FILES
    (root / "tmpl/_ALL_/etc/app.ini").write_text("port = 1\n")
    assert "web/h1: 1 put" in sync(root)


@pytest.mark.slow
def test_failed_hosts_are_named_with_their_reason_and_cost_their_timeout(
        tmp_path: Path, sshd) -> None:  # noqa: F811
    """A fleet with a refused port, a server that never answers and a folder that
    cannot be written: each named with its reason, the others synced."""
    base = tmp_path / "sftp"
    (base / "ro").parent.mkdir(parents=True)
    (base / "ro").write_text("a file where the host's folder should be")
    refused = free_port()  # nothing listens there
    with socket.socket() as mute:  # accepts connections (the backlog), never says a word
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        ports = {"up": sshd.port, "refused": refused, "mute": mute.getsockname()[1]}
        deploy = sshd.deploy(str(base), jobs=8)
        deploy["url"] = f"sftp://{sshd.user}@127.0.0.1:{{target}}{base}/{{host}}"
        deploy["ssh"]["timeout"] = 3
        root = make_root(tmp_path, deploy, {
            str(ports["up"]): {"hosts": ["g1", "g2", "g3", "ro"]},
            str(ports["refused"]): {"hosts": ["down"]},
            str(ports["mute"]): {"hosts": ["silent"]}})
        start = time.monotonic()
        out = sync(root, "--no-build", code=1)
        took = time.monotonic() - start
    assert sorted(synced(out)) == ["g1", "g2", "g3"]
    assert all(files(base, h) == FILES for h in ("g1", "g2", "g3"))
    failed = dict(re.findall(r"^  \d+/([\w.-]+): FAILED: (.+)$", out, re.M))
    assert sorted(failed) == ["down", "ro", "silent"], out
    assert "cannot connect" in failed["down"] and "refused" in failed["down"].lower()
    assert failed["silent"] == "cannot connect: no answer within 3s (deploy.ssh.timeout)"
    assert "directory" in failed["ro"].lower(), failed["ro"]
    assert "3 host(s) ok, 3 failed" in out
    assert took < 60, took  # the silent server costs its 3 s, not asyncssh's 120 s login


def ran_on(out: str) -> dict[str, str]:
    """Host -> the worker address the output says synced it."""
    return dict(re.findall(r"^  \w+/([\w.-]+): on worker (\S+)$", out, re.M))


@pytest.mark.slow
def test_dask_syncs_each_region_on_its_worker(tmp_path: Path, sshd,  # noqa: F811
                                               dask_cluster: DaskCluster) -> None:  # noqa: F811
    base = tmp_path / "sftp"
    targets = {"web": {"hosts": ["w1", "w2", "w3"]},
               "db": {"hosts": ["d1", "d2"], "inherit": ["regions/ch1"]}}
    root = make_root(tmp_path, sshd.deploy(str(base)), targets)
    out = sync(root, "--engine", "dask", "--scheduler", dask_cluster.address)
    where = ran_on(out)
    workers = dask_cluster.addresses()
    assert set(where) == {"w1", "w2", "w3", "d1", "d2"}
    assert where["d1"] == where["d2"] == workers["w-ch1"]
    assert set(where.values()) <= set(workers.values())
    for h in where:
        assert files(base, h) == FILES
        assert (base / h / "etc/app.ini").read_text() == "port = 8080 ext-dev\n"
    manifest = json.loads((base / "d1/.facsimile/manifest.json").read_text())
    assert manifest["instance"] == "dev" and manifest["lineage"]
    assert "5 host(s) ok, 0 failed" in out
    out = sync(root, "--engine", "dask", "--scheduler", dask_cluster.address)
    assert out.count(": 0 put, 0 deleted, 2 unchanged") == 5
    part = sync(root, "--engine", "dask", "--scheduler", dask_cluster.address,
                "--slice", "1/2") + sync(root, "--engine", "dask", "--scheduler",
                                         dask_cluster.address, "--slice", "2/2")
    assert sorted(ran_on(part)) == sorted(where)


@pytest.mark.slow
def test_a_worker_killed_mid_sync_has_its_hosts_synced_elsewhere(
        tmp_path: Path, sshd, dask_cluster: DaskCluster) -> None:  # noqa: F811
    base = tmp_path / "sftp"
    hosts = ["k1", "k2", "k3", "k4"]
    root = make_root(tmp_path, sshd.deploy(str(base), postcmd=["sleep 4"], jobs=1),
                     {"web": {"hosts": hosts}})
    sync(root, "--no-build")  # the old files everywhere
    data = json.loads((root / "define/facsimile.json").read_text())
    data["port"] = 9090
    (root / "define/facsimile.json").write_text(json.dumps(data))
    doit(root, check=True)
    victim = dask_cluster.addresses()["w-any"]
    proc = subprocess.Popen([sys.executable, "-m", "facsimile.cli", "sync", "dev",
                             "--no-build", "--engine", "dask",
                             "--scheduler", dask_cluster.address],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        with dask_cluster.client() as client:
            deadline = time.monotonic() + 120
            while not client.processing().get(victim):
                assert time.monotonic() < deadline
                if proc.poll() is not None:  # the other worker took every batch
                    pytest.skip("the scheduler gave the victim no batch: nothing to kill")
                time.sleep(0.1)
        time.sleep(1.0)  # inside its host's sync (the postcmd sleeps 4 s)
        os.kill(dask_cluster.workers["w-any"].pid, signal.SIGKILL)
        dask_cluster.workers["w-any"].wait(timeout=30)  # reaped: its pid is gone
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        dask_cluster.workers["w-any"].wait(timeout=30)
        dask_cluster.start_worker("w-any")
    assert proc.returncode == 0, out
    assert "4 host(s) ok, 0 failed" in out
    assert victim not in ran_on(out).values()
    for h in hosts:
        assert files(base, h) == FILES
        assert (base / h / "etc/app.ini").read_text() == "port = 9090 ext-dev\n"
    out = sync(root, "--no-build", "--engine", "dask", "--scheduler", dask_cluster.address)
    assert out.count(": 0 put, 0 deleted, 2 unchanged") == 4


@pytest.fixture
def full_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder on a 64 kB tmpfs of its own (a full disk), unmounted after."""
    where = tmp_path / "sftp" / "full"
    where.mkdir(parents=True)
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.slow
def test_a_full_host_is_named_and_keeps_its_files_the_others_sync(
        tmp_path: Path, sshd, full_folder: Path) -> None:  # noqa: F811
    """A host whose disk is full fails with the reason, holding the files it had
    and no temporary file; the other hosts get theirs."""
    base = full_folder.parent
    root = make_root(tmp_path, sshd.deploy(str(base), jobs=8),
                     {"web": {"hosts": ["g1", "full", "g2"]}})
    sync(root, "--no-build")
    manifest = (full_folder / ".facsimile/manifest.json").read_bytes()
    (root / "tmpl/_ALL_/etc/big.txt").write_text("{{ 'x' * 200000 }}\n")  # 200 kB
    (root / "tmpl/_ALL_/etc/app.ini").write_text("port = 2 {{ flavour }}\n")
    out = sync(root, code=1)
    assert sorted(synced(out)) == ["g1", "g2"]
    for h in ("g1", "g2"):
        assert files(base, h) == FILES | {"etc/big.txt"}
    failed = dict(re.findall(r"^  \w+/([\w.-]+): FAILED: (.+)$", out, re.M))
    assert list(failed) == ["full"], out
    assert failed["full"].startswith("no space left on the host's disk ("), failed
    assert "2 host(s) ok, 1 failed" in out
    # each file old or new, no partial file left to fill the disk, the old
    # manifest, and the record of what this sync may have put
    assert files(base, "full") == FILES | {".facsimile/pending.json"}
    assert (full_folder / "etc/app.ini").read_text() in ("port = 8080 ext-dev\n",
                                                          "port = 2 ext-dev\n")
    assert (full_folder / ".facsimile/manifest.json").read_bytes() == manifest
    # once the build fits again, the next sync completes there
    (root / "tmpl/_ALL_/etc/big.txt").unlink()
    out = sync(root)
    assert "3 host(s) ok, 0 failed" in out
    assert files(base, "full") == FILES
    assert (full_folder / "etc/app.ini").read_text() == "port = 2 ext-dev\n"


@pytest.mark.slow
def test_a_tar_stream_to_a_full_host_leaves_no_partial_file(
        tmp_path: Path, sshd, full_folder: Path) -> None:  # noqa: F811
    """60 new files go as one tar stream (from 50 puts on); the disk fills half
    way: the host fails with the reason, and no temporary file is left there."""
    base = full_folder.parent
    root = make_root(tmp_path, sshd.deploy(str(base)), {"web": {"hosts": ["g1", "full"]}})
    sync(root, "--no-build")
    manifest = (full_folder / ".facsimile/manifest.json").read_bytes()
    write_tree(root, {f"tmpl/_ALL_/etc/many/f{i}.txt": "{{ 'y' * 3000 }}\n" for i in range(60)})
    out = sync(root, code=1)
    assert synced(out) == ["g1"] and len(files(base, "g1")) == len(FILES) + 60
    failed = dict(re.findall(r"^  \w+/([\w.-]+): FAILED: (.+)$", out, re.M))
    assert failed["full"].startswith("no space left on the host's disk ("), failed
    # the files that fitted are whole (the SFTP puts after the failed stream),
    # no partial or temporary file is left, and the old manifest stays
    there = files(base, "full")
    assert FILES | {".facsimile/pending.json"} <= there
    assert not [f for f in there if f.endswith(".facsimile-tmp")], there
    for f in there - FILES - {".facsimile/pending.json"}:
        assert (full_folder / f).read_text() == "y" * 3000 + "\n", f
    assert (full_folder / ".facsimile/manifest.json").read_bytes() == manifest
