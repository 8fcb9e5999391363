"""doit tasks: one ``build:<instance>/<path>`` per output, exact invalidation.

Each output task saves, in doit's database, the output's record
(:class:`facsimile.build.Record`): digests of what it was made from, never
values. When tasks are created, ``uptodate`` is computed from those records
by :meth:`facsimile.build.Build.check`: ``True`` for an up-to-date output (so
doit calls nothing per task on a no-op), and for a stale one a callable that
returns False with the reasons as its arguments, which ``doit info`` prints.
``facs plan`` uses the same check, so the two always agree.

How the tasks are laid out depends on the command (:mod:`.mode`): every
output a task of its own, or only the stale ones, or batches of them made by
group tasks (:mod:`.fast`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from .. import checkout as C
from .. import define as D
from ..build import DB_FILE, Build, Output, remove_output
from ..build.checkouts import present
from .actions import _sync_action, checkout_action, prune_action, render_action, uptodate
from .describe import describe
from .fast import FastRun, stale_action
from .fast import batch_action as batch_action_
from .fast import pool as P
from .fast.doitdb import FacsimileDB
from .mode import RunMode

Task = dict[str, Any]


def generate(build: Build, mode: RunMode, instances: list[str] | None = None,
             extra_tasks: list[Task] | None = None) -> Iterator[Task]:
    """Every doit task dict of the project (basenames ``build``, ``sync``, ``checkout``),
    of the chosen instances (all when ``None``), then ``extra_tasks`` (the project's
    own, :meth:`facsimile.Project.tasks`, when ``None``)."""
    project = build.project
    yield {"basename": "build", "name": None, "doc": "build every instance into BUILD/"}
    yield {"basename": "sync", "name": None, "doc": "build, then push every instance"}
    chosen = project.select(instances)
    yield from _checkout_tasks(build, chosen)
    if extra_tasks is None:
        extra_tasks = [dict(t) for t in project.tasks()]
    fast = _fast_run(build) if mode.batch else None
    folded: list[P.Batch] = []
    quiet = folded_fresh = 0
    for inst in chosen:
        checkouts = _checkout_deps(build, inst)
        out = _InstanceOutcome()
        yield from _output_tasks(build, mode, inst, checkouts, out)
        orphans = build.orphans(inst.name)
        named = mode.names(f"build:{inst.name}")
        if mode.quiet_ok and out.fresh and not orphans and not checkouts and not named:
            quiet += out.omitted
            continue
        batch = P.Batch(inst.name, out.batch, frozenset(out.new), bool(orphans))
        if fast is not None and out.reasons:
            fast.reasons.update(out.reasons)
        if mode.fold and not checkouts and not named:
            folded.append(batch)
            folded_fresh += out.omitted
            continue
        if (fast is not None and out.batch and not checkouts
                and (mode.runs_all or named or mode.names(f"sync:{inst.name}"))):
            fast.plan.append(batch)
        yield _instance_task(build, inst, out, orphans, checkouts, fast)
        if not mode.quiet_ok:
            yield _sync_task(build, inst)
    if folded:
        assert fast is not None
        fast.plan.extend(folded)
        yield _stale_task(fast, folded, folded_fresh)
    if instances is None:
        gone = build.orphans(None)
        yield {
            "basename": "build",
            "name": "_removed",
            "doc": "delete the BUILD trees of removed instances",
            "actions": [(prune_action, (build, None))],
            "uptodate": [uptodate([f"orphan: {build.root.rel(f)}" for f in gone])],
            "meta": {"up_to_date": quiet, "orphans": len(gone)},
        }
    if fast is not None:
        _save_retargeted(build, fast)
    build.save_caches()
    yield from extra_tasks


def _save_retargeted(build: Build, fast: FastRun) -> None:
    """Save the records found up to date once their paths moved to a checkout's new
    version, so that the next run finds their paths as they are (no second look)."""
    for task, values in build.checker.retargeted.items():
        fast.backend.set(task, "_values_:", values)


class _InstanceOutcome:
    """What checking an instance's outputs found."""

    __slots__ = ("batch", "fresh", "names", "new", "omitted", "reasons")

    def __init__(self) -> None:
        self.names: list[str] = []  # output tasks made
        self.batch: list[str] = []  # stale outputs its group task makes
        self.new: set[str] = set()  # of those, the ones not in BUILD/ yet
        self.fresh = True  # every output up to date
        self.omitted = 0  # up-to-date outputs that got no task
        self.reasons: dict[str, list[str]] = {}  # why each batched output is made (-v)


def _output_tasks(build: Build, mode: RunMode, inst: D.Instance, checkouts: list[str],
                  out: _InstanceOutcome) -> Iterator[Task]:
    """Check every output of ``inst``: a task for each the mode gives one, the
    others counted in ``out`` (omitted, or batched)."""
    build_dir = str(build.root.build)
    outputs = list(build.outputs(inst).values())
    check, lean, batched = build.check, mode.lean, mode.batch
    reasons_of = out.reasons if mode.verbose else None
    fresh, omitted = True, 0
    for o in outputs:
        reasons = check(o)
        if not reasons:
            if lean:
                omitted += 1  # doit would only skip it: spare it the task
                continue
        else:
            fresh = False
            if batched:
                out.batch.append(o.rel)  # made by the instance's task, see fast.batch
                if reasons_of is not None:
                    reasons_of[o.task] = reasons
                if reasons == ["new"]:
                    out.new.add(o.rel)
                continue
        out.names.append(o.task)
        task = _output_task(build, o, reasons, checkouts, build_dir)
        if mode.info:
            task["doc"], task["meta"] = describe(build, o)
        yield task
    out.fresh, out.omitted = fresh, omitted
    build.note_checked(inst, outputs, out.fresh)


def _output_task(build: Build, o: Output, reasons: list[str], checkouts: list[str],
                 build_dir: str) -> Task:
    target = build.out_str(o)
    task: Task = {
        "basename": "build",
        "name": f"{o.instance}/{o.rel}",
        "actions": [(render_action, (build, o.instance, o.rel))],
        "targets": [target],
        "uptodate": [uptodate(reasons)],
        "clean": [(remove_output, (target, build_dir))],
    }
    if checkouts:
        task["task_dep"] = checkouts
    return task


def _instance_task(build: Build, inst: D.Instance, out: _InstanceOutcome, orphans: list[Any],
                   checkouts: list[str], fast: FastRun | None) -> Task:
    """``build:<instance>``: its orphans deleted, its batch made (when batched)."""
    actions: list[Any] = ([(batch_action_, (fast, inst.name, out.batch, frozenset(out.new)))]
                          if out.batch else [])
    meta: dict[str, Any] = {"up_to_date": out.omitted, "batch": len(out.batch),
                            "orphans": len(orphans)}
    if fast is not None:
        meta["fast"] = fast
    return {
        "basename": "build",
        "name": inst.name,
        "doc": f"build instance {inst.name}",
        # orphans first: one may stand where an output is to go
        "actions": [(prune_action, (build, inst.name, bool(orphans), fast)), *actions],
        "task_dep": [*checkouts, *out.names],
        "uptodate": [uptodate([f"stale: BUILD/{inst.name}/{rel}" for rel in out.batch]
                              + [f"orphan: {build.root.rel(f)}" for f in orphans])],
        "meta": meta,
    }


def _sync_task(build: Build, inst: D.Instance) -> Task:
    return {
        "basename": "sync",
        "name": inst.name,
        "doc": f"build {inst.name}, then push it to every host of its targets",
        "actions": [(_sync_action, (build, inst.name))],
        "task_dep": [f"build:{inst.name}"],
        "uptodate": [False],
        "verbosity": 2,
    }


def _stale_task(fast: FastRun, folded: list[P.Batch], fresh: int) -> Task:
    """``build:_stale``: every folded instance's orphans and stale outputs."""
    stale_count = sum(len(b.rels) for b in folded)
    return {
        "basename": "build",
        "name": "_stale",
        "doc": "make the stale outputs of every instance, and delete its orphans",
        "actions": [(stale_action, (fast, folded))],
        "uptodate": [uptodate([f"{stale_count} stale outputs and the orphans of "
                               f"{len(folded)} instances"])],
        "meta": {"up_to_date": fresh, "batch": stale_count, "orphans": 0, "fast": fast},
    }


def _checkout_deps(build: Build, inst: D.Instance) -> list[str]:
    """The checkout tasks an instance waits for: those of checkouts not made yet."""
    return [f"checkout:{src.name}" for src in build.project.sources(inst)
            if not present(src, build.root.src)]


def _checkout_tasks(build: Build, chosen: list[D.Instance]) -> Iterator[Task]:
    """``checkout:<name>`` clones every version of ``<name>`` that an instance uses;
    up to date, with no remote asked, when each is there."""
    sources: dict[str, list[C.Source]] = {}
    for inst in chosen:
        for src in build.project.sources(inst):
            if src not in sources.setdefault(src.name, []):
                sources[src.name].append(src)
    if sources:
        yield {"basename": "checkout", "name": None,
               "doc": "clone the missing source checkouts into SRC/"}
    for name, srcs in sources.items():
        yield {
            "basename": "checkout",
            "name": name,
            "doc": f"check out {name} at {', '.join(s.version for s in srcs)} into SRC/ "
                   "(facs checkout --verify: check the tags against the remote)",
            "actions": [(checkout_action, (build, srcs))],
            "uptodate": [all(present(s, build.root.src) for s in srcs)],
        }


def _fast_run(build: Build) -> FastRun:
    """The batches' shared run: doit's backend and checker (doit makes its
    dependency manager before it creates tasks), and the processes to use."""
    from doit.globals import Globals

    dep = Globals.dep_manager
    return FastRun(build, dep.backend, dep.checker.__class__.__name__, jobs=P.jobs())


def use_doits_db(build: Build) -> None:
    """Check against the database doit has loaded for this run, when it is the
    root's (else the check reads ``.doit.db`` itself)."""
    from doit.globals import Globals

    backend = getattr(getattr(Globals, "dep_manager", None), "backend", None)
    path = str(build.root.base / DB_FILE)
    if isinstance(backend, FacsimileDB) and os.path.abspath(backend.name) == path:
        build.use_db(backend.data)
