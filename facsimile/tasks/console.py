"""What a build prints for its operator, without doit: the output level chosen
by the command (:func:`configure`, read by the reporter), the live progress
line on a terminal (:class:`Progress`), failed outputs grouped by their
message (:class:`Failures`) and the summary line (:func:`summary`).

Levels follow doit's ``-v``: ``0`` is quiet (errors and the summary only),
``1`` (the default) one line per output made when the output is not a
terminal, ``2`` verbose (every output made, with the reason it was stale).

The progress line is our own carriage-return line, not a library's:
importing ``rich.progress`` or ``tqdm`` costs a large part of a no-op build
(``python -X importtime``), and a line this plain needs neither.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

QUIET, NORMAL, VERBOSE = 0, 1, 2

_level = NORMAL


@dataclass
class Outcome:
    """What a run made and what failed, kept for ``facs build --json``: the
    reporter fills it in when :func:`collect` asked for one."""

    made: list[dict[str, Any]] = field(default_factory=list)  # {"task", "reasons"}
    failed: list[dict[str, Any]] = field(default_factory=list)  # {"task", "message"}
    counts: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False


_outcome: Outcome | None = None


def collect() -> Outcome:
    """Keep the outcome of the next run (in this process) in a new :class:`Outcome`."""
    global _outcome
    _outcome = Outcome()
    return _outcome


def outcome() -> Outcome | None:
    """The :class:`Outcome` :func:`collect` made, or ``None`` when none was asked for."""
    return _outcome


def level_of(verbosity: Any) -> int:
    """The console level of doit's ``verbosity`` option (``None``: not given)."""
    if verbosity is None:
        return NORMAL
    try:
        return max(QUIET, min(VERBOSE, int(verbosity)))
    except (TypeError, ValueError):
        return NORMAL


def configure(verbosity: Any) -> int:
    """Set the level of this run from doit's ``verbosity`` option; returns it.
    The task creator calls it (it sees the command line), the reporter reads it."""
    global _level
    _level = level_of(verbosity)
    return _level


def level() -> int:
    """The level :func:`configure` set (:data:`NORMAL` until then)."""
    return _level


def is_tty(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (``False`` for anything that cannot say)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


class Progress:
    """One live line on a terminal: done/total, rate, time left, current instance.

    Drawn only on a terminal, only once the run has taken :attr:`DELAY`
    seconds, and redrawn at most every :attr:`EVERY` seconds. :meth:`clear`
    erases it before anything else is written to the terminal.
    """

    DELAY = 1.0
    EVERY = 0.1

    def __init__(self, stream: TextIO, total: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.total = total
        self.enabled = is_tty(stream)
        self.clock = clock
        self.start = clock()
        self.shown = False
        self._drawn = 0.0
        self.done = 0
        self.current = ""

    def update(self, done: int, current: str | None = None) -> None:
        """``done`` outputs of :attr:`total` made (or failed); working on ``current``."""
        self.done = done
        if current:
            self.current = current
        if not self.enabled:
            return
        now = self.clock()
        if now - self.start < self.DELAY or now - self._drawn < self.EVERY:
            return
        self._drawn = now
        self._write("\r" + self.line(now) + "\x1b[K")
        self.shown = True

    def line(self, now: float) -> str:
        """The text of the line at time ``now``."""
        elapsed = max(now - self.start, 1e-6)
        rate = self.done / elapsed
        total = max(self.total, self.done)
        text = f"facsimile: {self.done}/{total} outputs, {rate:.0f}/s"
        if rate > 0 and total > self.done:
            text += f", {_duration((total - self.done) / rate)} left"
        if self.current:
            text += f"  {self.current}"
        return text

    def clear(self) -> None:
        """Erase the line, when it is shown."""
        if self.shown:
            self._write("\r\x1b[K")
            self.shown = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            self.enabled = False


def _duration(seconds: float) -> str:
    """``0:07`` or ``1:02:03``."""
    s = int(seconds + 0.5)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02}:{s:02}" if h else f"{m}:{s:02}"


def instance_of(task: str) -> str:
    """``prod`` of ``build:prod/etc/app.ini`` (the name itself if it has no instance)."""
    return task.removeprefix("build:").split("/", 1)[0]


class Failures:
    """Failed outputs grouped by their message: an error in a shared template is
    printed once, with a count of the other outputs it broke."""

    def __init__(self) -> None:
        self.by_message: dict[str, list[str]] = {}
        self.first: dict[str, str] = {}  # the first message of each group, as it was

    def add(self, task: str, message: str) -> None:
        """``task`` failed with ``message`` (which names the template and line). A
        message that names the output's own ``BUILD/<instance>/`` (a failed
        ``validate`` check) is grouped with those that differ only there."""
        message = message.strip()
        key = message.replace(f"BUILD/{instance_of(task)}/", "BUILD/*/")
        self.first.setdefault(key, message)
        self.by_message.setdefault(key, []).append(task)

    def __len__(self) -> int:
        return sum(len(t) for t in self.by_message.values())

    def lines(self, verbose: bool) -> list[str]:
        """The report: per message, its first output and the message, then how many
        other outputs (and instances) failed the same way; ``verbose``: their names."""
        out: list[str] = []
        for key, tasks in self.by_message.items():
            out.append(f"facsimile: error: {tasks[0]}: {self.first[key]}")
            others = tasks[1:]
            if not others:
                continue
            instances = len({instance_of(t) for t in others})
            outputs = "output" if len(others) == 1 else "outputs"
            where = "instance" if instances == 1 else "instances"
            more = f"  and {len(others)} more {outputs} in {instances} {where}"
            if verbose:
                out.append(more + ":")
                out.extend(f"    {t}" for t in others)
            else:
                out.append(more + " (-v lists them)")
        return out


def summary(counts: dict[str, int], *, interrupted: bool = False, left: int = 0) -> str:
    """``facsimile: 3 built, 1 deleted, 2 failed, 50 up to date`` (deleted and failed
    only when there are any); an interrupted run says so and what is left."""
    parts = [f"{counts.get('built', 0)} built"]
    parts += [f"{counts[k]} {k}" for k in ("deleted", "failed") if counts.get(k)]
    parts.append(f"{counts.get('up to date', 0)} up to date")
    text = ", ".join(parts)
    if interrupted:
        text = f"interrupted: {text} (saved)"
        if left > 0:
            text += f"; {left} not made yet (the next run makes them)"
    return f"facsimile: {text}\n"
