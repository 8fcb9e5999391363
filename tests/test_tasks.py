"""The run mode and the switch of the fast path: ``FACSIMILE_FAST=0`` gives one
task per output in every command, with the same bytes and records; and the
doit behaviour that :mod:`facsimile.tasks.invocation` relies on."""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import doit, write_tree
from test_build import TREE, _records, ran


def _tree(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes()
            for f in sorted((root / "BUILD").rglob("*")) if f.is_file()}


@pytest.mark.slow
def test_the_fast_path_switched_off_makes_the_same_bytes_and_records(tmp_path: Path) -> None:
    fast, plain = tmp_path / "fast", tmp_path / "plain"
    for d in (fast, plain):
        write_tree(d, TREE)
    report = json.loads(doit(fast, "--reporter", "json", check=True).stdout)
    assert "build:_stale" in {t["name"] for t in report["tasks"]}
    shutil.copytree(fast / "state", plain / "state")  # same secrets and digest key
    report = json.loads(doit(plain, "--reporter", "json", check=True,
                             env={"FACSIMILE_FAST": "0"}).stdout)
    names = {t["name"] for t in report["tasks"]}
    assert "build:_stale" not in names and len([n for n in names if "/" in n]) == 15
    assert _tree(fast) == _tree(plain)
    assert len(_records(fast)) == 15
    assert _records(fast) == _records(plain)
    # and each agrees with the other's way of running: nothing to do
    assert not ran(doit(fast, check=True, env={"FACSIMILE_FAST": "0"}))
    assert not ran(doit(plain, check=True))


def test_doit_creates_tasks_inside_its_commands_execute(tmp_path: Path) -> None:
    """What :func:`facsimile.tasks.invocation.doit_command` relies on: doit calls a
    task creator from ``DoitCmdBase.execute(self, params, args)``."""
    from doit.cmd_base import DoitCmdBase, ModuleTaskLoader
    from doit.cmd_list import List
    from doit.cmd_run import Run
    from doit.doit_cmd import DoitMain

    from facsimile.tasks.invocation import doit_command

    assert list(inspect.signature(DoitCmdBase.execute).parameters) == ["self", "params", "args"]
    seen: list[Any] = []

    def task_probe() -> Any:
        seen.append(doit_command())
        yield {"basename": "probe", "actions": None}

    loader = ModuleTaskLoader({"task_probe": task_probe, "DOIT_CONFIG": {
        "dep_file": str(tmp_path / "db.json"), "backend": "json", "verbosity": 0}})
    assert DoitMain(loader, extra_config={"GLOBAL": {}}).run(["run", "probe"]) == 0
    assert DoitMain(loader, extra_config={"GLOBAL": {}}).run(["list", "--all"]) == 0
    (run, listing) = seen
    assert isinstance(run.command, Run) and run.args == ["probe"]
    assert run.params.get("num_process") == 0 and not run.params.get("always")
    assert isinstance(listing.command, List) and listing.args == []
    assert doit_command() is None  # outside doit


def test_the_loader_of_facs_build_tells_the_task_creator_its_command(tmp_path: Path) -> None:
    """``facs build`` needs no stack walk: doit's loader API hands the loader the
    command, its options and its arguments, and the task creator reads them."""
    from doit.cmd_run import Run
    from doit.doit_cmd import DoitMain

    from facsimile.tasks.invocation import invocation_loader

    seen: list[Any] = []

    def task_probe() -> Any:
        seen.append(loader.invocation)
        yield {"basename": "probe", "actions": None}

    loader = invocation_loader({"task_probe": task_probe, "DOIT_CONFIG": {
        "dep_file": str(tmp_path / "db.json"), "backend": "json", "verbosity": 0}})
    assert DoitMain(loader, extra_config={"GLOBAL": {}}).run(["run", "-n", "2", "probe"]) == 0
    (run,) = seen
    assert isinstance(run.command, Run) and run.args == ["probe"]
    assert run.params.get("num_process") == 2


def test_the_run_mode_of_each_command() -> None:
    from doit.cmd_list import List
    from doit.cmd_run import Run

    from facsimile.tasks.invocation import Invocation
    from facsimile.tasks.mode import PLAIN, decide

    def mode(cmd: Any, args: list[str], **params: Any) -> Any:
        inv = Invocation(cmd.__new__(cmd), params, args)
        return decide(inv, ["dev", "prod"], selected=False, extra_tasks=False)

    assert decide(None, ["dev"], selected=False, extra_tasks=False) == PLAIN
    assert mode(List, []) == PLAIN
    assert mode(Run, ["build:dev/etc/app.ini"]) == PLAIN
    assert mode(Run, [], always=True) == PLAIN
    plain_run = mode(Run, [])
    assert plain_run.lean and plain_run.batch and plain_run.fold and plain_run.quiet_ok
    named = mode(Run, ["build:dev"])
    assert named.batch and not named.fold and named.names("build:dev")
    assert not mode(Run, ["sync:dev"]).quiet_ok
    parallel = mode(Run, [], num_process=2)
    assert parallel.lean and not parallel.batch
