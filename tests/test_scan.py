"""The build's side of a sync: each file's digest, read once and kept between
runs while its size, mtime, ctime and inode stay the same."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from conftest import facs, write_tree
from test_sync import make_root

from facsimile.sync import scan


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the scan reads (hashes), as it reads them."""
    read: list[str] = []
    real = scan.sha256_file

    def counted(path: str) -> str:
        read.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(scan, "sha256_file", counted)
    return read


@pytest.mark.slow
def test_a_file_is_read_again_only_when_it_changed(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    build = tmp_path / "BUILD/dev"
    write_tree(build, {"a.conf": "a\n", "etc/b.conf": "b\n", "etc/secret.ini": "pw\n"})
    os.chmod(build / "etc/secret.ini", 0o600)
    read = _counting(monkeypatch)
    cache: dict = {}
    first = scan.scan_build(build, cache)
    assert sorted(read) == ["a.conf", "b.conf", "secret.ini"]
    assert cache == {}  # written just now: a change in the same clock tick could hide
    time.sleep(2.1)
    read.clear()
    scan.scan_build(build, cache)
    assert sorted(cache) == ["a.conf", "etc/b.conf"]  # never a file only its owner reads
    read.clear()
    again = scan.scan_build(build, cache)
    assert read == ["secret.ini"] and again == first
    # same size, mtime put back: the ctime moved, so it is read again
    st = os.stat(build / "a.conf")
    (build / "a.conf").write_text("A\n")
    os.utime(build / "a.conf", ns=(st.st_atime_ns, st.st_mtime_ns))
    read.clear()
    now = scan.scan_build(build, cache)
    assert sorted(read) == ["a.conf", "secret.ini"]
    assert now["a.conf"].digest == hashlib.sha256(b"A\n").hexdigest()


@pytest.mark.slow
def test_a_sync_keeps_the_digests_in_an_authenticated_cache(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    root = make_root(tmp_path, {"url": f"file://{dest}/{{host}}"})
    assert facs(root, "sync", "dev").returncode == 0
    secret = (root / "BUILD/dev/etc/db.ini").read_text().split("= ")[1].strip()
    time.sleep(2.1)
    assert facs(root, "sync", "dev").returncode == 0
    cache = root / ".facsimile/scan-dev.json"
    mac, _, body = cache.read_bytes().partition(b"\n")
    assert b"etc/app.ini" in body and b"etc/db.ini" not in body and secret.encode() not in body
    # a cache edited by hand (its MAC no longer fits) is not believed: had the
    # forged digest been taken, app.ini would look changed and be put again
    doc = json.loads(body)
    doc["etc/app.ini"][4] = "0" * 64
    cache.write_bytes(mac + b"\n" + json.dumps(doc, sort_keys=True).encode())
    out = facs(root, "sync", "dev", "--no-build")
    assert out.returncode == 0 and out.stdout.count(": 0 put, 0 deleted") == 2, out.stdout
