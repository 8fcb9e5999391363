"""Pushing safely: generations kept at every destination, waves with health
checks, automatic rollback, ``facs rollback`` and ``facs history``; on a real
folder, OpenSSH's sshd and moto's S3 server."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conftest import DODO, doit, facs, write_tree
from daskcluster import dask_cluster  # noqa: F401  (fixture)
from servers import s3server, sshd  # noqa: F401  (fixtures)
from test_sync import Dest

HOSTS = ["h1", "h2", "h3", "h4"]


@pytest.fixture(params=["file", "sftp", "s3"])
def dest(request: pytest.FixtureRequest, tmp_path: Path) -> Dest:
    return Dest(request.param, tmp_path, request)


def make_root(tmp: Path, deploy: dict, hosts: list[str] = HOSTS) -> Path:
    """A root whose dev instance has ``hosts``, at version 1."""
    root = tmp / "root"
    write_tree(root, {
        "dodo.py": DODO,
        "define/facsimile.json": {"name": "shop", "release": 1, "deploy": deploy},
        "define/modules.json": {"db": {}},
        "define/dev.json": {"targets": {"web": {"hosts": hosts}}},
        "tmpl/_ALL_/etc/app.conf": "version {{ instance.release }}\n",
        "tmpl/_ALL_/etc/db.ini": "password = {{ module.db.password }}\n",
        "tmpl/_ALL_/etc/old.conf": "only in version 1\n",
    })
    doit(root, check=True)
    return root


def version_2(root: Path) -> None:
    """Change a file, delete one, add one."""
    data = json.loads((root / "define/facsimile.json").read_text())
    data["release"] = 2
    (root / "define/facsimile.json").write_text(json.dumps(data))
    (root / "tmpl/_ALL_/etc/old.conf").unlink()
    (root / "tmpl/_ALL_/etc/new.conf").write_text("new in version 2\n")


def sync(root: Path, *args: str, code: int = 0) -> str:
    proc = facs(root, "sync", "dev", *args)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout + proc.stderr


def held(d: Dest, host: str) -> dict[str, object]:
    """What a host holds outside .facsimile/: bytes, and the mode where there are modes."""
    files = {k: v for k, v in d.files(host).items() if not k.startswith(".facsimile/")}
    if d.kind == "s3":
        return files
    top = d.base / host
    return {k: (v, stat.S_IMODE(os.stat(top / k).st_mode)) for k, v in files.items()}


def test_a_failing_check_on_wave_1_restores_it_and_leaves_the_rest_untouched(
        dest: Dest, tmp_path: Path) -> None:
    rollout = {"waves": [1, "50%"], "check": ["test {host} != h1"], "max_failed": 0}
    log = tmp_path / "postcmd.log"
    root = make_root(tmp_path, {**dest.deploy, "rollout": rollout,
                                "postcmd": [f"echo ran >> {log}"]})
    sync(root, "--no-rollout")
    before = {h: held(dest, h) for h in HOSTS}
    marks = {h: dest.mtimes(h) for h in HOSTS}
    version_2(root)
    out = sync(root, code=1)
    assert "wave 1 of 3: 1 host(s): h1" in out
    assert "wave 2" not in out
    assert "web/h1: FAILED: health check 'test {host} != h1' exited 1" in out
    assert "restored to generation 1" in out
    assert held(dest, "h1") == before["h1"]  # byte for byte, modes included
    for h in HOSTS[1:]:
        assert dest.mtimes(h) == marks[h]  # never touched
    manifest = json.loads(dest.files("h1")[".facsimile/manifest.json"])
    assert manifest["generation"] == 1 and "etc/old.conf" in manifest["files"]
    assert not [k for k in dest.files("h1") if k.startswith(".facsimile/generations/2")]
    if dest.kind == "sftp":  # postcmd runs on ssh hosts: after the sync, and after the restore
        assert log.read_text().count("ran") == len(HOSTS) + 2
    # the next sync without the failing check goes through every wave
    out = sync(root, "--no-rollout")
    assert all(held(dest, h)["etc/new.conf"] for h in HOSTS)


@pytest.mark.parametrize("failing", [2, 3])
@pytest.mark.slow
def test_max_failed_5_percent_of_40_hosts_goes_on_with_2_failing_and_stops_with_3(
        tmp_path: Path, failing: int) -> None:
    hosts = [f"h{i:02d}" for i in range(40)]
    bad = hosts[1:1 + failing]  # in wave 2 (h01-h04)
    rollout = {"waves": [1, "10%", "100%"], "max_failed": "5%",
               "check": [f"case {{host}} in {'|'.join(bad)}) exit 3;; esac"]}
    root = make_root(tmp_path, {"url": f"file://{tmp_path}/dest/{{host}}",
                                "rollout": rollout, "jobs": 8}, hosts)
    sync(root, "--no-rollout")
    version_2(root)
    out = sync(root, code=1)  # a host failed either way
    new = [h for h in hosts if (tmp_path / "dest" / h / "etc/new.conf").exists()]
    if failing == 2:  # within the budget: the two are restored, the sync goes on
        assert "wave 3 of 3: 35 host(s)" in out
        assert sorted(set(hosts) - set(new)) == bad
        assert "more than the 2" not in out
    else:  # over it: wave 2 is restored, wave 3 never started
        assert "wave 3" not in out
        assert new == hosts[:1]
        assert "wave 2: 3 host(s) failed, more than the 2 deploy.rollout.max_failed " \
            "allows" in out
        assert "web/h04: FAILED: its wave failed: restored to generation 1" in out
    for h in bad:
        assert f"web/{h}: FAILED: health check" in out
        assert (tmp_path / "dest" / h / "etc/app.conf").read_text() == "version 1\n"
    for h in hosts[5:]:
        assert (tmp_path / "dest" / h / "etc/app.conf").read_text() == \
            ("version 2\n" if failing == 2 else "version 1\n")


@pytest.mark.slow
def test_wave_option_and_no_rollout(tmp_path: Path) -> None:
    rollout = {"waves": [1, "100%"], "check": ["true"]}
    root = make_root(tmp_path, {"url": f"file://{tmp_path}/dest/{{host}}", "rollout": rollout})
    out = sync(root, "--wave", "1")
    assert "wave 1 of 2: 1 host(s): h1" in out
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == ["h1"]
    out = sync(root, "--wave", "3", code=1)
    assert "--wave 3: this rollout has 2 wave(s) of 4 host(s)" in out
    out = sync(root, "--wave", "2")  # the same hosts as on the first run
    assert "wave 2 of 2: 3 host(s): h2, h3, h4" in out and "1 host(s) up to date" in out
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == HOSTS
    version_2(root)
    out = sync(root, "--no-rollout")
    assert "wave" not in out and out.count(": 2 put, 1 deleted") == 4


@pytest.mark.slow
def test_history_and_rollback_to_a_generation(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, {**dest.deploy, "keep": 2}, hosts=["h1", "h2"])
    sync(root)
    first = held(dest, "h1")
    version_2(root)
    sync(root)
    second = held(dest, "h1")
    (root / "tmpl/_ALL_/etc/new.conf").write_text("third\n")
    sync(root)
    proc = facs(root, "history", "dev", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    h1 = next(h for h in doc["hosts"] if h["host"] == "h1")
    assert h1["generation"] == 3
    assert [g["generation"] for g in h1["generations"]] == [3, 2]  # keep: 2
    g3 = h1["generations"][0]
    assert g3["current"] and g3["put"] == 1 and g3["deleted"] == 0 and "@" in g3["by"]
    assert isinstance(g3["serial"], int)
    text = facs(root, "history", "dev", "--host", "h1").stdout
    assert "web/h1: generation 3" in text and "put 1, deleted 0" in text
    proc = facs(root, "rollback", "dev", "--to", "0")
    assert proc.returncode == 1 and "generation 0 is not kept there" in proc.stdout
    proc = facs(root, "rollback", "dev", "--host", "h1")  # one step: generation 2
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert held(dest, "h1") == second
    assert dest.read("h2", "etc/new.conf") == b"third\n"  # --host h1 only
    proc = facs(root, "rollback", "dev", "--to", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert held(dest, "h1") == first and held(dest, "h2") == first
    # the next sync makes generation 4, never a number used before
    sync(root)
    manifest = json.loads(dest.files("h1")[".facsimile/manifest.json"])
    assert manifest["generation"] == 4


def test_a_first_sync_rolled_back_gives_back_the_hosts_own_files(tmp_path: Path) -> None:
    """A file of the host's own that a first sync replaced comes back; the files
    facsimile put are deleted; nothing else is touched."""
    base = tmp_path / "dest"
    root = make_root(tmp_path, {"url": f"file://{base}/{{host}}"}, hosts=["h1"])
    write_tree(base / "h1", {"etc/app.conf": "the host's own\n", "etc/other": "mine\n"})
    sync(root)
    assert (base / "h1/etc/app.conf").read_text() == "version 1\n"
    proc = facs(root, "rollback", "dev")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.relative_to(base / "h1").as_posix() for p in (base / "h1").rglob("*")
                  if p.is_file() and ".facsimile" not in p.parts) == ["etc/app.conf",
                                                                      "etc/other"]
    assert (base / "h1/etc/app.conf").read_text() == "the host's own\n"


def test_waves_on_a_dask_cluster_and_in_a_slice(
        tmp_path: Path, dask_cluster) -> None:  # noqa: F811
    """The client orders the waves and the workers sync, check and restore; a
    slice takes its waves from its own hosts."""
    base = tmp_path / "dest"
    rollout = {"waves": [1, "100%"], "check": ["test {host} != h1"]}
    root = make_root(tmp_path, {"url": f"file://{base}/{{host}}", "rollout": rollout})
    sync(root, "--no-rollout")
    marks = {h: dest_mtimes(base / h) for h in HOSTS}
    version_2(root)
    out = sync(root, "--engine", "dask", "--scheduler", dask_cluster.address, code=1)
    assert "wave 1 of 2: 1 host(s): h1" in out and "wave 2" not in out
    assert "web/h1: FAILED: health check" in out and "restored to generation 1" in out
    assert (base / "h1/etc/app.conf").read_text() == "version 1\n"
    assert all(dest_mtimes(base / h) == marks[h] for h in HOSTS[1:])
    from facsimile.sync.slices import slice_of

    other = [h for h in HOSTS if slice_of(h, 2) != slice_of("h1", 2)]
    part = slice_of(other[0], 2)
    out = sync(root, "--slice", f"{part}/2", "--engine", "dask", "--scheduler",
               dask_cluster.address)
    assert f"wave 1 of {min(2, len(other))}: 1 host(s): {other[0]}" in out
    assert all((base / h / "etc/app.conf").read_text() == "version 2\n" for h in other)


def dest_mtimes(top: Path) -> dict[str, int]:
    return {p.relative_to(top).as_posix(): p.stat().st_mtime_ns for p in top.rglob("*")
            if p.is_file()}


@pytest.mark.slow
def test_a_host_that_fails_its_rollback_is_named_and_retried_by_the_next(
        tmp_path: Path) -> None:
    base = tmp_path / "dest"
    root = make_root(tmp_path, {"url": f"file://{base}/{{host}}"}, hosts=["h1", "h2"])
    sync(root)
    version_2(root)
    sync(root)
    (base / "h2").rename(tmp_path / "away")  # h2 cannot be reached
    proc = facs(root, "rollback", "dev")
    assert proc.returncode == 1
    assert "web/h2: FAILED: web/h2: nothing to roll back" in proc.stdout
    assert "1 host(s) ok, 1 failed; run it again to retry the failed ones" in proc.stdout
    assert (base / "h1/etc/app.conf").read_text() == "version 1\n"
    (tmp_path / "away").rename(base / "h2")
    proc = facs(root, "rollback", "dev")  # h2 now; h1 stays at generation 1
    assert proc.returncode == 0, proc.stdout
    for h in ("h1", "h2"):
        assert (base / h / "etc/app.conf").read_text() == "version 1\n"
        assert (base / h / "etc/old.conf").exists() and not (base / h / "etc/new.conf").exists()
        assert json.loads((base / h / ".facsimile/manifest.json").read_text())["generation"] == 1
