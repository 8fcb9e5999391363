"""Helper processes for large batched runs.

A batched run (see :meth:`facsimile.tasks.fast.FastRun.run_batch`) makes each instance's
stale outputs in one action (``build:_stale``, or the instance's own task), one
instance after another. When there is a lot to make and more than one core,
forked helpers take instances from the end of the run's plan while doit's
process works from its start. Each instance is taken by exactly one process (a
claim under a lock). When doit reaches an instance a helper took, it waits for
the helper's outcome, then saves the records, writes the lines and reports
failures as if it had made them itself. So doit's database, its output and its
exit code are as in a run in one process.

A helper inherits everything from the fork, resolved model and state included.
It writes only the outputs of the instances it took and, for a family whose
state is not there yet, the state file, under the family's lock. It sends back
digests and error messages, which are already free of secrets. When it dies,
doit's process makes whatever it had not sent. When doit's process stops early
(a task failed, Ctrl-C), the helpers are stopped too, and the outcomes they had
sent are saved with the database (:meth:`Helper.received`), the instance a
helper was in the middle of as far as it got (:class:`Made` ``partial``).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import pickle
import signal
import struct
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from ...errors import FacsimileError

PER_HELPER = 1000  # outputs per helper: below, a fork and its copied pages cost more than it saves
JOBS_VAR = "FACSIMILE_JOBS"
_FREE, _MAIN = 0, 1  # a claim: free, doit's process, or 2 + the helper's number
_HEAD = struct.Struct("<I")


class Batch(NamedTuple):
    """One instance's share of a batched run."""

    instance: str
    rels: list[str]  # stale outputs, in the order they are made
    new: frozenset[str]  # of those, the ones not in BUILD/ when the run began
    orphans: bool  # BUILD/<instance>/ had files no output makes


class Made(NamedTuple):
    """What making a batch gave: records of the outputs made, messages of the failed,
    orphans deleted; ``partial``: it was stopped before its end (Ctrl-C)."""

    records: list[tuple[str, dict[str, Any]]]  # (rel, record)
    failed: list[tuple[str, str]]  # (rel, message)
    deleted: int = 0
    partial: bool = False
    #: each record's database line, in the order of ``records`` (None: not encoded)
    lines: list[str] | None = None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while a batch was being made: what it had made by then."""

    def __init__(self, made: Made) -> None:
        super().__init__()
        self.made = made


def cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def jobs() -> int:
    """Processes a batched run may use: ``$FACSIMILE_JOBS``, else one per core."""
    text = os.environ.get(JOBS_VAR, "").strip()
    if not text:
        return cores()
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise FacsimileError(f"{JOBS_VAR}={text!r}: give a number of processes, 1 or more")
    return value


def helpers(plan: list[Batch], jobs: int) -> int:
    """How many helper processes ``plan`` is worth: one per :data:`PER_HELPER` outputs,
    within ``jobs - 1`` and one less than its instances."""
    if not hasattr(os, "fork"):
        return 0
    total = sum(len(b.rels) for b in plan)
    return max(0, min(jobs - 1, len(plan) - 1, total // PER_HELPER))


class Helper:
    """``count`` forked processes that make batches from the end of ``plan``.

    ``work(batch)`` makes one batch (in any process) and returns :class:`Made`.
    """

    def __init__(self, plan: list[Batch], work: Callable[[Batch], Made], count: int) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self.plan = plan
        self._index = {b.instance: i for i, b in enumerate(plan)}
        self._lock = ctx.Lock()
        self._claims = ctx.RawArray("i", len(plan))  # (a byte would overflow past 125 helpers)
        self._done: dict[str, Made | None] = {}
        self._gone: set[int] = set()  # helpers that ended (their pipe closed)
        self._cond = threading.Condition()
        self.pids: list[int] = []
        reads: list[int] = []
        for n in range(count):
            try:
                read, write = os.pipe()
            except OSError:
                break
            _widen(write)
            try:
                pid = os.fork()
            except OSError:  # out of processes or memory: make do with fewer helpers
                os.close(read)
                os.close(write)
                break
            if pid == 0:  # a helper: never returns
                for fd in (read, *reads):
                    os.close(fd)
                _helper_main(self, work, write, 2 + n)
            os.close(write)
            reads.append(read)
            self.pids.append(pid)
        if not reads:
            raise OSError("no helper process could be started")
        self._reader = threading.Thread(target=self._read, args=(reads,), daemon=True,
                                        name="facsimile-helpers")
        self._reader.start()
        atexit.register(self.stop)

    # ------------------------------------------------------------ doit's process

    def take(self, instance: str) -> bool:
        """Claim ``instance`` for this process; False when a helper has it."""
        i = self._index.get(instance)
        if i is None:
            return True
        return self._claim(i, _MAIN) == _MAIN

    def outcome(self, instance: str) -> Made | None:
        """Wait for a helper's outcome of an instance it took; ``None`` when the
        helper died before sending it (this process makes the batch then)."""
        i = self._index[instance]
        with self._cond:
            while instance not in self._done and self._claims[i] - 2 not in self._gone:
                self._cond.wait()
            return self._done.pop(instance, None)

    def received(self) -> dict[str, Made]:
        """The outcomes sent and not yet waited for (taken: a run stopped early saves
        them before the database is written)."""
        with self._cond:
            got = {i: m for i, m in self._done.items() if m is not None}
            self._done.clear()
        return got

    def finish(self, timeout: float = 10.0) -> None:
        """Stop the helpers that still run and wait (up to ``timeout`` seconds) for
        what they send as they stop (:meth:`received` has it then)."""
        if not self._reader.is_alive():
            return
        for pid in list(self.pids):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        self._reader.join(timeout)

    def stop(self) -> None:
        """Stop the helpers that still run, and reap them."""
        pids, self.pids = self.pids, []
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)

    def _claim(self, i: int, who: int) -> int:
        with self._lock:
            if self._claims[i] == _FREE:
                self._claims[i] = who
            return self._claims[i]

    def _read(self, fds: list[int]) -> None:
        """Collect the helpers' outcomes as they come (so that none waits on a full
        pipe); when all have ended, reap them."""
        import selectors

        buffers = {fd: b"" for fd in fds}
        helper_of = {fd: n for n, fd in enumerate(fds)}
        with selectors.DefaultSelector() as sel:
            for fd in fds:
                sel.register(fd, selectors.EVENT_READ)
            while buffers:
                for key, _ in sel.select():
                    fd = key.fd
                    chunk = os.read(fd, 1 << 20)
                    buf = buffers[fd] + chunk
                    got = []
                    while len(buf) >= _HEAD.size:
                        size = _HEAD.unpack_from(buf)[0]
                        if len(buf) < _HEAD.size + size:
                            break
                        got.append(pickle.loads(buf[_HEAD.size:_HEAD.size + size]))
                        buf = buf[_HEAD.size + size:]
                    buffers[fd] = buf
                    with self._cond:
                        for instance, made in got:
                            self._done[instance] = made
                        if not chunk:  # the helper ended (or died mid-message)
                            sel.unregister(fd)
                            os.close(fd)
                            del buffers[fd]
                            self._gone.add(helper_of[fd])
                        self._cond.notify_all()
        pids, self.pids = self.pids, []
        for pid in pids:
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
        atexit.unregister(self.stop)


PIPE_SIZE = 1 << 20  # bytes a helper may send before doit's process reads them


def _widen(fd: int) -> None:
    """Give a helper's pipe room for many batches' outcomes (Linux; 64 KiB otherwise):
    doit's process reads them in a thread that waits for its turn at the interpreter,
    and a helper blocked on a full pipe makes nothing meanwhile."""
    with contextlib.suppress(ImportError, AttributeError, OSError):
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)  # type: ignore[attr-defined]


def _stop_helper(signum: int, frame: Any) -> None:
    """A helper's signal handler: unwind (a write in progress removes its temporary
    file; the batch in progress is sent as far as it got), then exit. Once: Ctrl-C
    and doit's process stopping it both signal it, and a second signal during the
    unwinding would leave the temporary file."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def _helper_main(helper: Helper, work: Callable[[Batch], Made], fd: int, me: int) -> None:
    """A helper process: claim from the end, make, send; then exit without running
    anything of doit's process (its atexit handlers, its buffered output)."""
    code = 0
    try:
        signal.signal(signal.SIGINT, _stop_helper)  # Ctrl-C, or stopped by doit's process:
        signal.signal(signal.SIGTERM, _stop_helper)  # no temporary file left behind
        gc.disable()  # short-lived, and spares copying pages shared with the parent
        with os.fdopen(fd, "wb") as out:
            for i in range(len(helper.plan) - 1, -1, -1):
                batch = helper.plan[i]
                if helper._claim(i, me) != me:
                    continue
                made: Made | None
                try:
                    made = work(batch)
                except Interrupted as stopped:
                    made = stopped.made  # sent as far as it got, then stop
                except Exception:
                    made = None  # doit's process makes it again, and reports the error
                body = pickle.dumps((batch.instance, made), protocol=pickle.HIGHEST_PROTOCOL)
                out.write(_HEAD.pack(len(body)) + body)
                out.flush()
                if made is None or made.partial:
                    break
    except BaseException:
        code = 1
    finally:
        os._exit(code)
