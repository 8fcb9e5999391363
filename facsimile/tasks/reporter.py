"""facsimile's doit reporter: doit's output without a line per up-to-date task,
a line per output a batch makes, and a summary."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

from doit.reporter import ExecutedOnlyReporter


class Reporter(ExecutedOnlyReporter):
    """doit's output without a line per up-to-date task, plus a summary.

    An output made in a batch gets the same line as one made by a task of its
    own, as it starts: ``.  build:<instance>/<path>``. A batch task carries its
    run (:class:`facsimile.tasks.fast.FastRun`) in ``meta["fast"]``; doit shows
    each task to its reporter just before running it, and the run gets its
    reporter then (:meth:`execute_task`).
    """

    desc = "facsimile: executed tasks and a summary"

    FLUSH_EVERY = 0.1  # seconds: batch lines are written in chunks at most this old

    def __init__(self, outstream: Any, options: Any) -> None:
        super().__init__(outstream, options)
        self.counts = {"built": 0, "up to date": 0}
        self._pending: list[str] = []
        self._flushed = time.monotonic()

    def started(self, name: str) -> None:
        """An output of a batch is being made. Its line is written within
        :attr:`FLUSH_EVERY`: one write per line, to an unbuffered or line-buffered
        stream, is slow at 10,000 outputs."""
        self._pending.append(f".  {name}\n")
        if time.monotonic() - self._flushed >= self.FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Write the pending batch lines."""
        if self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            self._out(text)
            with contextlib.suppress(AttributeError, OSError, ValueError):
                self.outstream.flush()
        self._flushed = time.monotonic()

    def write(self, text: str) -> None:
        self.flush()  # everything else in order after the batch lines
        self._out(text)

    def _out(self, text: str) -> None:
        """Write to the stream; when its reader went away (``doit | head``), the
        build goes on and its output goes to devnull (as doit's own would not)."""
        try:
            self.outstream.write(text)
        except BrokenPipeError:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.outstream.fileno())

    def made(self) -> None:
        """An output of a batch was made."""
        self.counts["built"] += 1

    def execute_task(self, task: Any) -> None:
        meta = task.meta or {}
        fast = meta.get("fast")
        if fast is not None:
            fast.reporter = self
        if "batch" in meta and not meta.get("orphans"):
            return  # its outputs have their own lines; it prunes nothing
        super().execute_task(task)

    def add_success(self, task: Any) -> None:
        if task.actions and task.name.startswith("build:") and task.targets:
            self.counts["built"] += 1
        self._omitted(task)

    def skip_uptodate(self, task: Any) -> None:
        if task.targets:
            self.counts["up to date"] += 1
        self._omitted(task)

    def _omitted(self, task: Any) -> None:
        """Up-to-date outputs that got no task (see :mod:`facsimile.tasks.mode`)."""
        if task.meta:
            self.counts["up to date"] += task.meta.get("up_to_date", 0)

    def complete_run(self) -> None:
        super().complete_run()
        if any(self.counts.values()):
            self.write(
                f"facsimile: {self.counts['built']} built, "
                f"{self.counts['up to date']} up to date\n"
            )
