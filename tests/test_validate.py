"""``validate``: checks run on an output's rendered bytes before they are moved into
BUILD/, cached like the output, reported by the build, the plan and the sync."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from conftest import DODO, doit, facs, snapshot, write_tree

from facsimile.build.validate import CheckError, run_checks
from facsimile.define.checks import Check, check_validate
from facsimile.errors import DefinitionError
from facsimile.schema import definition_schema

GOOD_JSON = '{"port": 80, "pw": "{{ state.pw }}"}\n'
BROKEN_JSON = '{"port": 80, "pw": "{{ state.pw }}",}\n'
FASTS = [pytest.param("1", id="fast"), pytest.param("0", id="readable")]


def make_root(base: Path, validate: dict, **templates: str) -> Path:
    """A root with one instance ``dev`` (one host, a folder destination), a generated
    password, the ``validate`` given and ``templates`` (path below tmpl/_ALL_/ ->
    text; ``etc/pw.txt`` always, it shows the password)."""
    write_tree(base, {
        "define/facsimile.json": {"name": "demo", "generate": {"pw": "password"},
                                  "validate": validate,
                                  "deploy": {"url": f"file://{base}/dest/{{host}}"}},
        "define/dev.json": {"targets": {"app": {"hosts": ["h1"]}}},
        "dodo.py": DODO,
        "tmpl/_ALL_/etc/pw.txt.j2": "{{ state.pw }}\n",
        **{f"tmpl/_ALL_/{rel}.j2": text for rel, text in templates.items()},
    })
    return base


def said(proc) -> str:
    return proc.stdout + proc.stderr


@pytest.mark.parametrize("fast", FASTS)
@pytest.mark.slow
def test_a_broken_json_fails_the_build_and_keeps_the_previous_output(tmp_path: Path,
                                                                      fast: str) -> None:
    env = {"FACSIMILE_FAST": fast}
    root = make_root(tmp_path, {"etc/*.json": "json"}, **{"etc/app.json": GOOD_JSON})
    doit(root, check=True, env=env)
    out = root / "BUILD/dev/etc/app.json"
    good = out.read_bytes()

    (root / "tmpl/_ALL_/etc/app.json.j2").write_text(BROKEN_JSON)
    for _ in range(2):  # the failure is not recorded as a build: the next run tries again
        proc = doit(root, env=env)
        assert proc.returncode == 1, said(proc)
        assert ("BUILD/dev/etc/app.json: check 'json' failed "
                "(template tmpl/_ALL_/etc/app.json.j2):\n    ") in said(proc)
        assert "Traceback" not in said(proc)
        assert out.read_bytes() == good  # byte for byte
        assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]

    plan = facs(root, "plan", "dev")
    assert plan.returncode == 1, said(plan)
    assert "BUILD/dev/etc/app.json: " in plan.stdout and "check failed: json" in plan.stdout
    assert "check 'json' failed" in plan.stdout

    (root / "tmpl/_ALL_/etc/app.json.j2").write_text(GOOD_JSON.replace("80", "81"))
    doit(root, check=True, env=env)
    assert b'"port": 81' in out.read_bytes()
    assert facs(root, "plan", "dev").returncode == 0


def test_a_failing_command_shows_its_first_lines_with_secrets_masked(tmp_path: Path) -> None:
    lines = "".join(f"line {i}\n" for i in range(3, 16))
    root = make_root(tmp_path, {"etc/app.conf": "cat {path}; exit 3"},
                     **{"etc/app.conf": "user = app\npassword = {{ state.pw }}\n" + lines})
    proc = doit(root)
    assert proc.returncode == 1, said(proc)
    password = (root / "BUILD/dev/etc/pw.txt").read_text().strip()
    text = said(proc)
    assert ("BUILD/dev/etc/app.conf: check 'cat {path}; exit 3' failed (exit status 3) "
            "(template tmpl/_ALL_/etc/app.conf.j2):\n    user = app\n"
            "    password = ********\n    line 3\n") in text
    assert "    line 10\n    ... (5 more lines)" in text and "line 11" not in text
    assert password not in text
    assert password not in (root / ".doit.db").read_text()
    assert not (root / "BUILD/dev/etc/app.conf").exists()  # never built: nothing in its place


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc")
@pytest.mark.slow
def test_a_check_past_its_timeout_is_killed(tmp_path: Path) -> None:
    marker = "60.0625"  # a sleep that no other process on the machine runs
    root = make_root(tmp_path, {"etc/app.json": {"check": f"sleep {marker}; : {{path}}",
                                                 "timeout": 1}},
                     **{"etc/app.json": GOOD_JSON})
    started = time.monotonic()
    proc = facs(root, "build")
    assert proc.returncode == 1, said(proc)
    assert time.monotonic() - started < 20
    assert f"check 'sleep {marker}; : {{path}}' timed out after 1 s (killed)" in said(proc)
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            left.append(pid)
    assert not left, "the check's process group was not killed"


@pytest.mark.parametrize("fast", FASTS)
@pytest.mark.slow
def test_a_no_op_runs_no_check_and_a_changed_check_runs_again(tmp_path: Path,
                                                               fast: str) -> None:
    env = {"FACSIMILE_FAST": fast}
    count = tmp_path / "count.txt"  # the command runs in the root
    root = make_root(tmp_path, {"etc/app.json": "echo one >> count.txt; : {path}"},
                     **{"etc/app.json": GOOD_JSON})
    doit(root, check=True, env=env)
    assert count.read_text() == "one\n"
    again = doit(root, check=True, env=env)
    assert "0 built" in again.stdout
    assert count.read_text() == "one\n"  # no check at a no-op

    # a glob that matches no output: nothing to check again
    write_tree(root, {"define/facsimile.json": {
        "name": "demo", "generate": {"pw": "password"},
        "validate": {"etc/app.json": "echo one >> count.txt; : {path}", "var/*": "json"},
        "deploy": {"url": f"file://{root}/dest/{{host}}"}}})
    assert "0 built" in doit(root, check=True, env=env).stdout
    assert count.read_text() == "one\n"

    # another check: it runs (the output's bytes are the same, its file is kept)
    mtime = (root / "BUILD/dev/etc/app.json").stat().st_mtime_ns
    write_tree(root, {"define/facsimile.json": {
        "name": "demo", "generate": {"pw": "password"},
        "validate": {"etc/app.json": ["json", "echo two >> count.txt; : {path}"]},
        "deploy": {"url": f"file://{root}/dest/{{host}}"}}})
    assert "1 built" in doit(root, check=True, env=env).stdout
    assert count.read_text() == "one\ntwo\n"
    assert (root / "BUILD/dev/etc/app.json").stat().st_mtime_ns == mtime
    assert "0 built" in doit(root, check=True, env=env).stdout
    assert count.read_text() == "one\ntwo\n"


@pytest.mark.slow
def test_sync_refuses_an_instance_with_a_failed_check(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"etc/*.json": "json"}, **{"etc/app.json": GOOD_JSON})
    facs(root, "sync", "dev", check=True)
    dest = root / "dest/h1"
    before = snapshot(dest)
    assert "etc/app.json" in before

    (root / "tmpl/_ALL_/etc/app.json.j2").write_text(BROKEN_JSON)
    (root / "tmpl/_ALL_/etc/pw.txt.j2").write_text("changed {{ state.pw }}\n")
    for how in (["facs", "sync", "dev"], ["doit", "sync:dev"],
                ["facs", "sync", "dev", "--no-build"]):
        proc = facs(root, *how[1:]) if how[0] == "facs" else doit(root, *how[1:])
        assert proc.returncode == 1, (how, said(proc))
        assert "BUILD/dev/etc/app.json: check 'json' failed" in said(proc), how
        assert snapshot(dest) == before, how  # nothing moved
    assert "nothing was synced" in said(proc)


def test_validate_is_inherited_and_null_removes_a_glob(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"etc/*.json": "json", "etc/*.conf": "ini"},
                     **{"etc/app.json": BROKEN_JSON, "etc/app.conf": "no section\n"})
    write_tree(root, {"define/dev.json": {"targets": {"app": {"hosts": ["h1"]}},
                                          "validate": {"etc/*.json": None}},
                      "define/prod.json": {}})
    proc = doit(root)
    assert proc.returncode == 1, said(proc)
    text = said(proc)
    assert "BUILD/dev/etc/app.conf: check 'ini' failed" in text
    # the same failure in another instance is counted, not printed again
    assert "BUILD/prod/etc/app.conf" not in text and "and 1 more output in 1 instance" in text
    assert "BUILD/prod/etc/app.json: check 'json' failed" in text
    assert "BUILD/dev/etc/app.json" not in text
    assert (root / "BUILD/dev/etc/app.json").read_text().endswith(",}\n")


def test_validate_errors_name_the_file_and_pointer(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"etc/*.json": "jsn"}, **{"etc/app.json": GOOD_JSON})
    proc = facs(root, "plan")
    assert proc.returncode == 1
    assert ("define/facsimile.json at /validate/etc~1*.json: unknown check 'jsn', "
            "did you mean 'json'?") in proc.stderr
    f = "define/x.json"
    for bad, pointer, words in [
        ({"a": "nginx -t"}, "/validate/a", "does not name the file as {path}"),
        ({"a": {"check": "json", "timeout": 0}}, "/validate/a/timeout", "above 0"),
        ({"a": {"check": "json", "timout": 5}}, "/validate/a/timout", "did you mean 'timeout'"),
        ({"a": ["json", 3]}, "/validate/a/1", "a check must be a string"),
        ({"../a": "json"}, "/validate/..~1a", "escape"),
        (["json"], "/validate", "must be an object"),
    ]:
        with pytest.raises(DefinitionError) as err:
            check_validate(bad, f, "/validate")
        assert err.value.pointer == pointer and words in err.value.message, bad
    check_validate({"a": None, "b": ["json", {"check": "visudo -cf {path}", "timeout": 9}]},
                   f, "/validate")


@pytest.mark.parametrize(("name", "good", "bad"), [
    ("json", b'{"a": 1}', b'{"a": 1,}'),
    ("yaml", b"a: 1\n---\nb: [2]\n", b"a: [1\n"),
    ("toml", b'a = 1\n[b]\nc = "d"\n', b"a = \n"),
    ("ini", b"[a]\nb = 1\n", b"[a]\nb = 1\nb = 2\n"),
])
def test_the_built_in_checks_parse_the_bytes(tmp_path: Path, name: str, good: bytes,
                                             bad: bytes) -> None:
    kw = {"shown": "BUILD/dev/x", "source": "template tmpl/x", "root": str(tmp_path),
          "mask": lambda t: t}
    run_checks((Check(name),), str(tmp_path / "x"), good, **kw)
    with pytest.raises(CheckError) as err:
        run_checks((Check(name),), str(tmp_path / "x"), bad, **kw)
    assert err.value.message.startswith(f"BUILD/dev/x: check {name!r} failed (template "
                                        "tmpl/x):\n    ")
    assert err.value.check == name


def test_the_yaml_check_without_pyyaml_says_how_to_get_it(tmp_path: Path,
                                                            monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)  # as if it were not installed
    with pytest.raises(CheckError) as err:
        run_checks((Check("yaml"),), str(tmp_path / "x"), b"a: 1\n", shown="BUILD/dev/x",
                   source="template tmpl/x", root=str(tmp_path), mask=lambda t: t)
    assert "BUILD/dev/x: check 'yaml' could not run" in err.value.message
    assert "pip install pyyaml" in err.value.message


def test_the_schema_describes_validate() -> None:
    schema = definition_schema()
    assert "{path}" in schema["properties"]["validate"]["description"]
    assert "check" in schema["$defs"]
