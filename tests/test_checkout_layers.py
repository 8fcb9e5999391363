"""Templates in the application repository: a source checkout's tmpl/ and extra/
have the root's layers, interleaved below the root's, and a version bump
rebuilds only the outputs whose templates differ between the two tags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import doit, facs, mtimes, write_tree
from test_seed import BASE, _git

T = "config/facsimile/tmpl"
V1 = {
    f"{T}/_ALL_/etc/same.conf.j2": "same {{ instance.name }}\n",
    f"{T}/_ALL_/etc/changes.conf.j2": "v1 {{ instance.name }}\n",
    f"{T}/_ALL_/etc/root-wins.conf": "checkout all\n",
    f"{T}/dev/etc/layered.conf": "checkout dev\n",
    f"{T}/dev/etc/top.conf": "checkout dev\n",
    f"{T}/_ALL_/etc/app-macro.conf.j2": ('{% from "m.j2" import hi %}{{ hi(instance.name) }}\n'
                                         '{% include "shared.inc" %}'),
    f"{T}/_lib/m.j2": "{% macro hi(x) %}hi {{ x }} from the app{% endmacro %}",
    f"{T}/_lib/shared.inc": "shared from the app\n",
    f"{T}/_lib/inc.j2": "inc v1\n",
    "config/facsimile/extra/_ALL_/share/app.txt": "static\n",
    "config/facsimile/extra/dev/share/dev.txt": "dev static\n",
}
V2 = {
    f"{T}/_ALL_/etc/changes.conf.j2": "v2 {{ instance.name }}\n",
    f"{T}/_lib/inc.j2": "inc v2\n",
}
ROOT = {
    "tmpl/_ALL_/etc/root-wins.conf": "root all\n",
    "tmpl/_ALL_/etc/layered.conf": "root all\n",
    "tmpl/dev/etc/top.conf": "root dev\n",
    "tmpl/_ALL_/etc/uses-macro.conf.j2": '{% from "m.j2" import hi %}{{ hi("root") }}\n',
    "tmpl/_ALL_/etc/inc.conf.j2": '{% include "inc.j2" %}',
    "tmpl/_lib/shared.inc": "shared from the root\n",
}


def make_repo(path: Path, v1: dict[str, str], v2: dict[str, str]) -> Path:
    """A real git repository with ``v1`` committed and tagged v1, then ``v2`` as v2."""
    write_tree(path, v1)
    _git(path.parent, "init", "-q", str(path))
    _git(path, "add", "-A")
    _git(path, "commit", "-qm", "one")
    _git(path, "tag", "v1")
    write_tree(path, v2)
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "--allow-empty", "-m", "two")
    _git(path, "tag", "v2")
    return path


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A root whose app module's templates come from a layered checkout at v1."""
    repo = make_repo(tmp_path / "apprepo", V1, V2)
    root = tmp_path / "root"
    write_tree(root, {**BASE, **ROOT, "define/modules.json": {
        "app": {"repo": str(repo), "version": "v1"}, "worker": {}}})
    return root


CHANGED = {"dev/etc/changes.conf", "prod/etc/changes.conf", "dev/etc/inc.conf",
           "prod/etc/inc.conf"}


def made(stdout: str) -> set[str]:
    """The outputs a doit run made, from its lines ``.  build:<instance>/<path>``."""
    return {line.split("build:", 1)[1] for line in stdout.splitlines()
            if line.startswith(".  build:") and "/" in line}


def bump(root: Path, version: str) -> None:
    modules = json.loads((root / "define/modules.json").read_text())
    modules["app"]["version"] = version
    write_tree(root, {"define/modules.json": modules})


def test_layers_and_override_order(shop: Path) -> None:
    proc = doit(shop, check=True)
    assert "notice" not in proc.stderr
    dev, prod = shop / "BUILD/dev", shop / "BUILD/prod"
    assert not [p for p in mtimes(shop / "BUILD") if "_ALL_" in p or "_lib" in p]
    assert (dev / "etc/same.conf").read_text() == "same dev\n"
    assert (dev / "etc/root-wins.conf").read_text() == "root all\n"  # root _ALL_ > checkout _ALL_
    assert (dev / "etc/layered.conf").read_text() == "checkout dev\n"  # checkout dev > root _ALL_
    assert (prod / "etc/layered.conf").read_text() == "root all\n"
    assert (dev / "etc/top.conf").read_text() == "root dev\n"  # root dev > checkout dev
    assert not (prod / "etc/top.conf").exists()
    # _lib: the root's first, then the checkout's, for root and checkout templates alike
    assert (dev / "etc/uses-macro.conf").read_text() == "hi root from the app\n"
    assert (dev / "etc/app-macro.conf").read_text() == "hi dev from the app\nshared from the root\n"
    assert (dev / "share/app.txt").read_text() == "static\n"
    assert (dev / "share/dev.txt").read_text() == "dev static\n"
    assert not (prod / "share/dev.txt").exists() and (prod / "share/app.txt").exists()
    assert "0 built" in doit(shop, check=True).stdout
    # the plan and doit info name checkout files by their place in SRC/
    write_tree(shop / "SRC/app-v1", {f"{T}/dev/etc/layered.conf": "edited\n"})
    out = json.loads(facs(shop, "plan", "--json").stdout)
    assert [(s["path"], s["reasons"]) for s in out["stale"]] == [(
        "BUILD/dev/etc/layered.conf",
        [f"template changed: SRC/app-v1/{T}/dev/etc/layered.conf"])]
    info = doit(shop, "info", "build:dev/etc/layered.conf").stdout  # exit 1: stale
    assert f"SRC/app-v1/{T}/dev/etc/layered.conf" in info


@pytest.mark.slow
def test_version_bump_rebuilds_only_what_differs(shop: Path) -> None:
    doit(shop, check=True)
    before = mtimes(shop / "BUILD")
    bump(shop, "v2")
    proc = facs(shop, "plan", "--json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    stale = {s["path"]: s["reasons"] for s in json.loads(proc.stdout)["stale"]}
    assert stale == {
        f"BUILD/{i}/etc/changes.conf": [
            f"template changed: SRC/app-v2/{T}/_ALL_/etc/changes.conf.j2"]
        for i in ("dev", "prod")
    } | {
        f"BUILD/{i}/etc/inc.conf": [f"include changed: SRC/app-v2/{T}/_lib/inc.j2"]
        for i in ("dev", "prod")
    }
    assert made(doit(shop, check=True).stdout) == CHANGED
    after = mtimes(shop / "BUILD")
    assert {p for p in after if after[p] != before[p]} == CHANGED
    assert (shop / "BUILD/dev/etc/changes.conf").read_text() == "v2 dev\n"
    # the records of the outputs kept now name the new checkout: a plain no-op again
    assert "SRC/app-v1" not in (shop / ".doit.db").read_text()
    assert "0 built" in doit(shop, check=True).stdout
    assert facs(shop, "plan").returncode == 0
    # and back: the old checkout is still there, so is the old content
    bump(shop, "v1")
    assert made(doit(shop, check=True).stdout) == CHANGED
    assert (shop / "BUILD/dev/etc/inc.conf").read_text() == "inc v1\n"
    again = mtimes(shop / "BUILD")
    assert {p for p in again if again[p] != after[p]} == CHANGED


def test_version_bump_after_the_old_checkout_is_gone(shop: Path) -> None:
    import shutil

    doit(shop, check=True)
    before = mtimes(shop / "BUILD")
    shutil.rmtree(shop / "SRC/app-v1")
    bump(shop, "v2")
    assert made(doit(shop, check=True).stdout) == CHANGED
    after = mtimes(shop / "BUILD")
    assert {p for p in after if after[p] != before[p]} == CHANGED


def test_flat_checkout_still_builds_with_a_notice(tmp_path: Path) -> None:
    flat = f"{T}/etc/from-src.conf.j2"
    repo = make_repo(tmp_path / "apprepo", {flat: "flat {{ instance.name }}\n"},
                     {flat: "flat2 {{ instance.name }}\n"})
    root = tmp_path / "root"
    write_tree(root, {**BASE, "tmpl/_ALL_/etc/own.conf": "own\n",
                      "tmpl/dev/etc/from-src.conf": "root dev\n",
                      "define/modules.json": {"app": {"repo": str(repo), "version": "v1"}}})
    proc = doit(root, check=True)
    assert (root / "BUILD/prod/etc/from-src.conf").read_text() == "flat prod\n"
    assert (root / "BUILD/dev/etc/from-src.conf").read_text() == "root dev\n"
    notice = [line for line in proc.stderr.splitlines() if "notice" in line]
    assert notice == [
        f"facsimile: notice: SRC/app-v1/{T} has no _ALL_/ or instance layers: its files are "
        f"used as one layer below tmpl/_ALL_; move them to {T}/_ALL_/ (see "
        "docs/pages/templates.md, "
        '"Templates in the application repository")']
    assert "0 built" in doit(root, check=True).stdout
    assert facs(root, "plan").returncode == 0
    bump(root, "v2")
    proc = doit(root, check=True)
    assert (root / "BUILD/prod/etc/from-src.conf").read_text() == "flat2 prod\n"
    assert [line for line in proc.stderr.splitlines() if "notice" in line] == [
        notice[0].replace("app-v1", "app-v2")]


def test_custom_tmpl_path_has_its_extra_beside_it(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "apprepo", {"deploy/templates/_ALL_/a.conf": "a\n",
                                            "deploy/extra/prod/b.txt": "b\n"}, {})
    root = tmp_path / "root"
    write_tree(root, {**BASE, "define/modules.json": {
        "app": {"repo": str(repo), "version": "v1", "tmpl": "deploy/templates"}}})
    proc = doit(root, check=True)
    assert "notice" not in proc.stderr
    assert (root / "BUILD/dev/a.conf").read_text() == "a\n"
    assert (root / "BUILD/prod/b.txt").read_text() == "b\n"
    assert not (root / "BUILD/dev/b.txt").exists()


@pytest.mark.parametrize("tmpl", ["/tmp", "../../../tmp", "config/../.."])
def test_a_checkout_tmpl_outside_the_checkout_is_refused(shop: Path, tmpl: str) -> None:
    modules = json.loads((shop / "define/modules.json").read_text())
    modules["app"]["tmpl"] = tmpl
    write_tree(shop, {"define/modules.json": modules})
    proc = doit(shop)
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out and "must be a folder inside its checkout" in out, out
    assert not (shop / "BUILD").exists() or not any((shop / "BUILD").rglob("*"))
