"""kill -9 in a wave, in a health check and in a rollback: every host is left
whole (each file old or new) and the next run finishes or restores it. The
process is killed at named points (FACSIMILE_KILL_AT, see
facsimile/sync/killpoints.py) so that each point is hit every time."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
from conftest import facs, run
from test_rollout import HOSTS, make_root, sync, version_2

V1 = {"etc/app.conf": b"version 1\n", "etc/old.conf": b"only in version 1\n"}
V2 = {"etc/app.conf": b"version 2\n", "etc/new.conf": b"new in version 2\n"}


def files(base: Path, host: str) -> dict[str, bytes]:
    top = base / host
    return {p.relative_to(top).as_posix(): p.read_bytes() for p in sorted(top.rglob("*"))
            if p.is_file() and ".facsimile" not in p.relative_to(top).parts
            and p.name != "db.ini"}


def killed(root: Path, *args: str, at: str) -> None:
    """Run ``facs ARGS`` and have it killed at point ``at``."""
    proc = run([sys.executable, "-m", "facsimile.cli", *args], cwd=root,
               env={"FACSIMILE_KILL_AT": at})
    assert proc.returncode == -signal.SIGKILL, (at, proc.returncode, proc.stdout, proc.stderr)


def whole(base: Path, host: str) -> dict[str, bytes]:
    """The host's files, which must be all of version 1 or all of version 2."""
    held = files(base, host)
    assert held in (V1, V2), (host, held)
    return held


def each_file_old_or_new(base: Path) -> None:
    for h in HOSTS:
        for rel, data in files(base, h).items():
            assert data in (V1.get(rel), V2.get(rel)), (h, rel, data)


@pytest.fixture
def synced(tmp_path: Path) -> tuple[Path, Path]:
    """A root whose four hosts (folders) are at version 1, and version 2 built."""
    base = tmp_path / "dest"
    rollout = {"waves": [1, "100%"], "check": ["test -e {path}/etc/app.conf"]}
    root = make_root(tmp_path, {"url": f"file://{base}/{{host}}", "rollout": rollout,
                                "jobs": 1})
    sync(root, "--no-rollout")
    version_2(root)
    return root, base


@pytest.mark.parametrize("at", ["kept", "put:2", "manifest", "check", "put:5"])
@pytest.mark.slow
def test_a_sync_killed_in_a_wave_is_finished_by_the_next(synced: tuple[Path, Path],
                                                         at: str) -> None:
    root, base = synced
    killed(root, "sync", "dev", at=at)
    each_file_old_or_new(base)
    sync(root)
    for h in HOSTS:
        assert whole(base, h) == V2
    assert not list(base.rglob("*.facsimile-tmp")) and not list(base.rglob("pending.json"))


@pytest.mark.parametrize("at", ["kept", "put:2", "manifest", "check"])
@pytest.mark.slow
def test_a_sync_killed_in_a_wave_is_restored_by_a_rollback(synced: tuple[Path, Path],
                                                           at: str) -> None:
    root, base = synced
    killed(root, "sync", "dev", at=at)
    proc = facs(root, "rollback", "dev", "--host", "h1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert whole(base, "h1") == V1
    manifest = json.loads((base / "h1/.facsimile/manifest.json").read_text())
    assert manifest["generation"] == 1 and set(manifest["files"]) >= set(V1)


def test_a_host_killed_before_its_check_is_checked_by_the_next_sync(
        synced: tuple[Path, Path]) -> None:
    root, base = synced
    data = json.loads((root / "define/facsimile.json").read_text())
    data["deploy"]["rollout"]["check"] = ["test {host} != h1"]
    (root / "define/facsimile.json").write_text(json.dumps(data))
    killed(root, "sync", "dev", at="check")
    assert whole(base, "h1") == V2  # synced, never checked
    out = sync(root, code=1)
    assert "generation 2 was never checked: checking it now" in out
    assert "web/h1: FAILED: health check" in out
    assert whole(base, "h1") == V1
    assert all(whole(base, h) == V1 for h in HOSTS[1:])  # wave 2 never started


@pytest.mark.parametrize("at", ["move:1", "move:3", "restored"])
@pytest.mark.slow
def test_a_rollback_killed_half_way_is_finished_by_the_next(synced: tuple[Path, Path],
                                                            at: str) -> None:
    root, base = synced
    sync(root)
    killed(root, "rollback", "dev", at=at)
    each_file_old_or_new(base)
    proc = facs(root, "rollback", "dev")  # goes on to generation 1, not one further
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for h in HOSTS:
        assert whole(base, h) == V1
        manifest = json.loads((base / h / ".facsimile/manifest.json").read_text())
        assert manifest["generation"] == 1
    proc = facs(root, "rollback", "dev")  # again: the same generation, nothing moves
    assert proc.returncode == 0 and "0 restored, 0 deleted" in proc.stdout, proc.stdout
    assert all(whole(base, h) == V1 for h in HOSTS)
