"""A put's new folders go in whole: a folder that holds no file on the host is
unpacked below its temporary name and renamed in with one rename, not one per
file (the host's perl makes the choice again: a folder made meanwhile gets its
files one by one). Shown on a real sshd, with the host's real tar and perl, and
with the rename program run by the real perl here."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest
from servers import sshd  # noqa: F401  (fixture)

from facsimile.sync.destinations import open_destination
from facsimile.sync.destinations.base import TMP_SUFFIX, listing_roots, tmp_name
from facsimile.sync.destinations.ssh import COMMAND_SURVEY_FROM
from facsimile.sync.destinations.sshtar import TarPuts
from facsimile.sync.destinations.sshwire import NEW_ROOTS_MAX, RENAMES, new_roots
from facsimile.sync.scan import scan_build


def _build(root: Path, rels: list[str]) -> list:
    for i, rel in enumerate(rels):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"value {i}\n")
    (root / rels[0]).chmod(0o600)  # a secret
    return sorted(scan_build(root).values(), key=lambda f: f.rel)


def _open(sshd, base: Path, host: str, plain: bool = False):  # noqa: F811
    """The destination of ``host`` below ``base``; ``plain``: its tar not gzipped,
    so that the host unpacks what is sent as it comes (its connection, kept for
    the process, is the test's own)."""
    deploy = sshd.deploy(str(base))
    dest = open_destination(deploy["url"].replace("{host}", host), deploy, f"app/{host}")
    dest.fs.facsimile_plain = plain
    return dest


def _survey(dest, files: list) -> None:
    """Read the host as a plan does (one command: its clock, perl, the listing)."""
    dest.survey([], listing_roots([f.rel for f in files]), [], expected=COMMAND_SURVEY_FROM)


def test_new_roots_are_the_highest_folders_that_hold_no_listed_file() -> None:
    held = {"etc/app": 5, "etc/app/conf.d": 2, "etc/old": 1, "srv/www": 3, "": 1,
            ".facsimile": 1, "with space/x": 1, "var/a": 1}
    listed = frozenset({"etc", "etc/old", "var"})
    assert new_roots(held, listed) == ["etc/app", "srv", "var/a"]
    many = {f"d{i}": i + 1 for i in range(NEW_ROOTS_MAX + 4)}
    kept = new_roots(many, frozenset())
    assert len(kept) == NEW_ROOTS_MAX and "d0" not in kept and f"d{NEW_ROOTS_MAX + 3}" in kept


def test_a_survey_of_a_host_without_its_base_still_reads_its_clock_and_perl(
        sshd, tmp_path: Path) -> None:  # noqa: F811
    dest = _open(sshd, tmp_path / "dest", "nd0")
    try:
        _survey(dest, _build(tmp_path / "BUILD", [f"d/f{i}" for i in range(3)]))
        assert dest.clock is not None and abs(dest.clock - time.time()) < 60
        assert dest.perl
    finally:
        dest.close()


def test_a_put_of_new_folders_puts_every_file_in_place(
        sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    rels = [f"app/conf.d/f{i}.conf" for i in range(60)] + ["top/sub/x.conf", "top/sub/y.conf"]
    files = _build(tmp_path / "BUILD", rels)
    host = tmp_path / "dest" / "nd1"
    (host / "top").mkdir(parents=True)
    (host / "top/old.conf").write_text("someone else's\n")  # top holds a file: top/sub is new
    (host / tmp_name("app")).mkdir()
    (host / tmp_name("app") / "stale").write_text("a killed put's\n")
    sent: list[str] = []
    real = TarPuts._send_stream

    async def send(self: TarPuts, command: str, *args: object) -> object:
        sent.append(command)
        return await real(self, command, *args)

    monkeypatch.setattr(TarPuts, "_send_stream", send)
    dest = _open(sshd, tmp_path / "dest", "nd1")
    try:
        _survey(dest, files)
        after = dest.put_many(files, lambda n: None)
    finally:
        dest.close()
    assert len(sent) == 1 and shlex.quote(tmp_name("app")) in sent[0]  # unpacked whole
    assert tmp_name("top/sub") in sent[0]
    assert set(after) == set(rels)
    for f in files:
        assert (host / f.rel).read_bytes() == Path(f.path).read_bytes()
        assert (host / f.rel).stat().st_mode & 0o777 == f.mode
        assert str(int((host / f.rel).stat().st_mtime)) == after[f.rel].mtime
    assert (host / "top/old.conf").read_text() == "someone else's\n"
    assert not (host / "app/stale").exists()
    assert (host / "app").stat().st_mode & 0o777 != 0o700  # the host's umask, not the put's
    assert os.stat(host / "app/conf.d/f0.conf").st_mode & 0o777 == 0o600
    left = [p for p in host.rglob("*") if "facsimile-tmp" in p.name]
    assert left == [] and not (host / ".facsimile/put-list").exists()


def _renames(base: Path, rels: list[str], roots: list[str]) -> None:
    """Run the host's rename program (real perl) in ``base`` over ``rels``."""
    (base / "list").write_bytes(b"\0".join(r.encode() for r in rels))
    subprocess.run(["perl", "-e", RENAMES % TMP_SUFFIX, "list", "", "", *roots], cwd=base,
                   check=True)


def test_the_renames_move_a_new_folder_in_whole(tmp_path: Path) -> None:
    rels = ["app/a.conf", "app/sub/b.conf", "old/c.conf"]
    (tmp_path / ".app.facsimile-tmp/sub").mkdir(parents=True)
    (tmp_path / ".app.facsimile-tmp/a.conf").write_text("a")
    (tmp_path / ".app.facsimile-tmp/sub/b.conf").write_text("b")
    (tmp_path / "old").mkdir()
    (tmp_path / "old/.c.conf.facsimile-tmp").write_text("c")
    inode = (tmp_path / ".app.facsimile-tmp").stat().st_ino
    _renames(tmp_path, rels, ["app"])
    assert (tmp_path / "app").stat().st_ino == inode  # the very folder, renamed in
    assert [(tmp_path / r).read_text() for r in rels] == ["a", "b", "c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app", "old"]


def test_a_new_folder_made_meanwhile_gets_its_files_one_by_one(tmp_path: Path) -> None:
    rels = ["app/a.conf", "app/sub/b.conf"]
    (tmp_path / ".app.facsimile-tmp/sub").mkdir(parents=True)
    (tmp_path / ".app.facsimile-tmp/a.conf").write_text("a")
    (tmp_path / ".app.facsimile-tmp/sub/b.conf").write_text("b")
    (tmp_path / "app").mkdir()
    (tmp_path / "app/theirs.txt").write_text("made after the survey")
    _renames(tmp_path, rels, ["app"])
    assert (tmp_path / "app/theirs.txt").read_text() == "made after the survey"
    assert [(tmp_path / r).read_text() for r in rels] == ["a", "b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app"]


def test_the_renames_put_the_pending_record_first_and_the_manifest_last(
        tmp_path: Path) -> None:
    """The records a put holds besides its files: the pending record is in place
    before any file is, the manifest only once every file is, then the pending
    record goes. A rename that fails half way leaves the pending record in
    place (the next sync learns of every file this one may have put) and the
    old manifest."""
    pending, manifest = ".facsimile/pending.json", ".facsimile/manifest.json"

    def run(base: Path, rels: list[str], missing: str) -> int:
        (base / ".facsimile").mkdir(parents=True)
        (base / manifest).write_bytes(b"old")
        for rel, data in ((pending, b"P"), (manifest, b"M"), *((r, r.encode()) for r in rels)):
            if rel != missing:
                (base / tmp_name(rel)).write_bytes(data)
        (base / "list").write_bytes(b"\0".join(r.encode() for r in rels))
        return subprocess.run(["perl", "-e", RENAMES % TMP_SUFFIX, "list", pending, manifest],
                              cwd=base, capture_output=True).returncode

    ok = tmp_path / "ok"
    assert run(ok, ["a.conf", "b.conf"], "") == 0
    assert (ok / manifest).read_bytes() == b"M" and not (ok / pending).exists()
    assert (ok / "a.conf").read_bytes() == b"a.conf" and (ok / "b.conf").exists()
    assert not (ok / "list").exists() and not list(ok.rglob(f"*{TMP_SUFFIX}"))
    cut = tmp_path / "cut"
    assert run(cut, ["a.conf", "b.conf"], "b.conf") != 0
    assert (cut / pending).read_bytes() == b"P" and (cut / "a.conf").exists()
    assert (cut / manifest).read_bytes() == b"old"
