"""The no-op record (.facsimile/noop.json): a true no-op of `doit`, `facs build`
and `facs plan` is answered from it; any change to an input, an output, the
environment or the record itself goes the full way and gives exactly what the
full way gives with the record switched off."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import DODO, doit, facs, run, snapshot, write_tree

MARK = "no-op answered from .facsimile/noop.json"
FAST = {"FACSIMILE_DEBUG_FASTNOOP": "1"}
OFF = {"FACSIMILE_NOOP_RECORD": "0"}

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
    (root / ".facsimile/noop.json").unlink(missing_ok=True)
    return root


@pytest.fixture
def recorded(built: Path, tmp_path: Path) -> Path:
    """A copy of the built root whose no-op record holds (its first no-op wrote it)."""
    root = copy_of(built, tmp_path, "a")
    first = fast_doit(root)
    assert first.returncode == 0 and MARK not in first.stderr, first.stderr
    assert (root / ".facsimile/noop.json").is_file()
    return root


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
    path = recorded / ".facsimile/noop.json"
    data = bytearray(path.read_bytes())
    if how == "flipped byte":
        i = data.index(b'"counts"') + 2
        data[i] ^= 0x01
    elif how == "forged":
        mac, _, body = bytes(data).partition(b"\n")
        rec = json.loads(body)
        rec["counts"] = {k: v + 1 for k, v in rec["counts"].items()}
        data = bytearray(mac + b"\n" + json.dumps(rec).encode())
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
    assert not (recorded / ".facsimile/noop.json").exists()
    path.write_text(good)
    proc = fast_doit(recorded)
    assert proc.returncode == 0 and MARK not in proc.stderr


def test_an_edit_while_a_run_reads_makes_no_record(recorded: Path) -> None:
    (recorded / ".facsimile/noop.json").unlink()
    touch(recorded / "define/dev.json")
    proc = fast_doit(recorded, env={"EDIT_WHILE_BUILDING": "1"})
    assert proc.returncode == 0 and MARK not in proc.stderr
    assert not (recorded / ".facsimile/noop.json").exists()
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
