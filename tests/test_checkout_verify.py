"""A build asks no remote about a source checkout that is there; ``facs checkout
--verify``, ``facs sync`` and ``doit sync:<instance>`` do, and refuse a tag that
moved or is gone. With a real git repository made here as the module's repo."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import doit, facs, write_tree
from test_seed import _git

TMPL = "config/facsimile/tmpl/_ALL_/etc/app-src.conf.j2"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A real git repository with layered templates at tags v1 and v2."""
    r = tmp_path / "apprepo"
    for n, version in enumerate(("v1", "v2")):
        write_tree(r, {TMPL: f"{version} {{{{ instance.name }}}}\n"})
        if not n:
            _git(r.parent, "init", "-q", str(r))
        _git(r, "add", "-A")
        _git(r, "commit", "-qm", version)
        _git(r, "tag", version)
    return r


def make_root(tmp_path: Path, repo_path: Path) -> Path:
    root = tmp_path / "root"
    write_tree(root, {
        "dodo.py": "from facsimile.dodo import *  # noqa: F403\n",
        "define/facsimile.json": {"name": "shop",
                                  "deploy": {"url": f"file://{tmp_path}/hosts/{{host}}"}},
        "define/modules.json": {"app": {"repo": str(repo_path), "version": "v1"}},
        "define/dev.json": {"targets": {"web": {"hosts": ["h1"]}}},
        "tmpl/_ALL_/etc/own.conf": "own\n",
    })
    return root


def one_line_error(proc, *words: str) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert all(w in lines[0] for w in words), lines[0]
    return lines[0]


@pytest.mark.slow
def test_a_no_op_build_asks_no_remote_and_verify_does(tmp_path: Path, repo: Path) -> None:
    root = make_root(tmp_path, repo)
    first = doit(root, check=True)
    assert ".  checkout:app" in first.stdout  # the clone is the check of a new checkout
    assert (root / "BUILD/dev/etc/app-src.conf").read_text() == "v1 dev\n"
    gone = repo.rename(tmp_path / "elsewhere")  # the remote is unreachable now
    for proc in (doit(root), facs(root, "build")):
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout == "facsimile: 0 built, 2 up to date\n" and proc.stderr == ""
    assert "app v1: present" in facs(root, "checkout", check=True).stdout
    one_line_error(facs(root, "checkout", "--verify"), "define/modules.json", "app:",
                   str(repo), "'v1'", "cannot read")
    gone.rename(repo)
    assert "app v1: verified (SRC/app-v1)" in facs(root, "checkout", "--verify",
                                                   check=True).stdout
    _git(repo, "tag", "-f", "v1", "v2")  # the tag moves to another commit
    one_line_error(facs(root, "checkout", "--verify", "dev"), "app:", str(repo), "'v1'",
                   "moved")
    _git(repo, "tag", "-d", "v1")
    one_line_error(facs(root, "checkout", "--verify"), "app:", "'v1'", "no longer exists")


def test_sync_refuses_a_moved_tag_before_anything(tmp_path: Path, repo: Path) -> None:
    root = make_root(tmp_path, repo)
    _git(repo, "tag", "-f", "v1", "v2")  # moved before this checkout was made: fine
    facs(root, "sync", "dev", check=True)
    hosts = tmp_path / "hosts"
    before = {p: p.read_bytes() for p in hosts.rglob("*") if p.is_file()}
    assert (hosts / "h1/etc/app-src.conf").read_text() == "v2 dev\n"
    head = root / "SRC/app-v1"
    _git(repo, "commit", "-q", "--allow-empty", "-m", "three")
    _git(repo, "tag", "-f", "v1")
    write_tree(root, {"tmpl/_ALL_/etc/own.conf": "changed\n"})
    one_line_error(facs(root, "sync", "dev"), "app:", str(repo), "'v1'", "moved")
    proc = doit(root, "sync:dev")
    assert proc.returncode != 0 and "moved" in proc.stdout + proc.stderr
    assert {p: p.read_bytes() for p in hosts.rglob("*") if p.is_file()} == before
    assert head.is_dir()  # the checkout stays: the user decides
