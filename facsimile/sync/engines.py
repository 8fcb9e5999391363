"""Who runs the per-host jobs of a sync: an engine takes the jobs and a
``RunnerFactory`` and yields each job's ``HostResult`` as it finishes.

- ``ThreadEngine``: this machine, a thread pool of ``deploy.jobs`` threads (the
  default; what a sync always did).
- ``DaskEngine`` (``sync/dask_engine.py``, ``facsimile[dask]``): the workers of
  a ``dask.distributed`` cluster, a host of region R on a worker started with
  ``--resources region-R=1`` when there is one. Imported only when asked for.

A ``RunnerFactory`` is given the function the host's progress lines go to and
returns the function that syncs one job (``jobs._host_runner``); it is a
module-level function with its arguments bound, so that cloudpickle ships it
to a worker by reference to the installed facsimile plus its plain-data
arguments (the deploy settings, the mode, the state's stamp): no project
object, no project class travels with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Protocol

from ..errors import SyncError
from .host import HostResult, Job

if TYPE_CHECKING:
    from ..define import Instance

Out = Callable[[str], None]
RunnerFactory = Callable[[Out], Callable[[Job], HostResult]]
ENGINES = ("threads", "dask")


class Engine(Protocol):
    """Runs jobs, yielding each one's result as soon as it is known."""

    def run(self, jobs: list[Job], make_one: RunnerFactory, out: Out) -> Iterator[HostResult]:
        """Run every job of ``jobs`` once; yield its result (in no set order)."""
        ...


class ThreadEngine:
    """The jobs on a thread pool of ``workers`` threads of this process; each host
    prints its progress as it goes, one whole line at a time."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)

    def run(self, jobs: list[Job], make_one: RunnerFactory, out: Out) -> Iterator[HostResult]:
        """Run the jobs, ``workers`` at once; yield the results as they finish."""
        lock = threading.Lock()

        def say(line: str) -> None:  # print() writes text and newline apart
            with lock:
                out(line)

        one = make_one(say)
        with ThreadPoolExecutor(max_workers=min(self.workers, max(1, len(jobs)))) as pool:
            for future in as_completed([pool.submit(one, job) for job in jobs]):
                yield future.result()


def host_regions(inst: Instance) -> dict[str, str | None]:
    """Each host's region: the last region its target inherits (``regions/R``),
    else the instance's last one, else None. The same rule as the templates'
    ``hosts[h].region``; a host of two targets takes its first target's."""
    regions: dict[str, str | None] = {}
    for h, t in inst.hosts:
        spec = inst.targets.get(t) or {}
        regions.setdefault(h, (list(spec.get("regions") or []) or inst.regions or [None])[-1])
    return regions


def make_engine(name: str, scheduler: str | None, *, regions: dict[str, str | None],
                threads: int) -> Engine | None:
    """The engine ``facs sync --engine NAME [--scheduler ADDRESS]`` asks for;
    None for the local threads (``sync_instance`` sizes them from ``deploy.jobs``)."""
    if name not in ENGINES:
        raise SyncError(f"unknown sync engine {name!r} (engines: {', '.join(ENGINES)})")
    if name == "threads":
        if scheduler:
            raise SyncError("--scheduler is for --engine dask")
        return None
    if not scheduler:
        raise SyncError("--engine dask needs --scheduler tcp://HOST:PORT (the address "
                        "that `dask scheduler` prints)")
    try:
        from .dask_engine import DaskEngine
    except ImportError as exc:
        raise SyncError(f"--engine dask needs dask.distributed: pip install "
                        f"'facsimile[dask]' ({exc})") from exc
    return DaskEngine(scheduler, regions=regions, threads=threads)
