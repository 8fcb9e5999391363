"""The no-op record (.facsimile/noop.record): a true no-op of `doit`, `facs build`
and `facs plan` is answered from it; any change to an input, an output, the
environment or the record itself goes the full way and gives exactly what the
full way gives with the record switched off."""

from __future__ import annotations

import json
import marshal
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import DODO, doit, facs, run, snapshot, write_tree

from facsimile import noop

MARK = "no-op answered from .facsimile/noop.record"
FAST = {"FACSIMILE_DEBUG_FASTNOOP": "1"}
OFF = {"FACSIMILE_NOOP_RECORD": "0"}
NONE = "facsimile: no no-op record: "
TIMING = (NONE + "a file of the root", NONE + "an entry is too new",
          NONE + "a source changed while")  # a run that records may miss by timing

SHOPEXT = '''import os
from pathlib import Path

from facsimile import Project


class Shop(Project):
    def extra_context(self, inst):
        if os.environ.get("EDIT_WHILE_BUILDING"):  # a user's edit while the run reads
            tmpl = Path(self.root.base, "tmpl/_ALL_/etc/app.ini.j2")
            tmpl.write_text(tmpl.read_text().replace("port =", "port ="))
        return {"flavour": "vanilla"}
'''

TREE = {
    "dodo.py": DODO,
    "shopext.py": SHOPEXT,
    "define/facsimile.json": {"name": "shop", "class": "shopext:Shop", "port": 8080,
                              "generate": {"secret_key": "token:16"}},
    "define/modules.json": [{"name": "app"}],
    "define/regions/ch1.json": {"region": "ch1"},
    "define/dev.json": {"port": 8000},
    "define/prod.json": {"inherit": ["regions/ch1"]},
    "tmpl/_lib/header.inc": "# {{ project.name }} {{ instance.name }}\n",
    "tmpl/_ALL_/etc/app.ini.j2": ('{% include "header.inc" -%}\nport = {{ instance.port }}\n'
                                  "flavour = {{ flavour }}\n"),
    "tmpl/_ALL_/etc/secret.conf.j2": "key = {{ state.secret_key }}\n",
    "extra/_ALL_/share/logo.txt": "LOGO\n",
}


def fast_doit(root: Path, *args: str, env: dict[str, str] | None = None):
    return doit(root, *args, env={**FAST, **(env or {})})


def fast_facs(root: Path, *args: str, env: dict[str, str] | None = None):
    return run([sys.executable, "-m", "facsimile.cli", *args], cwd=root,
               env={**FAST, **(env or {})})


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A built root (never changed: each test changes a copy)."""
    root = tmp_path_factory.mktemp("noop") / "root"
    write_tree(root, TREE)
    doit(root, check=True)
    return root


def copy_of(built: Path, where: Path, name: str) -> Path:
    root = where / name
    shutil.copytree(built, root, symlinks=True)
    (root / ".facsimile/noop.record").unlink(missing_ok=True)
    return root


@pytest.fixture
def recorded(built: Path, tmp_path: Path) -> Path:
    """A copy of the built root whose no-op record holds (its first no-op wrote it)."""
    root = copy_of(built, tmp_path, "a")
    for _ in range(3):  # a machine that stalls may leave an entry too new: bounded
        first = fast_doit(root)
        assert first.returncode == 0 and MARK not in first.stderr, first.stderr
        if (root / ".facsimile/noop.record").is_file():
            return root
        assert any(why in first.stderr for why in TIMING), first.stderr
        time.sleep(0.2)
    raise AssertionError(f"no record after three no-ops: {first.stderr}")


def same_bytes(a: Path, b: Path) -> bool:
    def content(root: Path) -> dict[str, bytes]:
        return {k: v[1] for k, v in snapshot(root / "BUILD").items()}
    return content(a) == content(b)


def test_a_true_noop_is_answered_without_loading_the_build(recorded: Path) -> None:
    db = (recorded / ".doit.db").stat().st_mtime_ns
    full = doit(recorded, env=OFF)
    for args in ([], ["build"], ["build:dev"], ["run", "build:dev", "build:prod"]):
        proc = fast_doit(recorded, *args)
        assert proc.returncode == 0 and MARK in proc.stderr, (args, proc.stderr)
    proc = fast_doit(recorded)
    assert proc.stdout == full.stdout == "facsimile: 0 built, 6 up to date\n"
    assert fast_doit(recorded, "build:dev").stdout == doit(recorded, "build:dev", env=OFF).stdout
    assert (recorded / ".doit.db").stat().st_mtime_ns == db
    proc = run([sys.executable, "-X", "importtime", "-m", "doit"], cwd=recorded)
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()}
    assert proc.stdout == full.stdout
    assert "facsimile.noop" in imported
    assert not imported & {"jinja2", "jsonmerge", "facsimile.tasks", "facsimile.project"}


def test_facs_build_and_plan_are_answered_as_the_full_way_prints_them(recorded: Path) -> None:
    for args in (["build"], ["build", "prod"]):
        full = facs(recorded, *args)  # the record holds: answered; off, the full way
        off = run([sys.executable, "-m", "facsimile.cli", *args], cwd=recorded, env=OFF)
        proc = fast_facs(recorded, *args)
        assert MARK in proc.stderr and proc.stdout == off.stdout == full.stdout
    for args in (["plan"], ["plan", "--json"], ["plan", "dev"]):
        first = fast_facs(recorded, *args)  # the first plan adds its answer
        assert first.returncode == 0 and MARK not in first.stderr
        again = fast_facs(recorded, *args)
        assert MARK in again.stderr, args
        assert (again.returncode, again.stdout) == (first.returncode, first.stdout)
    assert MARK in fast_doit(recorded).stderr  # a plan's answers keep the build's


def touch(path: Path) -> None:
    """A new mtime, same bytes."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def rewrite(path: Path) -> None:
    """The same bytes and mtime again (only the ctime moves)."""
    st = path.stat()
    path.write_bytes(path.read_bytes())
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def edit(rel: str, old: str, new: str) -> Callable[[Path], None]:
    def change(root: Path) -> None:
        p = root / rel
        p.write_text(p.read_text().replace(old, new))
    return change


def state_file(root: Path) -> Path:
    return next((root / "state").glob("*/state.json"))


def rotate(root: Path) -> None:
    """Another value for the generated secret, as a rotation leaves it."""
    p = state_file(root)
    doc = json.loads(p.read_text())
    entry = doc["generate"]["secret_key"]
    entry["value"] = "0" * len(str(entry["value"]))
    p.write_text(json.dumps(doc))


CHANGES: dict[str, Callable[[Path], None]] = {
    "definition edited": edit("define/dev.json", "8000", "8001"),
    "definition touched": lambda r: touch(r / "define/regions/ch1.json"),
    "project file rewritten": lambda r: rewrite(r / "define/facsimile.json"),
    "definition added": lambda r: write_tree(r, {"define/regions/ch2.json": {"region": "ch2"}}),
    "definition removed": lambda r: (r / "define/dev.json").unlink(),
    "template edited": edit("tmpl/_ALL_/etc/app.ini.j2", "port =", "port:"),
    "template touched": lambda r: touch(r / "tmpl/_ALL_/etc/app.ini.j2"),
    "include rewritten": lambda r: rewrite(r / "tmpl/_lib/header.inc"),
    "template added": lambda r: write_tree(r, {"tmpl/dev/etc/new.txt": "new\n"}),
    "template removed": lambda r: (r / "tmpl/_ALL_/etc/secret.conf.j2").unlink(),
    "extra edited": edit("extra/_ALL_/share/logo.txt", "LOGO", "LOGO2"),
    "extra touched": lambda r: touch(r / "extra/_ALL_/share/logo.txt"),
    "class module edited": edit("shopext.py", "vanilla", "mint"),
    "class module touched": lambda r: touch(r / "shopext.py"),
    "state rotated": rotate,
    "state touched": lambda r: touch(state_file(r)),
    "output edited": edit("BUILD/dev/etc/app.ini", "port", "PORT"),
    "output touched": lambda r: touch(r / "BUILD/dev/etc/app.ini"),
    "output deleted": lambda r: (r / "BUILD/prod/share/logo.txt").unlink(),
    "stray file in BUILD": lambda r: write_tree(r, {"BUILD/dev/etc/stray.txt": "x\n"}),
    "doit database touched": lambda r: touch(r / ".doit.db"),
    "dodo.py touched": lambda r: touch(r / "dodo.py"),
}


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
def test_each_change_goes_the_full_way_with_the_full_ways_result(
        change: str, recorded: Path, tmp_path: Path) -> None:
    twin = copy_of(recorded, tmp_path, "b")
    for root in (recorded, twin):
        CHANGES[change](root)
    proc = fast_doit(recorded)
    assert MARK not in proc.stderr
    off = doit(twin, env=OFF)
    assert (proc.returncode, proc.stdout) == (off.returncode, off.stdout)
    assert same_bytes(recorded, twin)


@pytest.mark.parametrize("args", [["plan"], ["build"]])
def test_facs_goes_the_full_way_after_a_change(recorded: Path, args: list[str]) -> None:
    assert MARK in fast_facs(recorded, "build").stderr
    touch(recorded / "tmpl/_ALL_/etc/app.ini.j2")
    proc = fast_facs(recorded, *args)
    assert proc.returncode == 0 and MARK not in proc.stderr


def test_the_environment_goes_the_full_way(recorded: Path) -> None:
    for args in (["list"], ["info", "build:dev"], ["-n", "2"], ["build:dev/etc/app.ini"],
                 ["clean", "-n", "build:dev/etc/app.ini"]):
        assert MARK not in fast_doit(recorded, *args).stderr, args
    assert MARK in fast_doit(recorded).stderr  # those left the record as it was
    assert MARK not in fast_doit(recorded, env={"FACSIMILE_FAST": "0"}).stderr
    assert MARK not in fast_doit(recorded, env=OFF).stderr
    assert MARK in fast_doit(recorded).stderr  # switched off: neither read nor written
    other = {"FACSIMILE_ANYTHING": "1"}
    assert MARK not in fast_doit(recorded, env=other).stderr
    assert MARK in fast_doit(recorded, env=other).stderr  # recorded for that environment
    assert MARK not in fast_doit(recorded).stderr


@pytest.mark.parametrize("how", ["flipped byte", "forged", "truncated"])
def test_a_damaged_or_forged_record_goes_the_full_way(recorded: Path, how: str) -> None:
    path = recorded / ".facsimile/noop.record"
    data = bytearray(path.read_bytes())
    if how == "flipped byte":
        i = data.index(b"counts") + 2
        data[i] ^= 0x01
    elif how == "forged":
        mac, _, body = bytes(data).partition(b"\n")
        rec = marshal.loads(body)
        rec["counts"] = {k: v + 1 for k, v in rec["counts"].items()}
        data = bytearray(mac + b"\n" + marshal.dumps(rec))
    else:
        data = data[:len(data) // 2]
    path.write_bytes(bytes(data))
    proc = fast_doit(recorded)
    assert MARK not in proc.stderr
    assert proc.stdout == "facsimile: 0 built, 6 up to date\n"


def test_a_failed_build_removes_the_record(recorded: Path) -> None:
    path = recorded / "tmpl/_ALL_/etc/app.ini.j2"
    good = path.read_text()
    path.write_text("{{ nope.nothing }}\n")
    assert fast_doit(recorded).returncode == 1
    assert not (recorded / ".facsimile/noop.record").exists()
    path.write_text(good)
    proc = fast_doit(recorded)
    assert proc.returncode == 0 and MARK not in proc.stderr
    assert NONE + "this run wrote or removed outputs" in proc.stderr, proc.stderr


def test_an_edit_while_a_run_reads_makes_no_record(recorded: Path) -> None:
    (recorded / ".facsimile/noop.record").unlink()
    touch(recorded / "define/dev.json")
    proc = fast_doit(recorded, env={"EDIT_WHILE_BUILDING": "1"})
    assert proc.returncode == 0 and MARK not in proc.stderr
    assert not (recorded / ".facsimile/noop.record").exists()
    assert NONE + "a source changed while the run read it" in proc.stderr, proc.stderr
    assert MARK not in fast_doit(recorded).stderr


def test_a_dodo_py_of_its_own_is_never_answered(recorded: Path) -> None:
    """Its own tasks or DOIT_CONFIG may make plain doit do more than build."""
    (recorded / "dodo.py").write_text(DODO + "DOIT_CONFIG = {**DOIT_CONFIG, 'verbosity': 2}\n")
    for _ in range(2):
        assert MARK not in fast_doit(recorded).stderr
    assert MARK in fast_facs(recorded, "build").stderr  # facs build reads no dodo.py


def test_a_checkout_changed_goes_the_full_way(tmp_path: Path) -> None:
    """A template edited in a source checkout, then the checkout's version bumped."""
    from test_checkout_layers import ROOT, V1, V2, make_repo
    from test_seed import BASE

    repo = make_repo(tmp_path / "apprepo", V1, V2)
    root = tmp_path / "root"
    write_tree(root, {**BASE, **ROOT, "define/modules.json": {
        "app": {"repo": str(repo), "version": "v1"}, "worker": {}}})
    doit(root, check=True)
    assert MARK not in fast_doit(root).stderr  # writes the record
    assert MARK in fast_doit(root).stderr
    [tmpl] = root.glob("SRC/*/config/facsimile/tmpl/_ALL_/etc/same.conf.j2")
    for change in (lambda r: edit(str(tmpl.relative_to(root)), "same", "SAME")(r),
                   edit("define/modules.json", '"v1"', '"v2"')):
        twin = copy_of(root, tmp_path, f"twin{len(list(tmp_path.iterdir()))}")
        for r in (root, twin):
            change(r)
        proc = fast_doit(root)
        assert MARK not in proc.stderr
        off = doit(twin, env=OFF)
        assert (proc.returncode, proc.stdout) == (off.returncode, off.stdout)
        assert "facsimile: 0 built" not in proc.stdout and same_bytes(root, twin)


def many_files(root: Path, folders: int, each: int) -> dict[str, list[str]]:
    """``folders`` folders of ``each`` files below ``root``, as a tree for noop.stats."""
    tree: dict[str, list[str]] = {}
    for i in range(folders):
        d = root / f"d{i}"
        d.mkdir(parents=True)
        for j in range(each):
            (d / f"f{j}").write_bytes(b"x")
        tree[f"d{i}"] = [".", *(f"f{j}" for j in range(each)), "absent"]
    return tree


def test_parts_cut_the_entries_in_order_and_share_them_out() -> None:
    items = [(f"d{i}", [f"f{j}" for j in range(n)]) for i, n in enumerate([5000, 10, 2500, 7])]
    flat = [(folder, name) for folder, names in items for name in names]
    for cores in (1, 2, 3, 8):
        parts = noop._parts(items, cores)
        assert [(f, n) for part in parts for f, names in part for n in names] == flat
        assert len(parts) == max(1, min(cores, len(flat) // noop.SPLIT_MIN))
        sizes = [sum(len(names) for _, names in part) for part in parts]
        assert max(sizes) - min(sizes) <= len(parts), sizes
    assert len(noop._parts(items[1:2], 8)) == 1  # too few entries to fork for
    for lead in (0, 1000, 6000, 20000):  # what the first part's process stats besides
        parts = noop._parts(items, 2, lead)
        assert [(f, n) for part in parts for f, names in part for n in names] == flat
        sizes = [sum(len(names) for _, names in part) for part in parts]
        assert abs(sizes[0] + lead - sizes[1]) <= 1 if lead <= len(flat) else sizes[0] == 0


def test_a_changed_source_answers_at_once_and_leaves_no_child_behind(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """holds(split=True): the sources are statted while children stat BUILD/; a changed
    source answers False at once, and no child is left behind."""
    tree = many_files(tmp_path / "BUILD", 2, noop.SPLIT_MIN)
    tree = {f"BUILD/{k}": v for k, v in tree.items()}
    (tmp_path / "define").mkdir()
    (tmp_path / "define" / "a.json").write_text("{}")
    tree["define"] = [".", "a.json"]
    monkeypatch.setattr(noop, "_cores", lambda: 2)
    head, outputs = noop.sources_and_outputs(tree)
    rec = {"tree": tree, "head": noop.digest(noop.stats(str(tmp_path), head)),
           "stats": noop.digest(noop.stats(str(tmp_path), outputs))}
    assert noop.holds(str(tmp_path), rec, split=True)
    assert len(noop._parts(list(outputs.items()), 2, 2)) == 2  # a child was made
    (tmp_path / "define" / "a.json").write_text('{"a": 1}')
    forked: list[int] = []
    spawn = noop._spawn

    def spawn_and_note(*args: Any) -> list[noop.Child]:
        children = spawn(*args)
        forked.extend(pid for pid, _, _ in children)
        return children

    monkeypatch.setattr(noop, "_spawn", spawn_and_note)
    assert not noop.holds(str(tmp_path), rec, split=True)
    assert forked
    for pid in forked:  # each was waited for: no such child any more
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def test_split_stats_are_the_stats_of_one_process(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    tree = many_files(tmp_path, 4, 3 * noop.SPLIT_MIN // 4 + 50)
    one = noop.stats(str(tmp_path), tree)
    for cores in (2, 3):
        monkeypatch.setattr(noop, "_cores", lambda cores=cores: cores)
        assert len(noop._parts(list(tree.items()), cores)) == cores
        assert noop.stats(str(tmp_path), tree, split=True) == one
    before = noop.digest(one)
    last = tmp_path / "d3" / "f7"  # in the last child's part
    os.utime(last, ns=(0, last.stat().st_mtime_ns + 1))
    assert noop.digest(noop.stats(str(tmp_path), tree, split=True)) != before


def test_a_child_that_fails_makes_its_part_unlike_any_stat(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    tree = many_files(tmp_path, 2, noop.SPLIT_MIN + 10)
    monkeypatch.setattr(noop, "_cores", lambda: 2)
    tree["d1"][5] = None  # type: ignore[call-overload]  # lstat(None) fails in the child only
    found = noop.stats(str(tmp_path), tree, split=True)
    half = 4 * len(tree["d0"])
    assert -2 not in found[:half] and list(found[half:]) == [-2] * 4 * len(tree["d1"])


@pytest.mark.skipif(noop._cores() < 2, reason="one core: nothing is split")
def test_a_long_record_is_split_and_still_sees_each_change(built: Path, tmp_path: Path) -> None:
    """A record of more entries than one process stats (extras of 7,000 files here)."""
    root = copy_of(built, tmp_path, "long")
    for i in range(2):
        for j in range(3500):
            p = root / f"extra/_ALL_/many{i}/f{j}.txt"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("x\n")
    assert doit(root).returncode == 0
    first = fast_doit(root)  # the first no-op writes the record
    assert MARK not in first.stderr and "14006 up to date" in first.stdout, first.stdout
    proc = fast_doit(root)
    assert MARK in proc.stderr and proc.stdout == first.stdout
    (root / "BUILD/prod/many1/f3499.txt").write_text("edited\n")  # near the end: a child's part
    proc = fast_doit(root)
    assert MARK not in proc.stderr and "1 built" in proc.stdout, proc.stdout
