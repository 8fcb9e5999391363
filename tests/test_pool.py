"""A large batched run shares its instances with forked helper processes
(facsimile/pool.py): same bytes, same records, same errors as one process."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import DODO, doit, write_tree
from test_build import _records, ran

from facsimile.tasks.fast import pool

INSTANCES = 12
TEMPLATES = pool.PER_HELPER // INSTANCES + 1  # enough outputs for one helper
TWO = {"FACSIMILE_JOBS": "2"}  # two processes, whatever the machine's cores
ONE = {"FACSIMILE_JOBS": "1"}

PIDS = '''
import os

import facsimile


class Pids(facsimile.Project):
    def extra_context(self, inst):
        return {"pid": os.getpid()}
'''


def big_tree(pids: bool = False) -> dict[str, object]:
    """INSTANCES x TEMPLATES outputs, each reading its instance's value and a password;
    ``pids``: and pid.txt, the process that rendered the instance."""
    tree: dict[str, object] = {
        "dodo.py": DODO,
        "define/facsimile.json": {"name": "big", "shared": {"a": 1}},
        "define/modules.json": [{"name": "app"}],
    }
    for i in range(INSTANCES):
        tree[f"define/i{i:02}.json"] = {"n": i}
    for j in range(TEMPLATES):
        tree[f"tmpl/_ALL_/t{j}.conf.j2"] = (
            f"t{j} {{{{ instance.n }}}} {{{{ instance.shared.a }}}}"
            " {{ module.app.password }}\n")
    if pids:
        tree["define/facsimile.json"] = {"name": "big", "shared": {"a": 1},
                                         "class": "pids:Pids"}
        tree["pids.py"] = PIDS
        tree["tmpl/_ALL_/pid.txt.j2"] = "{{ pid }}\n"
    return tree


@pytest.mark.slow
def test_a_large_run_shares_its_instances_with_a_helper_process(tmp_path: Path) -> None:
    write_tree(tmp_path, big_tree(pids=True))
    proc = doit(tmp_path, check=True, env=TWO)
    total = INSTANCES * (TEMPLATES + 1)
    assert f"{total} built, 0 up to date" in proc.stdout
    assert len(ran(proc)) == total  # a line for every output, whichever process made it
    pids = {(tmp_path / f"BUILD/i{i:02}/pid.txt").read_text() for i in range(INSTANCES)}
    assert len(pids) == 2  # doit's process from the start, the helper from the end
    # what the helper made has its records in doit's database
    records = _records(tmp_path)
    assert len(records) == total


@pytest.mark.slow
def test_one_job_makes_everything_in_doits_process(tmp_path: Path) -> None:
    write_tree(tmp_path, big_tree(pids=True))
    doit(tmp_path, check=True, env=ONE)
    pids = {(tmp_path / f"BUILD/i{i:02}/pid.txt").read_text() for i in range(INSTANCES)}
    assert len(pids) == 1


@pytest.mark.slow
def test_a_helper_leaves_the_same_bytes_and_records_as_one_process(tmp_path: Path) -> None:
    shared, alone = tmp_path / "shared", tmp_path / "alone"
    write_tree(shared, big_tree())
    write_tree(alone, big_tree())
    doit(shared, check=True, env=TWO)
    shutil.copytree(shared / "state", alone / "state")  # same passwords and digest key
    doit(alone, check=True, env=ONE)
    assert _records(shared) == _records(alone)
    for f in (shared / "BUILD").rglob("*"):
        if f.is_file():
            assert f.read_bytes() == (alone / f.relative_to(shared)).read_bytes()
    # and the next run has nothing to do
    proc = doit(shared, check=True, env=TWO)
    assert not ran(proc)
    assert f"0 built, {INSTANCES * TEMPLATES} up to date" in proc.stdout


@pytest.mark.slow
def test_a_failure_in_an_instance_the_helper_took(tmp_path: Path) -> None:
    """The last instance goes to the helper: its error is doit's failure, one line
    with template and line, no traceback; the other outputs are made and kept."""
    write_tree(tmp_path, big_tree())
    last = f"i{INSTANCES - 1:02}"
    write_tree(tmp_path, {f"tmpl/{last}/t1.conf.j2": "ok\n{{ instance.nope }}\n"})
    proc = doit(tmp_path, env=TWO)
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert f"build:{last}/t1.conf: tmpl/{last}/t1.conf.j2:2" in out
    assert "instance.nope is undefined" in out
    assert "Traceback" not in out
    assert not (tmp_path / f"BUILD/{last}/t1.conf").exists()
    assert (tmp_path / f"BUILD/{last}/t2.conf").exists()
    db = json.loads((tmp_path / ".doit.db").read_text())
    assert f"build:{last}/t1.conf" not in db and f"build:{last}/t2.conf" in db
    # fixed: only that output is made
    write_tree(tmp_path, {f"tmpl/{last}/t1.conf.j2": "ok\n"})
    proc = doit(tmp_path, check=True, env=TWO)
    assert ran(proc) == {f"{last}/t1.conf"}


def test_bad_jobs_value_is_a_clear_error(tmp_path: Path) -> None:
    write_tree(tmp_path, big_tree())
    proc = doit(tmp_path, env={"FACSIMILE_JOBS": "two"})
    assert proc.returncode == 1
    assert "FACSIMILE_JOBS='two': give a number of processes, 1 or more" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_doit_n1_keeps_the_records(tmp_path: Path) -> None:
    """``-n 1`` runs tasks in one child process of doit's: one task per output, so
    their records come back to the database (a batch's would be lost there)."""
    write_tree(tmp_path, big_tree())
    doit(tmp_path, "-n", "1", check=True)
    proc = doit(tmp_path, check=True)
    assert not ran(proc)
    assert f"0 built, {INSTANCES * TEMPLATES} up to date" in proc.stdout


DIES = '''
import os

import facsimile

MAIN = os.getpid()  # doit's process: the project is loaded before the fork


class Dies(facsimile.Project):
    def extra_context(self, inst):
        if os.getpid() != MAIN and inst.name == "i11":
            os._exit(3)  # a helper dies while making i11
        return {}
'''


@pytest.mark.slow
def test_when_a_helper_dies_doits_process_makes_what_it_did_not_send(tmp_path: Path) -> None:
    write_tree(tmp_path, big_tree())
    write_tree(tmp_path, {"define/facsimile.json": {"name": "big", "shared": {"a": 1},
                                                    "class": "dies:Dies"},
                          "dies.py": DIES})
    proc = doit(tmp_path, check=True, env=TWO)
    total = INSTANCES * TEMPLATES
    assert f"{total} built, 0 up to date" in proc.stdout
    assert len(_records(tmp_path)) == total
    assert not ran(doit(tmp_path, check=True, env=ONE))


def _processes_in(folder: Path) -> list[int]:
    """Processes whose working folder is ``folder`` (from /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if Path(os.readlink(d / "cwd")) == folder:
                    out.append(int(d.name))
            except OSError:
                pass
    return out


def test_a_run_that_stops_early_stops_its_helpers(tmp_path: Path) -> None:
    """A run naming instances stops at the first failed one; the helper, busy from
    the other end, is stopped and reaped with it."""
    write_tree(tmp_path, big_tree())
    write_tree(tmp_path, {"tmpl/i00/t1.conf.j2": "{{ instance.nope }}\n"})
    names = [f"build:i{i:02}" for i in range(INSTANCES)]
    proc = doit(tmp_path, *names, env=TWO)
    assert proc.returncode == 1
    assert "build:i00/t1.conf: tmpl/i00/t1.conf.j2:1" in proc.stdout + proc.stderr
    assert _processes_in(tmp_path.resolve()) == []
    # the next run makes the rest; what the helper made is not written again
    write_tree(tmp_path, {"tmpl/i00/t1.conf.j2": "fixed\n"})
    files = [p for p in (tmp_path / "BUILD").rglob("*") if p.is_file()]
    # a helper stopped mid-write removes its temporary file (but for a signal in the
    # few instructions between making it and guarding it: then the next run does)
    before = {p: p.stat().st_mtime_ns for p in files if not p.name.endswith(".tmp")}
    doit(tmp_path, check=True, env=TWO)
    assert all(p.stat().st_mtime_ns == m for p, m in before.items())
    assert not list((tmp_path / "BUILD").rglob("*.tmp"))
    assert len(_records(tmp_path)) == INSTANCES * TEMPLATES


@pytest.mark.slow
def test_a_run_that_stops_early_keeps_what_its_helper_sent(tmp_path: Path) -> None:
    """doit's process is slow on i00 (a second), whose first output then fails; the
    helper makes and sends i11 to i01. doit stops at i00's task without waiting for
    them, but their records are saved with the database: the next run has only the
    failed output to make."""
    write_tree(tmp_path, big_tree())
    write_tree(tmp_path, {"tmpl/i00/t0.conf.j2":
                          "{% for i in range(30000000) %}{% endfor %}{{ instance.nope }}\n"})
    names = [f"build:i{i:02}" for i in range(INSTANCES)]
    proc = doit(tmp_path, *names, env=TWO)
    assert proc.returncode == 1
    assert "build:i00/t0.conf: tmpl/i00/t0.conf.j2:1" in proc.stdout + proc.stderr
    assert len(_records(tmp_path)) == INSTANCES * TEMPLATES - 1
    write_tree(tmp_path, {"tmpl/i00/t0.conf.j2": "fixed\n"})
    assert ran(doit(tmp_path, check=True, env=TWO)) == {"i00/t0.conf"}
