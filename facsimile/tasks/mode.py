"""The run mode: how the tasks of this doit command are laid out, decided once
from the command (:func:`decide`) and read by :func:`facsimile.tasks.generate`.

Every command sees one task per output (``doit list``, ``info``, ``forget``,
``clean``, ``strace``, ``run -a``, a run naming one output): the plain mode.
A run of group tasks only (``doit``, ``doit build:prod``, ``doit sync:dev``,
``facs build``) is *lean*: an up-to-date output needs no task, and an
instance with nothing to do none either. A lean run without ``-n`` is also
*batched*: a doit task per stale output costs more than rendering it, so one
task makes them all (``build:_stale``), or each named instance's group task
makes its own, helped by forked processes when there is a lot to make
(:mod:`facsimile.tasks.fast`). With ``-n 2`` (or ``-n 1``: doit runs tasks in
a child process then, whose writes to the database would be lost) each stale
output stays a task of its own, for doit to spread over processes.

``FACSIMILE_FAST=0`` turns lean and batched runs off: every command gets the
plain mode, with the same bytes in ``BUILD/`` and the same output records.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from .console import VERBOSE, level_of, outcome
from .invocation import Invocation

FAST_VAR = "FACSIMILE_FAST"


@dataclass(frozen=True)
class RunMode:
    """How this command's tasks are laid out."""

    lean: bool = False  # an up-to-date output gets no task
    batch: bool = False  # stale outputs are made by group tasks, not a task each
    quiet_ok: bool = False  # an instance with nothing to do gets no task (nor sync tasks)
    fold: bool = False  # every batched instance in one task, build:_stale
    runs_all: bool = True  # the run builds every instance (none named)
    named: frozenset[str] = frozenset()  # the task names the command was given
    #: ``-v 2`` (the reporter prints why each output is made) or ``facs build --json``
    #: (its document lists why): keep the reasons
    verbose: bool = False
    info: bool = False  # ``doit info``: an output task's doc lists its dependencies

    def names(self, task: str) -> bool:
        """Whether the command named ``task``."""
        return task in self.named


PLAIN = RunMode()


def fast_enabled() -> bool:
    """``FACSIMILE_FAST`` is not ``0`` (nor ``false``, ``no``, ``off``)."""
    return os.environ.get(FAST_VAR, "").strip().lower() not in ("0", "false", "no", "off")


def decide(run: Invocation | None, instances: Iterable[str], selected: bool,
           extra_tasks: bool) -> RunMode:
    """The mode of ``run`` (:func:`facsimile.tasks.invocation.doit_command`).

    ``instances``: the project's instance names; ``selected``: the tasks are made
    for chosen instances only; ``extra_tasks``: the project adds tasks of its own.
    """
    verbose = ((run is not None and level_of(run.params.get("verbosity")) == VERBOSE)
               or outcome() is not None)
    args = _group_run_args(run, instances)
    if args is None or not fast_enabled():
        return RunMode(verbose=verbose, info=_is_info(run))
    batch = not run.params.get("num_process")  # type: ignore[union-attr]
    named = frozenset(args)
    quiet_ok = (not selected and not extra_tasks
                and not any(a == "sync" or a.startswith("sync:") for a in args))
    runs_all = not args or "build" in named or "sync" in named
    return RunMode(lean=True, batch=batch, quiet_ok=quiet_ok,
                   fold=batch and quiet_ok and runs_all, runs_all=runs_all, named=named,
                   verbose=verbose)


def _is_info(run: Invocation | None) -> bool:
    from doit.cmd_info import Info

    return run is not None and isinstance(run.command, Info)


def _group_run_args(run: Invocation | None, instances: Iterable[str]) -> list[str] | None:
    """The arguments of a ``run`` of group tasks only, else ``None``."""
    from doit.cmd_run import Run
    from doit.cmd_strace import Strace

    if run is None or not isinstance(run.command, Run) or isinstance(run.command, Strace):
        return None
    if run.params.get("always"):
        return None
    groups = {"build", "sync", "checkout", *(f"{b}:{i}" for b in ("build", "sync")
                                             for i in instances)}
    if all(isinstance(a, str) and (a in groups or a.startswith("checkout:")) for a in run.args):
        return run.args
    return None
