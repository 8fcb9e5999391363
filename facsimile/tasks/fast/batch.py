"""Batches: the stale outputs of an instance made in one doit action, and each
output's record saved in doit's database under its own task name.

``build:_stale`` (a plain ``doit``) makes every instance's batch in one action
(:func:`stale_action`); in a run that names instances, each one's group task
makes its own (:func:`batch_action`). A failed output keeps its previous
file and loses its record (as doit drops a failed task's); the others are
made. A :class:`FastRun` holds what the batches of one run share: the plan a
helper process may take from, the database backend, and the reporter.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ...build import Build
from ...build.check import VALUES as _VALUES
from ...build.collector import collector_paused
from ...errors import FacsimileError
from . import pool as P
from .doitdb import FacsimileDB, record_line


def save_record(backend: Any, checker: str, task: str, values: dict[str, Any],
                line: str | None = None) -> None:
    """Save a successful output task's record as doit itself does
    (``doit.dependency.Dependency.save_success`` for a task without file
    dependencies whose result is falsy): its values, the checker's class name,
    and an empty list of file dependencies, in that order. ``line``: the record
    as :func:`~facsimile.tasks.fast.doitdb.record_line` encodes it, which a
    database with no record of the task keeps for its dump."""
    if line is not None and isinstance(backend, FacsimileDB) and backend.set_new(
            task, task_record(values, checker), line):
        return
    backend.set(task, _VALUES, values)
    backend.set(task, "checker:", checker)
    backend.set(task, "deps:", ())


def task_record(values: dict[str, Any], checker: str) -> dict[str, Any]:
    """The whole database entry :func:`save_record` leaves for a task that had none."""
    return {_VALUES: values, "checker:": checker, "deps:": []}


@dataclass
class FastRun:
    """What the batches of one run share.

    ``backend`` and ``checker``: doit's database backend and the name of its
    file checker's class (doit's dependency manager, made before the tasks).
    ``reporter``: set by :class:`facsimile.tasks.reporter.Reporter` just before
    doit runs a batch task (``None`` under another reporter: no lines then).
    """

    build: Build
    backend: Any
    checker: str
    jobs: int = 1  # processes the plan may use
    plan: list[P.Batch] = field(default_factory=list)  # in doit's order
    reporter: Any = None
    reasons: dict[str, list[str]] = field(default_factory=dict)  # why each is made (-v)
    _helper: P.Helper | bool | None = field(default=False, repr=False)

    def helper(self) -> P.Helper | None:
        """The run's helper processes, started by the first action that asks when the
        plan is worth it (:func:`facsimile.tasks.fast.pool.helpers`); else ``None``."""
        if self._helper is False:
            self._helper = None
            count = P.helpers(self.plan, self.jobs)
            if count:
                self.build.key(write=True)  # made once, before there are two processes
                with contextlib.suppress(FacsimileError):  # met again when its output is made
                    self.build.maker.prepare([(b.instance, b.rels) for b in self.plan])
                with contextlib.suppress(OSError):  # no semaphores, no fork: one process
                    self._helper = P.Helper(self.plan, self._helper_work, count)
                    self._save_on_dump(self._helper)
        return self._helper  # type: ignore[return-value]

    def _helper_work(self, batch: P.Batch) -> P.Made:
        """A batch made in a helper process: its orphans first, then its outputs."""
        deleted = self.build.prune(batch.instance) if batch.orphans else 0
        return make_batch(self.build, batch, checker=self._encode_for())._replace(deleted=deleted)

    def _encode_for(self) -> str | None:
        """The checker name records are encoded with as they are made (the dump then
        only joins lines), when the backend keeps encoded lines."""
        return self.checker if isinstance(self.backend, FacsimileDB) else None

    def _save_on_dump(self, helper: P.Helper) -> None:
        """When the run ends before it waited for every helper's outcome (Ctrl-C, or
        a failed task in a run that names instances), stop the helpers and save the
        outcomes they sent with the database: their files are written."""
        if not isinstance(self.backend, FacsimileDB):
            return

        def save() -> None:
            helper.finish()
            for instance, made in helper.received().items():
                self._report(instance, made)
                self.save(instance, made)

        self.backend.before_dump.append(save)

    def prune(self, instance: str | None, found: bool) -> None:
        """Delete an instance's orphans, unless a helper process took the instance
        (it prunes it there, before making its outputs)."""
        helper = self.helper()
        if helper is not None and instance is not None and not helper.take(instance):
            return
        if found:
            self._deleted(self.build.prune(instance))

    def run_batch(self, batch: P.Batch) -> list[str]:
        """Make one instance's stale outputs (its orphans first, when ``batch.orphans``)
        and save their records; returns a line per failed output. When a helper
        process took the instance, this waits for what it made (and makes here
        what it did not)."""
        instance, rels = batch.instance, set(batch.rels)
        failed: list[tuple[str, str]] = []
        helper = self.helper()
        if helper is not None and not helper.take(instance):
            made = helper.outcome(instance)
            if made is None:  # the helper went away first: make it here, orphans first
                batch = batch._replace(orphans=True)
            else:
                self._report(instance, made)
                self.save(instance, made)
                failed += made.failed
                done = {rel for rel, _ in made.records} | {rel for rel, _ in made.failed}
                batch = batch._replace(rels=[r for r in batch.rels if r not in done],
                                       orphans=False)
        if batch.rels or batch.orphans:
            failed += self._make_here(batch).failed
        if failed:
            return [f"build:{instance}/{rel}: {msg}" for rel, msg in failed]
        for task, values in self.build.checker.refreshed(instance, rels):
            self.backend.set(task, "_values_:", values)
        return []

    def _make_here(self, batch: P.Batch) -> P.Made:
        """Make a batch in this process and save it; after Ctrl-C, save what was
        made by then and stop."""
        if batch.orphans:
            self._deleted(self.build.prune(batch.instance))
        try:
            made = make_batch(self.build, batch, self._watch(), checker=self._encode_for())
        except P.Interrupted as stopped:
            self.save(batch.instance, stopped.made)
            raise KeyboardInterrupt from None
        self.save(batch.instance, made)
        return made

    def _watch(self) -> Any:
        """What :func:`make_batch` tells of each output: the reporter, with reasons."""
        reporter = self.reporter
        if reporter is None:
            return None
        return _Watch(reporter, self.reasons)

    def _report(self, instance: str, made: P.Made) -> None:
        """Tell the reporter what a helper made."""
        self._deleted(made.deleted)
        if self.reporter is None:
            return
        for rel, _ in made.records:
            name = f"build:{instance}/{rel}"
            self.reporter.made(name, self.reasons.get(name))
        for rel, msg in made.failed:
            self.reporter.failed(f"build:{instance}/{rel}", msg)

    def _deleted(self, count: int) -> None:
        if count and self.reporter is not None:
            self.reporter.deleted(count)

    def save(self, instance: str, made: P.Made) -> None:
        """Save what a batch made in doit's database, as each output's own task would."""
        lines = made.lines if made.lines is not None and len(made.lines) == len(made.records) \
            else None
        for k, (rel, values) in enumerate(made.records):
            save_record(self.backend, self.checker, f"build:{instance}/{rel}", values,
                        None if lines is None else lines[k])
        for rel, _ in made.failed:
            self.backend.remove(f"build:{instance}/{rel}")

    def flush(self) -> None:
        if self.reporter is not None:
            self.reporter.flush()


class _Watch(NamedTuple):
    """The reporter's view of a batch made in this process."""

    reporter: Any
    reasons: dict[str, list[str]]

    def started(self, name: str) -> None:
        self.reporter.started(name)

    def made(self, name: str) -> None:
        self.reporter.made(name, self.reasons.get(name))

    def failed(self, name: str, message: str) -> None:
        self.reporter.failed(name, message)


def make_batch(build: Build, batch: P.Batch, watch: _Watch | None = None,
               checker: str | None = None) -> P.Made:
    """Make a batch's outputs one after the other; a failed one does not stop the rest.
    Ctrl-C raises :class:`facsimile.tasks.fast.pool.Interrupted` with what was made.
    ``checker``: also encode each record's database line, with that checker name."""
    made = P.Made([], [], lines=None if checker is None else [])
    lines = made.lines
    try:
        for rel in batch.rels:
            name = f"build:{batch.instance}/{rel}"
            if watch is not None:
                watch.started(name)
            try:
                record = build.build_one(batch.instance, rel, absent=rel in batch.new)
            except FacsimileError as exc:
                made.failed.append((rel, str(exc)))
                if watch is not None:
                    watch.failed(name, str(exc))
            else:
                values = record.to_values()
                made.records.append((rel, values))
                if lines is not None:
                    lines.append(record_line(name, task_record(values, checker)))
                if watch is not None:
                    watch.made(name)
    except KeyboardInterrupt:
        raise P.Interrupted(made._replace(partial=True)) from None
    return made


def batch_action(run: FastRun, instance: str, rels: list[str], new: frozenset[str]) -> Any:
    """Make the stale outputs of one instance in one doit action (serial group runs);
    its task's first action pruned its orphans."""
    with collector_paused():  # records and lines made by the thousand, none collectable
        failed = run.run_batch(P.Batch(instance, rels, new, False))
    run.flush()
    return _failure(failed)


def stale_action(run: FastRun, batches: list[P.Batch]) -> Any:
    """Make the stale outputs of every instance in one doit action (a plain ``doit``),
    instance by instance, each one's orphans first."""
    failed = []
    with collector_paused():  # records and lines made by the thousand, none collectable
        for batch in batches:
            failed += run.run_batch(batch)
    run.flush()
    return _failure(failed)


def _failure(failed: list[str]) -> Any:
    from doit.exceptions import TaskFailed

    return TaskFailed("\n".join(failed)) if failed else None
