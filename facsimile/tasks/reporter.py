"""facsimile's doit reporter: a line per output made (off a terminal), a live
progress line (on one), each distinct failure once, and a true summary.

What it prints depends on the level the command chose
(:mod:`facsimile.tasks.console`): quiet, normal or verbose. The ``build:``
tasks are facsimile's own: doit's lines for them (``.  build:x`` before a
task runs, ``TaskFailed - taskid``, captured-output blocks) are replaced by
a line after an output is made and by the grouped failures. Other tasks
(``sync:``, ``checkout:``, a project's own) keep doit's lines.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import Any

from doit.reporter import ExecutedOnlyReporter

from . import console as K
from .record import settle


def _ours(task: Any) -> bool:
    return task.name.startswith("build:")


def _is_output(task: Any) -> bool:
    return _ours(task) and bool(task.targets)


class Reporter(ExecutedOnlyReporter):
    """doit's reporter for facsimile's runs.

    A batch task carries its run (:class:`facsimile.tasks.fast.FastRun`) in
    ``meta["fast"]``; doit shows each task to its reporter just before running
    it, and the run gets its reporter then (:meth:`execute_task`). The run
    calls :meth:`started`, :meth:`made`, :meth:`failed` and :meth:`deleted`.
    """

    desc = "facsimile: outputs made, failures once, a summary"

    FLUSH_EVERY = 0.1  # seconds: output lines are written in chunks at most this old

    def __init__(self, outstream: Any, options: Any) -> None:
        super().__init__(outstream, options)
        self.level = K.level()
        self.counts = {"built": 0, "deleted": 0, "failed": 0, "up to date": 0}
        self.lines = self.level == K.VERBOSE or (
            self.level == K.NORMAL and not K.is_tty(outstream))
        self.progress = K.Progress(sys.stderr, 0)
        self.progress.enabled &= self.level > K.QUIET
        self.grouped = K.Failures()
        self.interrupted = 0
        self.total = 0  # outputs this run is to make
        self._counted: set[str] = set()
        self._running: Any = None
        self._signal: Any = None
        self._pending: list[str] = []
        self._flushed = time.monotonic()
        self.outcome = K.outcome()
        self._bad = False  # a task failed, or doit stopped: no no-op record

    # ------------------------------------------------------------ the run's outputs

    def started(self, name: str) -> None:
        """An output is being made."""
        self.progress.update(self._done(), K.instance_of(name))

    def made(self, name: str, reasons: list[str] | None = None) -> None:
        """An output was made and its record saved. Its line is written within
        :attr:`FLUSH_EVERY`: one write per line is slow at 10,000 outputs."""
        self.counts["built"] += 1
        if self.outcome is not None:
            self.outcome.made.append({"task": name, "reasons": list(reasons or [])})
        if self.lines:
            why = f"  ({'; '.join(reasons)})" if reasons and self.level == K.VERBOSE else ""
            self._pending.append(f".  {name}{why}\n")
            if time.monotonic() - self._flushed >= self.FLUSH_EVERY:
                self.flush()
        self.progress.update(self._done())

    def failed(self, name: str, message: str) -> None:
        """An output failed; reported with the others that failed alike at the end."""
        self.counts["failed"] += 1
        self.grouped.add(name, message)
        self._record_failure(name, message)
        self.progress.update(self._done())

    def _record_failure(self, name: str, message: str) -> None:
        if self.outcome is not None:
            self.outcome.failed.append({"task": name, "message": message.strip()})

    def deleted(self, count: int) -> None:
        """``count`` orphans were deleted."""
        self.counts["deleted"] += count

    def _done(self) -> int:
        return self.counts["built"] + self.counts["failed"]

    def flush(self) -> None:
        """Write the pending output lines."""
        if self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            self._out(text)
            with contextlib.suppress(AttributeError, OSError, ValueError):
                self.outstream.flush()
        self._flushed = time.monotonic()

    def write(self, text: str) -> None:
        self.flush()  # everything else in order after the output lines
        self._out(text)

    def _out(self, text: str) -> None:
        """Write to the stream; when its reader went away (``doit | head``), the
        build goes on and its output goes to devnull (as doit's own would not)."""
        self.progress.clear()
        try:
            self.outstream.write(text)
        except BrokenPipeError:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.outstream.fileno())

    # ------------------------------------------------------------ doit's calls

    def initialize(self, tasks: Any, selected_tasks: Any) -> None:
        """Count the outputs to make, and catch Ctrl-C (see :meth:`_interrupt`)."""
        self.total = _to_make(tasks, selected_tasks)
        self.progress.total = self.total
        self.progress.start = time.monotonic()
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError):
                self._signal = signal.signal(signal.SIGINT, self._interrupt)

    def _interrupt(self, signum: int, frame: Any) -> None:
        """Ctrl-C: stop the run (what was made is saved as the run unwinds). A
        second one is ignored, so that the unwinding removes its temporary files
        and writes the database; a third stops at once."""
        self.interrupted += 1
        if self.interrupted == 2:
            return
        raise KeyboardInterrupt

    def execute_task(self, task: Any) -> None:
        meta = task.meta or {}
        fast = meta.get("fast")
        if fast is not None:
            fast.reporter = self
        self._running = task
        if _ours(task):
            if task.targets:
                self.progress.update(self._done(), K.instance_of(task.name))
            return  # an output's line comes when it is made; group tasks have none
        if self.level > K.QUIET:
            super().execute_task(task)

    def add_success(self, task: Any) -> None:
        if _is_output(task) and task.actions:
            self.made(task.name, _reasons(task))
        self._finished(task)

    def runtime_error(self, msg: str) -> None:
        self._bad = True
        super().runtime_error(msg)

    def add_failure(self, task: Any, fail: Any) -> None:
        self._bad = True
        if not _ours(task):
            super().add_failure(task, fail)
            self._record_failure(task.name, fail.get_msg())
        elif "fast" not in (task.meta or {}):  # a batch reported its outputs itself
            message = getattr(fail, "message", None) or fail.get_msg()
            if task.targets:
                self.failed(task.name, message)
            else:
                self.grouped.add(task.name, message)
                self._record_failure(task.name, message)
        self._finished(task)

    def skip_uptodate(self, task: Any) -> None:
        if task.targets:
            self.counts["up to date"] += 1
        self._finished(task)

    def _finished(self, task: Any) -> None:
        """A task ended: count what its meta says it spared or deleted (once)."""
        self._running = None
        if task.name in self._counted:
            return
        self._counted.add(task.name)
        meta = task.meta or {}
        self.counts["up to date"] += meta.get("up_to_date", 0)
        if "fast" not in meta and task.actions and task.name != "build:_stale":
            self.counts["deleted"] += meta.get("orphans", 0)

    def complete_run(self) -> None:
        """The failures, doit's own report of other tasks, then the summary. After
        Ctrl-C: exit 130, no traceback."""
        if self._signal is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGINT, self._signal)
        if self.interrupted and self._running is not None:
            self._finished(self._running)
        self.flush()
        self.progress.clear()
        lines = self.grouped.lines(self.level == K.VERBOSE)
        if lines:
            self.write("\n".join(lines) + "\n")
        super().complete_run()
        left = self.total - self._done()
        if self.outcome is not None:
            self.outcome.counts = dict(self.counts)
            self.outcome.interrupted = bool(self.interrupted)
        if self.interrupted or any(self.counts.values()):
            self.write(K.summary(self.counts, interrupted=bool(self.interrupted), left=left))
        self.flush()
        settle(not (self.interrupted or self._bad or self.counts["failed"]),
               changed=bool(self.counts["built"] or self.counts["deleted"]))
        if self.interrupted:
            raise SystemExit(130)


def _reasons(task: Any) -> list[str] | None:
    """Why an output task ran: its ``uptodate`` entry (:class:`facsimile.tasks.actions.Stale`)."""
    for utd, _, _ in task.uptodate:
        reasons = getattr(utd, "reasons", None)
        if reasons is not None:
            return list(reasons)
    return None


def _to_make(tasks: dict[str, Any], selected: list[str]) -> int:
    """The outputs the selected tasks (and their dependencies) are to make: each
    batch's, and each output task found stale when it was made."""
    seen: set[str] = set()
    todo = list(selected or ())
    total = 0
    while todo:
        name = todo.pop()
        if name in seen or name not in tasks:
            continue
        seen.add(name)
        task = tasks[name]
        todo.extend(task.task_dep)
        meta = task.meta or {}
        total += meta.get("batch", 0)
        if _is_output(task) and any(getattr(u, "reasons", None) for u, _, _ in task.uptodate):
            total += 1
    return total
