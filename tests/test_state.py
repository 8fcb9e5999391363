"""Generated state through the real `facs` command: made once, kept, shared, safe."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from conftest import facs, write_tree

GEN = {"pw": "password", "pw40": "password:40", "tok": "token", "tok8": "token:8",
       "cluster": "uuid", "node": "id", "node2": "id"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_tree(tmp_path, {
        "define/facsimile.json": {"name": "p", "generate": GEN},
        "define/modules.json": [{"name": "app"}, {"name": "db", "username": "dbuser"}],
        "define/prod.json": {},
        "define/prod.ch1.json": {"generate": {"ch1_only": "token:16"}},
        "define/dev.json": {},
    })
    return tmp_path


def state_file(root: Path, family: str) -> Path:
    return root / "state" / family / "state.json"


def values(root: Path, inst: str) -> dict[str, str]:
    """``{path: value}`` from `facs state show INST --reveal`."""
    out = facs(root, "state", "show", inst, "--reveal", check=True).stdout
    result = {}
    for line in out.splitlines():
        if line.startswith("#"):
            continue
        path, _kind, value = line.split("  ", 2)
        result[path] = value
    return result


def test_kinds_have_their_formats(root: Path) -> None:
    v = values(root, "prod")
    assert re.fullmatch(r"[A-Za-z0-9]{24}", v["state.pw"])
    assert re.fullmatch(r"[A-Za-z0-9]{40}", v["state.pw40"])
    assert re.fullmatch(r"[0-9a-f]{64}", v["state.tok"])
    assert re.fullmatch(r"[0-9a-f]{16}", v["state.tok8"])
    assert uuid.UUID(v["state.cluster"]).version == 4
    ids = {int(v["state.node"]), int(v["state.node2"])}
    assert len(ids) == 2 and all(0 < i < 256 for i in ids)
    assert re.fullmatch(r"[A-Za-z0-9]{24}", v["module.app.password"])
    assert v["module.app.password"] != v["module.db.password"]
    f = state_file(root, "prod")
    assert stat.S_IMODE(f.stat().st_mode) == 0o600


def test_values_are_kept_across_runs_and_rebuilds(root: Path) -> None:
    first = values(root, "prod")
    assert values(root, "prod") == first
    for sub in ("BUILD", ".facsimile", ".doit.db"):
        p = root / sub
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    assert values(root, "prod") == first


def test_subinstance_shares_its_family_state(root: Path) -> None:
    sub = values(root, "prod.ch1")
    parent = values(root, "prod")
    assert sub["module.app.password"] == parent["module.app.password"]
    assert sub["state.node"] == parent["state.node"]
    assert not (root / "state" / "prod.ch1").exists()
    assert values(root, "dev")["module.app.password"] != parent["module.app.password"]


def test_read_only_commands_never_write_state(root: Path) -> None:
    facs(root, "list", check=True)
    out = facs(root, "show", "prod", check=True).stdout
    assert "not generated yet" in out
    facs(root, "plan", "prod")
    assert not (root / "state").exists()


def test_secrets_are_masked_unless_revealed(root: Path) -> None:
    v = values(root, "prod")
    masked = facs(root, "state", "show", "prod", check=True).stdout
    shown = facs(root, "show", "prod", check=True).stdout
    for secret in (v["state.pw"], v["state.tok"], v["module.app.password"]):
        assert secret not in masked and secret not in shown
    assert "********" in masked and "********" in shown
    assert v["module.app.password"] in facs(root, "show", "prod", "--reveal").stdout


def test_rotate_changes_exactly_that_value(root: Path) -> None:
    before = values(root, "prod")
    facs(root, "state", "rotate", "prod", "tok", check=True)
    after = values(root, "prod")
    assert after["state.tok"] != before["state.tok"]
    assert {k: v for k, v in after.items() if k != "state.tok"} == {
        k: v for k, v in before.items() if k != "state.tok"}
    facs(root, "state", "rotate", "prod", "app", check=True)
    assert values(root, "prod")["module.app.password"] != before["module.app.password"]
    facs(root, "state", "rotate", "prod", "node", check=True)
    rotated = values(root, "prod")
    used = {before["state.node"], before["state.node2"]}
    assert rotated["state.node"] not in used  # ids are never reused
    proc = facs(root, "state", "rotate", "prod", "nope")
    assert proc.returncode == 1 and "not a generate entry or module" in proc.stderr


def test_two_processes_at_once_see_the_same_values(tmp_path: Path) -> None:
    many = {f"k{i}": "token:16" for i in range(60)}
    write_tree(tmp_path, {"define/facsimile.json": {"name": "p", "generate": many},
                          "define/prod.json": {}, "define/prod.b.json": {}})
    cmd = [sys.executable, "-m", "facsimile.cli", "state", "show", "--reveal"]
    procs = [subprocess.Popen([*cmd, name], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for name in ("prod", "prod.b", "prod", "prod.b")]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    seen = [sorted(line for line in o.splitlines() if not line.startswith("#")) for o, _ in outs]
    assert all(s == seen[0] for s in seen)
    stored = json.loads(state_file(tmp_path, "prod").read_text())
    assert len(stored["generate"]) == 60
    assert sorted(f"state.{k}  {e['kind']}  {e['value']}"
                  for k, e in stored["generate"].items()) == [
        s for s in seen[0] if s.startswith("state.")]


@pytest.mark.parametrize("damage", ["truncated", "not json", "folder"])
def test_bad_state_is_an_error_and_left_alone(root: Path, damage: str) -> None:
    values(root, "prod")
    f = state_file(root, "prod")
    if damage == "truncated":
        f.write_bytes(f.read_bytes()[:40])
    elif damage == "not json":
        f.write_text("this is not json\n")
    else:
        f.unlink()
        f.mkdir()
        (f / "keep").write_text("x")
    before = None if damage == "folder" else f.read_bytes()
    proc = facs(root, "state", "show", "prod")
    assert proc.returncode == 1
    assert "state/prod/state.json" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    if before is None:
        assert f.is_dir() and (f / "keep").read_text() == "x"
    else:
        assert f.read_bytes() == before
    # a build refuses too, without touching it
    write_tree(root, {"dodo.py": "from facsimile.dodo import *\n",
                      "tmpl/_ALL_/a.txt": "{{ module.app.password }}\n"})
    proc = facs(root, "build", "prod")
    assert proc.returncode != 0
    assert not (root / "BUILD/prod/a.txt").exists()
    if before is not None:
        assert f.read_bytes() == before
