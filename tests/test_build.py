"""The incremental build through real doit runs: real files, real mtimes."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from conftest import DODO, doit, facs, mtimes, write_tree

TREE = {
    "dodo.py": DODO,
    "define/facsimile.json": {
        "name": "shop",
        "app": {"port": 8080, "workers": 2},
        "db": {"host": "localhost"},
        "unused": {"x": 1},
        "generate": {"secret_key": "token:16", "node": "id"},
    },
    "define/modules.json": [{"name": "app"}, {"name": "db_user", "username": "shop"}],
    "define/regions/ch1.json": {"region": "ch1"},
    "define/dev.json": {"app": {"port": 8000}},
    "define/prod.json": {"inherit": ["regions/ch1"], "db": {"host": "db.prod"}},
    "define/prod.ch1.json": {"db": {"host": "db.ch1"}},
    "tmpl/_lib/header.inc": "# {{ project.name }} {{ instance.name }}\n",
    "tmpl/_ALL_/etc/app.ini.j2": (
        '{% include "header.inc" -%}\nport = {{ instance.app.port }}\n'
        "workers = {{ instance.app.workers }}\n"
    ),
    "tmpl/_ALL_/etc/db.ini.j2": (
        "host = {{ instance.db.host }}\nuser = {{ module.db_user.username }}\n"
        "password = {{ module.db_user.password }}\n"
    ),
    "tmpl/_ALL_/etc/secret.conf.j2": "key = {{ state.secret_key }}\nnode = {{ state.node }}\n",
    "tmpl/_ALL_/etc/static.txt": "no values here\n",
    "extra/_ALL_/share/logo.txt": "LOGO\n",
}


@pytest.fixture
def built(tmp_path: Path) -> Path:
    write_tree(tmp_path, TREE)
    os.chmod(tmp_path / "tmpl/_ALL_/etc/db.ini.j2", 0o600)
    doit(tmp_path, check=True)
    return tmp_path


def changed(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {k for k in after if before.get(k) != after[k]} | (set(before) - set(after))


def ran(proc: subprocess.CompletedProcess) -> set[str]:
    """Output tasks doit ran (``.  build:<instance>/<path>`` lines): a rebuild that
    wrote the same bytes keeps the mtime, so this is what shows over-rebuilding."""
    return {line[3:].strip().removeprefix("build:") for line in proc.stdout.splitlines()
            if line.startswith(".  build:") and "/" in line}


def bump(path: Path) -> None:
    """Make sure a following write gets a new mtime even on coarse clocks."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 10_000_000))


def edit_json(path: Path, update: dict) -> None:
    data = json.loads(path.read_text())
    for key, value in update.items():
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    path.write_text(json.dumps(data))


def test_first_build_makes_every_output(built: Path) -> None:
    files = set(mtimes(built / "BUILD"))
    for inst in ("dev", "prod", "prod.ch1"):
        assert {f"{inst}/etc/app.ini", f"{inst}/etc/db.ini", f"{inst}/etc/secret.conf",
                f"{inst}/etc/static.txt", f"{inst}/share/logo.txt"} <= files
    assert (built / "BUILD/dev/etc/app.ini").read_text() == "# shop dev\nport = 8000\nworkers = 2\n"
    assert (built / "BUILD/prod.ch1/etc/db.ini").read_text().startswith("host = db.ch1\n")
    assert (built / "BUILD/dev/share/logo.txt").read_text() == "LOGO\n"
    # the mode of the template is kept: the secret file stays 0600
    assert stat.S_IMODE((built / "BUILD/dev/etc/db.ini").stat().st_mode) == 0o600
    assert stat.S_IMODE((built / "BUILD/dev/etc/app.ini").stat().st_mode) != 0o600


def test_noop_rebuilds_nothing(built: Path) -> None:
    before = mtimes(built / "BUILD")
    proc = doit(built, check=True)
    assert changed(before, mtimes(built / "BUILD")) == set()
    assert ".  build:" not in proc.stdout
    assert "0 built" in proc.stdout


def test_changed_value_rebuilds_exactly_its_readers(built: Path) -> None:
    before = mtimes(built / "BUILD")
    bump(built / "BUILD/prod/etc/db.ini")
    bump(built / "BUILD/prod.ch1/etc/db.ini")
    before = mtimes(built / "BUILD")
    edit_json(built / "define/prod.json", {"db.host": "db2.prod"})
    proc = doit(built, check=True)
    # prod reads it; prod.ch1 overrides db.host, so its output does not change
    assert changed(before, mtimes(built / "BUILD")) == {"prod/etc/db.ini"}
    assert ran(proc) == {"prod/etc/db.ini"}
    assert (built / "BUILD/prod/etc/db.ini").read_text().startswith("host = db2.prod\n")


def test_unread_value_rebuilds_nothing(built: Path) -> None:
    before = mtimes(built / "BUILD")
    edit_json(built / "define/facsimile.json", {"unused.x": 2})
    proc = doit(built, check=True)
    assert changed(before, mtimes(built / "BUILD")) == set()
    assert ".  build:" not in proc.stdout


def test_changed_include_rebuilds_its_includers(built: Path) -> None:
    for f in (built / "BUILD").rglob("app.ini"):
        bump(f)
    before = mtimes(built / "BUILD")
    (built / "tmpl/_lib/header.inc").write_text("## {{ instance.name }}\n")
    proc = doit(built, check=True)
    includers = {"dev/etc/app.ini", "prod/etc/app.ini", "prod.ch1/etc/app.ini"}
    assert changed(before, mtimes(built / "BUILD")) == includers
    assert ran(proc) == includers


@pytest.mark.slow
def test_rotated_state_rebuilds_exactly_its_users(built: Path) -> None:
    for f in (built / "BUILD").rglob("db.ini"):
        bump(f)
    assert not ran(doit(built, check=True))  # a no-op: the state digests are cached
    before = mtimes(built / "BUILD")
    old = (built / "BUILD/prod/etc/db.ini").read_text()
    facs(built, "state", "rotate", "prod", "db_user", check=True)
    proc = doit(built, check=True)
    # prod and prod.ch1 share the family's state; dev is another family
    users = {"prod/etc/db.ini", "prod.ch1/etc/db.ini"}
    assert changed(before, mtimes(built / "BUILD")) == users
    assert ran(proc) == users
    assert (built / "BUILD/prod/etc/db.ini").read_text() != old


def test_a_no_op_reads_no_state_file(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check takes each family's state digest from ``.facsimile/state.json``
    while the state file's inode, size, mtime and ctime are unchanged."""
    from facsimile.build import Build
    from facsimile.project import Project
    from facsimile.state.files import Local

    doit(built, check=True)  # the no-op that fills the cache
    read: list[Path] = []
    real = Local.read
    monkeypatch.setattr(Local, "read",
                        lambda self, family: read.append(self.path(family)) or real(self, family))

    def check() -> set[str]:
        b = Build(Project.load(built))
        stale = {o.task for i in b.project.instances.values()
                 for o in b.outputs(i).values() if b.check(o)}
        b.save_caches()
        return stale

    assert check() == set() and read == []
    # a value of the same length, the mtime put back: the ctime still tells
    path = built / "state/prod/state.json"
    st = path.stat()
    old = json.loads(path.read_text())["modules"]["db_user"]["value"]
    path.write_text(path.read_text().replace(old, old[::-1]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert check() == {"build:prod/etc/db.ini", "build:prod.ch1/etc/db.ini"}
    assert read == [path]


def test_deleted_template_removes_its_output(built: Path) -> None:
    (built / "extra/_ALL_/share/logo.txt").unlink()
    (built / "tmpl/_ALL_/etc/static.txt").unlink()
    doit(built, check=True)
    for inst in ("dev", "prod", "prod.ch1"):
        assert not (built / f"BUILD/{inst}/etc/static.txt").exists()
        assert not (built / f"BUILD/{inst}/share").exists()  # the emptied folder too
        assert (built / f"BUILD/{inst}/etc/app.ini").exists()


def test_deleted_instance_removes_its_tree(built: Path) -> None:
    (built / "define/dev.json").unlink()
    doit(built, check=True)
    assert not (built / "BUILD/dev").exists()
    assert (built / "BUILD/prod/etc/app.ini").exists()


def test_subinstance_template_overrides_parent(built: Path) -> None:
    write_tree(built, {
        "tmpl/prod/etc/app.ini.j2": "prod layer\n",
        "tmpl/prod.ch1/etc/app.ini": "ch1 layer {{ instance.name }}\n",
    })
    doit(built, check=True)
    assert (built / "BUILD/prod/etc/app.ini").read_text() == "prod layer\n"
    assert (built / "BUILD/prod.ch1/etc/app.ini").read_text() == "ch1 layer prod.ch1\n"
    assert (built / "BUILD/dev/etc/app.ini").read_text().startswith("# shop dev")


def test_unchanged_bytes_are_not_rewritten(built: Path) -> None:
    before = mtimes(built / "BUILD")
    # the template changes, its output does not: the task runs, the file stays
    path = built / "tmpl/_ALL_/etc/app.ini.j2"
    path.write_text(path.read_text() + "{# a comment #}")
    proc = doit(built, check=True)
    assert ".  build:dev/etc/app.ini" in proc.stdout
    assert changed(before, mtimes(built / "BUILD")) == set()


@pytest.mark.slow
def test_parallel_process_build_makes_the_same_bytes(tmp_path: Path) -> None:
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    for d in (serial, parallel):
        write_tree(d, TREE)
    doit(serial, check=True)
    (parallel / "state").mkdir()
    for f in (serial / "state").rglob("state.json"):  # same secrets in both
        dest = parallel / f.relative_to(serial)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(f.read_bytes())
    doit(parallel, "-n", "2", "-P", "process", check=True)
    a = {k: (serial / "BUILD" / k).read_bytes() for k in mtimes(serial / "BUILD")}
    b = {k: (parallel / "BUILD" / k).read_bytes() for k in mtimes(parallel / "BUILD")}
    assert a == b and len(a) == 15
    assert "0 built" in doit(parallel, check=True).stdout


def _records(root: Path) -> dict[str, dict]:
    """doit's saved records of the output tasks, without the output's own stat."""
    db = json.loads((root / ".doit.db").read_text())
    out = {}
    for name, entry in db.items():
        if "/" in name:
            values = dict(entry["_values_:"])
            values["o"] = values["o"][1:]  # size and digest; the mtime differs
            out[name] = {**entry, "_values_:": values}
    return out


@pytest.mark.slow
def test_batched_run_leaves_the_records_of_one_task_per_output(tmp_path: Path) -> None:
    """A plain run makes every stale output in one task (build:_stale); a run naming
    instances makes each one's in its task; ``-n 2`` runs one task per output. All
    leave the same records in doit's database, so later runs, ``doit info`` and
    ``facs plan`` cannot tell them apart."""
    batched, grouped, per_task = tmp_path / "batched", tmp_path / "grouped", tmp_path / "per_task"
    for d in (batched, grouped, per_task):
        write_tree(d, TREE)
    report = json.loads(doit(batched, "--reporter", "json", check=True).stdout)
    assert {t["name"] for t in report["tasks"]} == {"build", "build:_stale", "build:_removed"}
    for d in (grouped, per_task):  # same secrets and digest key in all
        shutil.copytree(batched / "state", d / "state")
    names = ["build:dev", "build:prod", "build:prod.ch1"]
    report = json.loads(doit(grouped, "--reporter", "json", *names, check=True).stdout)
    assert {t["name"] for t in report["tasks"]} == set(names)
    proc = doit(per_task, "-n", "2", "-P", "process", check=True)
    assert len(ran(proc)) == 15
    assert len(_records(batched)) == 15
    assert _records(batched) == _records(grouped) == _records(per_task)
    out = doit(batched, "list", "--all", "--status", check=True).stdout
    assert not [line for line in out.splitlines() if line.startswith("R build:") and "/" in line]


@pytest.mark.slow
def test_batched_failure_keeps_the_other_outputs_of_the_instance(built: Path) -> None:
    """One output failing in a batched run: the instance's other stale outputs are
    made and recorded; only the failed one is retried next time."""
    write_tree(built, {"tmpl/_ALL_/etc/static.txt": "broken {{ instance.nope }}\n"})
    edit_json(built / "define/dev.json", {"app.port": 8002})
    proc = doit(built, "build:dev")
    assert proc.returncode != 0
    assert "build:dev/etc/static.txt: tmpl/_ALL_/etc/static.txt:1" in proc.stdout + proc.stderr
    # a failed output gets no line of an output made, and is counted as failed
    assert ran(proc) == {"dev/etc/app.ini"} and "1 built, 1 failed," in proc.stdout
    assert "port = 8002" in (built / "BUILD/dev/etc/app.ini").read_text()
    assert (built / "BUILD/dev/etc/static.txt").read_text() == "no values here\n"
    proc = doit(built, "build:dev")
    assert proc.returncode != 0 and ran(proc) == set() and "0 built, 1 failed" in proc.stdout
    write_tree(built, {"tmpl/_ALL_/etc/static.txt": "fixed\n"})
    proc = doit(built, "build:dev", check=True)
    assert ran(proc) == {"dev/etc/static.txt"} and "1 built, 4 up to date" in proc.stdout


@pytest.mark.slow
def test_a_batch_gives_the_other_records_the_current_context(built: Path) -> None:
    """An unread value moves every context digest; a run that rebuilds something
    of the instance also moves the digest of the outputs it found up to date, so
    the next run need not compare their values one by one. What they read is
    still checked: a later change of it rebuilds them."""
    edit_json(built / "define/dev.json", {"unread_here": 1})
    write_tree(built, {"tmpl/_ALL_/etc/static.txt": "still no values\n"})
    proc = doit(built, "build:dev", check=True)
    assert ran(proc) == {"dev/etc/static.txt"}
    db = json.loads((built / ".doit.db").read_text())
    digests = {db[f"build:dev/{p}"]["_values_:"].get("c") for p in (
        "etc/app.ini", "etc/db.ini", "etc/secret.conf", "etc/static.txt")}
    assert len(digests) == 1
    before = mtimes(built / "BUILD")
    assert ran(doit(built, "build:dev", check=True)) == set()
    edit_json(built / "define/dev.json", {"app.workers": 9})
    proc = doit(built, "build:dev", check=True)
    assert ran(proc) == {"dev/etc/app.ini"}
    assert changed(before, mtimes(built / "BUILD")) == {"dev/etc/app.ini"}


@pytest.mark.slow
def test_a_reader_that_goes_away_does_not_stop_the_build(tmp_path: Path) -> None:
    """``doit | head -1``: the output is cut short, the build is not (and no traceback)."""
    import sys

    write_tree(tmp_path, TREE)
    write_tree(tmp_path, {f"extra/_ALL_/many/f{i}.txt": "x\n" for i in range(1500)})
    proc = subprocess.Popen([sys.executable, "-m", "doit"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().startswith(b".  ")
    proc.stdout.close()  # far more than a pipe holds is still to come
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err and b"BrokenPipe" not in err
    assert len(mtimes(tmp_path / "BUILD")) == 3 * (5 + 1500)
    assert "0 built, 4515 up to date" in doit(tmp_path, check=True).stdout


@pytest.mark.parametrize("how", [(), ("-n", "2", "-P", "process")])
@pytest.mark.slow
def test_a_template_that_becomes_a_folder_and_back(built: Path, how: tuple) -> None:
    """``etc/app.ini`` becomes ``etc/app.ini/main`` and back: the old output is in
    the new one's way, and is cleared (batched, and one task per output)."""
    (built / "tmpl/_ALL_/etc/app.ini.j2").unlink()
    write_tree(built, {"tmpl/_ALL_/etc/app.ini/main.j2": "port = {{ instance.app.port }}\n"})
    proc = doit(built, *how)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (built / "BUILD/dev/etc/app.ini/main").read_text() == "port = 8000\n"
    (built / "tmpl/_ALL_/etc/app.ini/main.j2").unlink()
    write_tree(built, {"tmpl/_ALL_/etc/app.ini.j2": "port = {{ instance.app.port }}\n"})
    proc = doit(built, *how)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (built / "BUILD/dev/etc/app.ini").read_text() == "port = 8000\n"
    assert "0 built" in doit(built, check=True).stdout


def test_an_output_that_another_needs_as_a_folder_is_an_error(built: Path) -> None:
    write_tree(built, {"tmpl/_ALL_/etc/app.ini/main.j2": "x\n"})
    proc = doit(built, "build:dev")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    assert ("tmpl/_ALL_/etc/app.ini.j2 makes BUILD/dev/etc/app.ini, which "
            "tmpl/_ALL_/etc/app.ini/main.j2 needs as a folder") in out


def test_attribute_lookups_on_context_values_behave_as_in_jinja2(built: Path) -> None:
    """``a.b`` is the key ``b`` unless ``b`` names a method of the mapping (``items``,
    ``get``...): Jinja2's rule, kept by facsimile's faster lookup; the key is read."""
    edit_json(built / "define/dev.json", {"app.get": "a key", "app.items": "another"})
    write_tree(built, {"tmpl/dev/etc/keys.txt.j2": (
        "{{ instance.app.port }} {{ instance.app['get'] }} {{ instance.app.get('port') }}\n"
        "{% for k, v in instance.app.items() if k == 'workers' %}{{ k }}={{ v }}{% endfor %}\n"
        "{{ instance.app.nope is defined }}\n")})
    doit(built, "build:dev", check=True)
    assert (built / "BUILD/dev/etc/keys.txt").read_text() == (
        "8000 a key 8000\nworkers=2\nFalse\n")
    edit_json(built / "define/dev.json", {"app.port": 8003})
    proc = doit(built, "build:dev", check=True)
    assert ran(proc) == {"dev/etc/app.ini", "dev/etc/keys.txt"}


@pytest.mark.slow
def test_a_run_hands_doit_no_task_for_an_instance_with_nothing_to_do(built: Path) -> None:
    """``doit`` on a no-op: no task per instance either (still counted); in a plain
    run, stale outputs are made by build:_stale; a named instance gets its task."""
    report = json.loads(doit(built, "--reporter", "json", check=True).stdout)
    assert {t["name"] for t in report["tasks"]} <= {"build", "build:_removed"}
    assert "0 built, 15 up to date" in doit(built, check=True).stdout
    edit_json(built / "define/dev.json", {"app.port": 8004})
    report = json.loads(doit(built, "--reporter", "json", check=True).stdout)
    assert {t["name"] for t in report["tasks"]} == {"build", "build:_removed", "build:_stale"}
    edit_json(built / "define/dev.json", {"app.port": 8005})
    proc = doit(built, "build:dev", check=True)
    assert ran(proc) == {"dev/etc/app.ini"} and "1 built, 4 up to date" in proc.stdout
    edit_json(built / "define/dev.json", {"app.port": 8006})
    proc = doit(built, check=True)
    assert ran(proc) == {"dev/etc/app.ini"} and "1 built, 14 up to date" in proc.stdout
    assert "0 built, 5 up to date" in doit(built, "build:prod", check=True).stdout
    listed = doit(built, "list", "--all", check=True).stdout
    assert "build:prod " in listed and "sync:prod " in listed


def test_no_secret_outside_build_and_state(built: Path) -> None:
    state = json.loads((built / "state/prod/state.json").read_text())
    secrets = [e["value"] for sec in ("modules", "generate") for e in state[sec].values()
               if isinstance(e["value"], str)]
    assert secrets
    facs(built, "plan", "--diff")
    facs(built, "show", "prod")
    for path in built.rglob("*"):
        rel = path.relative_to(built).as_posix()
        if not path.is_file() or rel.startswith(("BUILD/", "state/")):
            continue
        data = path.read_bytes()
        for s in secrets:
            assert s.encode() not in data, f"a secret is in {rel}"


def test_stored_digests_do_not_confirm_a_guessed_secret(tmp_path: Path) -> None:
    import hashlib

    write_tree(tmp_path, {**TREE, "define/dev.json": {"generate": {"pin": "password:8"}},
                          "tmpl/dev/etc/pin.conf.j2": "pin = {{ state.pin }}\n"})
    doit(tmp_path, check=True)
    key = tmp_path / "state/.digest-key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    pin = json.loads((tmp_path / "state/dev/state.json").read_text())[
        "generate"]["pin"]["value"]
    # an attacker holding .doit.db and the caches tries candidates (8 letters and
    # digits is within reach): the right guess, digested as facsimile would without
    # a key, must not match anything stored
    stored = (tmp_path / ".doit.db").read_text() + "".join(
        p.read_text() for p in (tmp_path / ".facsimile").glob("*.json"))
    for guess in (b"s" + pin.encode(), f"pin = {pin}\n".encode()):
        for size in (6, 8):
            assert hashlib.blake2b(guess, digest_size=size).hexdigest() not in stored
    # the key is kept: a second run rebuilds nothing
    assert "0 built" in doit(tmp_path, check=True).stdout
    # a lost key makes every output be checked again, and nothing is rewritten
    key.unlink()
    before = mtimes(tmp_path / "BUILD")
    doit(tmp_path, check=True)
    assert mtimes(tmp_path / "BUILD") == before
    assert key.exists() and facs(tmp_path, "plan").returncode == 0


def test_failed_render_keeps_previous_output_and_names_the_line(built: Path) -> None:
    old = (built / "BUILD/dev/etc/app.ini").read_bytes()
    write_tree(built, {"tmpl/_ALL_/etc/app.ini.j2": "port = {{ instance.app.port }}\n"
                                                    "x = {{ instance.app.nope }}\n"})
    proc = doit(built)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "tmpl/_ALL_/etc/app.ini.j2:2" in out
    assert "instance.app.nope is undefined" in out
    assert "Traceback" not in out
    assert (built / "BUILD/dev/etc/app.ini").read_bytes() == old
    # the plan does not call the kept output new
    plan = facs(built, "plan", "dev").stdout
    assert ("BUILD/dev/etc/app.ini: no record of its last build (it failed, or doit forget)"
            in plan)


def test_template_and_extra_for_one_output_is_an_error(built: Path) -> None:
    write_tree(built, {"extra/_ALL_/etc/app.ini": "verbatim\n"})
    proc = facs(built, "build")
    assert proc.returncode != 0
    assert "tmpl/_ALL_/etc/app.ini.j2" in proc.stderr and "extra/_ALL_/etc/app.ini" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_facs_build_builds_only_the_named_instance(tmp_path: Path) -> None:
    write_tree(tmp_path, TREE)
    facs(tmp_path, "build", "dev", check=True)
    assert (tmp_path / "BUILD/dev/etc/app.ini").exists()
    assert not (tmp_path / "BUILD/prod").exists()


def test_one_output_builds_alone(tmp_path: Path) -> None:
    write_tree(tmp_path, TREE)
    doit(tmp_path, "build:prod/etc/app.ini", check=True)
    assert set(mtimes(tmp_path / "BUILD")) == {"prod/etc/app.ini"}


@pytest.mark.slow
def test_doit_clean_and_forget_work(built: Path) -> None:
    doit(built, "forget", "build:dev/etc/app.ini", check=True)
    proc = doit(built, check=True)
    assert ".  build:dev/etc/app.ini" in proc.stdout
    assert proc.stdout.count(".  build:") == 1
    doit(built, "clean", "build:dev/etc/app.ini", check=True)
    assert not (built / "BUILD/dev/etc/app.ini").exists()
    doit(built, check=True)
    assert (built / "BUILD/dev/etc/app.ini").exists()
    # cleaning everything leaves no file, and no empty folder, in BUILD/
    doit(built, "clean", check=True)
    assert not [p for p in (built / "BUILD").rglob("*")]


@pytest.mark.slow
def test_runs_skip_up_to_date_outputs_and_other_commands_see_every_task(built: Path) -> None:
    outputs = set(mtimes(built / "BUILD"))  # 5 per instance, 3 instances
    # a run of group tasks hands doit only what is stale, and still counts the rest
    assert "facsimile: 0 built, 15 up to date" in doit(built, check=True).stdout
    report = json.loads(doit(built, "--reporter", "json", check=True).stdout)
    assert not [t["name"] for t in report["tasks"] if "/" in t["name"]]
    assert "facsimile: 0 built, 5 up to date" in doit(built, "build:prod", check=True).stdout
    edit_json(built / "define/dev.json", {"app.port": 8001})
    proc = doit(built, "build:dev", check=True)
    assert ran(proc) == {"dev/etc/app.ini"} and "1 built, 4 up to date" in proc.stdout
    # one up-to-date output by name: it exists as a task, and is up to date
    proc = doit(built, "build:dev/etc/db.ini", check=True)
    assert "0 built, 1 up to date" in proc.stdout
    # --always-execute runs every output task
    assert ran(doit(built, "-a", "build:dev", check=True)) == {
        p for p in outputs if p.startswith("dev/")}
    # list, info, forget, clean see every output task
    listed = {line.split()[0].removeprefix("build:") for line in
              doit(built, "list", "--all", check=True).stdout.splitlines()}
    assert outputs <= listed
    assert "up-to-date" in doit(built, "info", "build:prod/etc/db.ini", check=True).stdout


def test_the_example_builds(tmp_path: Path) -> None:
    """The repository's own define/ tmpl/ extra/ build and are a no-op the second time."""
    from conftest import REPO

    for sub in ("define", "tmpl", "extra", "bench"):
        for p in (REPO / sub).rglob("*"):
            if p.is_file():
                dest = tmp_path / p.relative_to(REPO)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(p.read_bytes())
                os.chmod(dest, p.stat().st_mode)
    (tmp_path / "dodo.py").write_text(DODO)
    doit(tmp_path, check=True)
    assert (tmp_path / "BUILD/prod.ch1/etc/app/locale.ini").exists()
    # the app module's templates come from its own repository, at tag v1.0
    assert "version v1.0" in (tmp_path / "BUILD/dev/etc/app/features.ini").read_text()
    assert (tmp_path / "BUILD/prod/etc/systemd/system/workerd.1.service").exists()
    assert (tmp_path / "BUILD/prod/hosts/app2.prod/node.conf").exists()
    assert "0 built" in doit(tmp_path, check=True).stdout


def test_reverting_a_value_rebuilds_after_unread_changes(built: Path) -> None:
    """Contexts remembered as verified never hide a real change (A -> B -> A)."""
    app = built / "BUILD/dev/etc/app.ini"
    edit_json(built / "define/facsimile.json", {"unused.x": 3})  # unread: nothing rebuilt
    assert "0 built" in doit(built, check=True).stdout
    edit_json(built / "define/dev.json", {"app.port": 8001})
    doit(built, check=True)
    assert "port = 8001" in app.read_text()
    edit_json(built / "define/facsimile.json", {"unused.x": 4})
    assert "0 built" in doit(built, check=True).stdout
    edit_json(built / "define/dev.json", {"app.port": 8000})  # back to the first value
    proc = doit(built, check=True)
    assert ".  build:dev/etc/app.ini" in proc.stdout
    assert "port = 8000" in app.read_text()
    edit_json(built / "define/facsimile.json", {"unused.x": 1})  # the very first context
    assert "0 built" in doit(built, check=True).stdout
    assert "port = 8000" in app.read_text()


@pytest.mark.parametrize(("text", "expected"), [
    ("a\n{% if %}\n", "tmpl/_ALL_/etc/bad.conf.j2:2: syntax error"),
    ('{% include "nope.inc" %}\n',
     "template 'nope.inc' not found; searched in: tmpl/dev, tmpl/_ALL_, tmpl/_lib"),
    ("{{ module.app.password | int }}{{ 1 / 0 }}\n", "ZeroDivisionError"),
])
def test_template_errors_name_the_file_and_line(built: Path, text: str, expected: str) -> None:
    write_tree(built, {"tmpl/_ALL_/etc/bad.conf.j2": text})
    proc = doit(built, "build:dev/etc/bad.conf")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert expected in out
    assert "Traceback" not in out


def test_extends_and_import_are_dependencies(built: Path) -> None:
    write_tree(built, {
        "tmpl/_lib/base.j2": "[{% block body %}{% endblock %}]\n",
        "tmpl/_lib/m.j2": "{% macro kv(k, v) %}{{ k }}={{ v }}{% endmacro %}",
        "tmpl/_ALL_/etc/child.conf.j2": '{% extends "base.j2" %}{% block body %}'
                                        '{% import "m.j2" as m %}{{ m.kv("port", '
                                        "instance.app.port) }}{% endblock %}",
    })
    doit(built, check=True)
    assert (built / "BUILD/dev/etc/child.conf").read_text() == "[port=8000]\n"
    for name in ("base.j2", "m.j2"):
        before = mtimes(built / "BUILD")
        path = built / "tmpl/_lib" / name
        path.write_text(path.read_text().replace("[", "<").replace("=", ":"))
        doit(built, check=True)
        after = mtimes(built / "BUILD")
        assert {k for k in after if after[k] != before[k]} == {
            f"{i}/etc/child.conf" for i in ("dev", "prod", "prod.ch1")}
    assert (built / "BUILD/dev/etc/child.conf").read_text() == "<port:8000]\n"


def test_dot_files_are_outputs_and_editor_leftovers_are_not(built: Path) -> None:
    write_tree(built, {
        "extra/_ALL_/shop/.htaccess": "Deny from all\n",
        "tmpl/_ALL_/.env.j2": "PORT={{ instance.app.port }}\n",
        "tmpl/_ALL_/etc/.app.ini.j2.swp": "swap",
        "tmpl/_ALL_/etc/app.ini.j2~": "backup",
        "tmpl/_ALL_/.git/config": "[core]\n",
    })
    proc = doit(built, check=True)
    assert (built / "BUILD/dev/shop/.htaccess").read_text() == "Deny from all\n"
    assert (built / "BUILD/dev/.env").read_text() == "PORT=8000\n"
    assert ran(proc) == {f"{i}/{p}" for i in ("dev", "prod", "prod.ch1")
                         for p in ("shop/.htaccess", ".env")}
    leftovers = [p for p in mtimes(built / "BUILD") if p.endswith(("~", ".swp"))
                 or "/.git/" in p]
    assert leftovers == []
