"""`facs plan`: every kind of change, its reason, exit code, and nothing written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import doit, facs, snapshot, write_tree
from test_build import TREE, edit_json


@pytest.fixture
def built(tmp_path: Path) -> Path:
    write_tree(tmp_path, TREE)
    write_tree(tmp_path, {"extra/prod/notes.txt": "prod notes\n"})
    doit(tmp_path, check=True)
    return tmp_path


def disk(root: Path) -> dict:
    out = {}
    for sub in ("BUILD", "state"):
        out.update({f"{sub}/{k}": v for k, v in snapshot(root / sub).items()})
    db = root / ".doit.db"
    out[".doit.db"] = (db.stat().st_mtime_ns, db.read_bytes())
    return out


def plan(root: Path, *args: str) -> tuple[int, dict[str, list[str]]]:
    """Exit code and ``{path: reasons}`` from `facs plan --json`."""
    proc = facs(root, "plan", "--json", *args)
    assert proc.returncode in (0, 2), proc.stderr
    doc = json.loads(proc.stdout)
    return proc.returncode, {s["path"]: s["reasons"] for s in doc["stale"]}


def stale_in_doit(root: Path) -> set[str]:
    """Output tasks `doit list --all --status` marks to run."""
    proc = doit(root, "list", "--all", "--status", check=True)
    names = set()
    for line in proc.stdout.splitlines():
        m = re.match(r"^R (build:\S+/\S+)", line)
        if m:
            names.add(m.group(1))
    return names


def test_nothing_stale_exits_0(built: Path) -> None:
    proc = facs(built, "plan")
    assert proc.returncode == 0
    assert "nothing to do" in proc.stdout and "up to date" in proc.stdout


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        (lambda r: edit_json(r / "define/prod.json", {"db.host": "x"}),
         {"BUILD/prod/etc/db.ini": ["value changed: instance.db.host"]}),
        (lambda r: (r / "tmpl/_ALL_/etc/static.txt").write_text("new\n"),
         {f"BUILD/{i}/etc/static.txt": ["template changed: tmpl/_ALL_/etc/static.txt"]
          for i in ("dev", "prod", "prod.ch1")}),
        (lambda r: (r / "tmpl/_lib/header.inc").write_text("#\n"),
         {f"BUILD/{i}/etc/app.ini": ["include changed: tmpl/_lib/header.inc"]
          for i in ("dev", "prod", "prod.ch1")}),
        (lambda r: facs(r, "state", "rotate", "dev", "secret_key", check=True),
         {"BUILD/dev/etc/secret.conf": ["state changed: state.secret_key"]}),
        (lambda r: facs(r, "state", "rotate", "dev", "db_user", check=True),
         {"BUILD/dev/etc/db.ini": ["state changed: module.db_user.password"]}),
        (lambda r: (r / "extra/prod/notes.txt").write_text("changed\n"),
         {f"BUILD/{i}/notes.txt": ["extra changed: extra/prod/notes.txt"]
          for i in ("prod", "prod.ch1")}),
        (lambda r: (r / "extra/prod/notes.txt").unlink(),
         {f"BUILD/{i}/notes.txt": ["orphan"] for i in ("prod", "prod.ch1")}),
        (lambda r: write_tree(r, {"tmpl/_ALL_/etc/new.conf": "n\n"}),
         {f"BUILD/{i}/etc/new.conf": ["new"] for i in ("dev", "prod", "prod.ch1")}),
        (lambda r: (r / "BUILD/dev/etc/app.ini").write_text("edited by hand\n"),
         {"BUILD/dev/etc/app.ini": ["output modified in BUILD"]}),
    ],
    ids=["value", "template", "include", "state", "module-password", "extra", "orphan", "new",
         "hand-edit"],
)
@pytest.mark.slow
def test_each_change_has_its_reason(built: Path, change, expect) -> None:
    change(built)
    before = disk(built)
    code, stale = plan(built)
    assert code == 2
    assert stale == expect
    assert disk(built) == before  # the plan wrote nothing
    # doit agrees on what is stale, and then rebuilds exactly that
    want_tasks = {"build:" + p.removeprefix("BUILD/") for p, r in expect.items() if r != ["orphan"]}
    assert stale_in_doit(built) == want_tasks
    proc = doit(built, check=True)
    built_now = set(re.findall(r"^\.  (build:\S+/\S+)$", proc.stdout, re.M))
    assert built_now == want_tasks
    assert plan(built) == (0, {})


@pytest.mark.slow
def test_unread_value_is_not_stale(built: Path) -> None:
    edit_json(built / "define/facsimile.json", {"unused.x": 5})
    assert plan(built) == (0, {})


@pytest.mark.slow
def test_diff_shows_change_and_masks_state(built: Path) -> None:
    state = json.loads((built / "state/prod/state.json").read_text())
    old_pw = state["modules"]["db_user"]["value"]
    edit_json(built / "define/prod.json", {"db.host": "db9.prod"})
    facs(built, "state", "rotate", "prod", "db_user", check=True)
    new_pw = json.loads((built / "state/prod/state.json").read_text())["modules"]["db_user"]
    proc = facs(built, "plan", "--diff", "prod")
    assert proc.returncode == 2
    assert "-host = db.prod" in proc.stdout and "+host = db9.prod" in proc.stdout
    assert old_pw not in proc.stdout and new_pw["value"] not in proc.stdout
    assert "password = ********" in proc.stdout


@pytest.mark.slow
def test_diff_names_binary_files(built: Path) -> None:
    write_tree(built, {"extra/_ALL_/img.bin": b"\x00\x01\x02"})
    doit(built, check=True)
    (built / "extra/_ALL_/img.bin").write_bytes(b"\x00\x01\x03")
    proc = facs(built, "plan", "--diff", "dev")
    assert "Binary file BUILD/dev/img.bin differs" in proc.stdout


def test_plan_without_state_says_what_it_would_generate(tmp_path: Path) -> None:
    write_tree(tmp_path, TREE)
    proc = facs(tmp_path, "plan", "dev")
    assert proc.returncode == 2
    assert "state of family dev does not exist yet: " in proc.stdout
    assert " values will be generated (" in proc.stdout
    assert "module.db_user.password" in proc.stdout and "state.secret_key" in proc.stdout
    assert not (tmp_path / "state").exists()
    assert not (tmp_path / "BUILD").exists()


@pytest.mark.slow
def test_plan_error_exits_1(built: Path) -> None:
    (built / "define/prod.json").write_text("{ nope")
    proc = facs(built, "plan")
    assert proc.returncode == 1
    assert "define/prod.json:1:3" in proc.stderr


@pytest.mark.slow
def test_doit_info_says_why(built: Path) -> None:
    edit_json(built / "define/prod.json", {"db.host": "elsewhere"})
    proc = doit(built, "info", "build:prod/etc/db.ini")
    assert proc.returncode == 1  # doit info exits 1 for a task that would run
    out = proc.stdout
    assert "status     : run" in out
    assert "value changed: instance.db.host" in out
    out = doit(built, "info", "build:prod/etc/app.ini", check=True).stdout
    assert "up-to-date" in out


@pytest.mark.slow
def test_diff_writes_nothing_and_notes_a_masked_only_change(built: Path) -> None:
    facs(built, "state", "rotate", "dev", "secret_key", check=True)
    before = disk(built)
    proc = facs(built, "plan", "--diff", "dev")
    assert proc.returncode == 2
    assert disk(built) == before
    assert "BUILD/dev/etc/secret.conf: state changed: state.secret_key" in proc.stdout
    assert "(no difference in BUILD/dev/etc/secret.conf once generated values are masked)" \
        in proc.stdout


@pytest.mark.slow
def test_diff_renders_arithmetic_on_a_masked_id(built: Path) -> None:
    write_tree(built, {"tmpl/_ALL_/etc/port.conf": "port = {{ state.node + 9000 }}\n"
                                                    "node = {{ state.node }}\n"})
    proc = facs(built, "plan", "--diff", "dev")
    assert "cannot render" not in proc.stdout
    node = json.loads((built / "state/dev/state.json").read_text())["generate"]["node"]["value"]
    assert f"+port = {9000 + node}" in proc.stdout
    assert "+node = ********" in proc.stdout


@pytest.mark.slow
def test_genconfig_names_the_rotated_password(built: Path) -> None:
    write_tree(built, {"define/modules.json": [{"name": "app"},
                                               {"name": "db_user", "genconfig": True}]})
    doit(built, check=True)
    facs(built, "state", "rotate", "dev", "db_user", check=True)
    code, stale = plan(built, "dev")
    assert code == 2
    assert stale["BUILD/dev/etc/db_user.json"] == ["state changed: module.db_user.password"]


@pytest.mark.slow
def test_an_instance_named_twice_is_planned_once(built: Path) -> None:
    edit_json(built / "define/dev.json", {"app.port": 1})
    once = facs(built, "plan", "dev").stdout
    twice = facs(built, "plan", "dev", "dev").stdout
    assert once == twice and once.count("BUILD/dev/etc/app.ini") == 1


def test_unreadable_doit_database_is_an_error(built: Path) -> None:
    (built / ".doit.db").write_text('{"trunc')
    proc = facs(built, "plan")
    assert proc.returncode == 1
    assert ".doit.db" in proc.stderr and "Traceback" not in proc.stderr
    assert doit(built).returncode != 0  # doit refuses it too: the two agree


@pytest.mark.slow
def test_diff_masks_a_rotated_away_secret_on_a_changed_line(built: Path) -> None:
    old_pw = json.loads((built / "state/prod/state.json").read_text())[
        "modules"]["db_user"]["value"]
    facs(built, "state", "rotate", "prod", "db_user", check=True)
    state = json.loads((built / "state/prod/state.json").read_text())
    assert state["modules"]["db_user"]["previous"] == [old_pw]
    # the old file holds the old value on a line the new template no longer makes:
    # only the kept previous value can mask it
    write_tree(built, {"tmpl/_ALL_/etc/db.ini.j2": (
        "host = {{ instance.db.host }}\nuser = {{ module.db_user.username }}\n"
        "secret = {{ module.db_user.password | upper }}\n")})
    (built / "BUILD/prod/etc/db.ini").write_text(f"secret = {old_pw.upper()}\n"
                                                 f"pw = {old_pw}\n")
    proc = facs(built, "plan", "--diff", "prod")
    assert proc.returncode == 2
    assert old_pw not in proc.stdout and old_pw.upper() not in proc.stdout
    assert state["modules"]["db_user"]["value"] not in proc.stdout
    assert "-pw = ********" in proc.stdout


def test_diff_of_the_project_version_file_edited_or_chmoded(tmp_path: Path) -> None:
    write_tree(tmp_path, {"dodo.py": "from facsimile.dodo import *  # noqa: F403\n",
                          "define/facsimile.json": {"name": "demo", "version": "2.1"},
                          "define/a.json": {}, "define/b.json": {}})
    doit(tmp_path, check=True)
    (tmp_path / "BUILD/a/etc/demo.version").chmod(0o600)
    (tmp_path / "BUILD/b/etc/demo.version").write_text("2.0\n")
    proc = facs(tmp_path, "plan", "--diff")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "cannot render" not in proc.stdout
    assert "  (the content of BUILD/a/etc/demo.version is the same)\n" in proc.stdout
    assert "-2.0\n+2.1\n" in proc.stdout
