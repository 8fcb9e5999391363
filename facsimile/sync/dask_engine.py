"""``facs sync --engine dask --scheduler tcp://HOST:8786``: the per-host jobs of a
sync on the workers of a ``dask.distributed`` cluster (``facsimile[dask]``).

- Files: the client reads each distinct file of the build once; a task carries
  the bytes of the distinct files its hosts need (keyed by digest), so a
  worker gets a file once per batch at most, not once per host, and only the
  files of the hosts it syncs. The bytes travel with the task, not as data
  scattered to one worker: a task run again after its worker was lost still
  has them (scattered data dies with its worker, and every task needing it
  would be cancelled). On the worker a batch writes them to a private
  temporary folder (0700, files 0600), syncs, and removes it.
- Jobs: each task is a batch of hosts (``batch_size``: about two batches per
  worker thread that may take them, so that dask is not handed thousands of
  tiny tasks); a batch runs its hosts ``deploy.jobs`` at once on the worker.
  The job function travels with cloudpickle (by reference to the installed
  facsimile; its arguments are plain data).
- Placement: a host of region R (``engines.host_regions``) is a task that needs
  the resource ``region-R`` when some worker has it (``dask worker
  --resources region-R=1``), so it runs only there; otherwise anywhere.
- Results: per batch, as each finishes (``as_completed``); each host's
  progress lines, captured on the worker, are printed then, with the address
  of the worker that ran it. A worker lost mid-batch has its batch run again
  on another worker by the scheduler (its ``allowed-failures``); a batch that
  raised is tried once more (``retries=1``): a sync is idempotent (renames,
  manifest last, the lock of a killed process taken over or removed), so a
  host is old or new and counted once, from the one result the client takes;
  that batch is then released, so that a worker lost after it finished does
  not make the scheduler run it again behind the count. A batch that fails
  for good fails its hosts. A host whose region's only workers are all lost
  waits for one to join.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import distributed

from ..errors import SyncError
from .destinations.base import write_all
from .engines import Out, RunnerFactory
from .host import HostResult, Job

MAX_BATCH = 64  # hosts in one task at most


class DaskEngine:
    """Runs the jobs on the dask cluster whose scheduler is at ``address``."""

    def __init__(self, address: str, *, regions: Mapping[str, str | None],
                 threads: int = 8) -> None:
        self.address = address
        self.regions = dict(regions)
        self.threads = max(1, threads)

    def run(self, jobs: list[Job], make_one: RunnerFactory, out: Out) -> Iterator[HostResult]:
        """Submit the jobs in batches; yield each host's result as its batch finishes."""
        try:
            client = distributed.Client(self.address, timeout="20s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise SyncError(f"cannot reach the dask scheduler at {self.address}: "
                            f"{type(exc).__name__}: {exc}") from exc
        try:
            yield from self._run(client, jobs, make_one, out)
        finally:
            client.close()

    def _run(self, client: Any, jobs: list[Job], make_one: RunnerFactory,
             out: Out) -> Iterator[HostResult]:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        if not workers:
            raise SyncError(f"the dask scheduler at {self.address} has no workers "
                            "(start some: dask worker ADDRESS --resources region-R=1)")
        contents = _read_files(jobs)
        batches: dict[Any, list[Job]] = {}
        for resource, group in _placed(jobs, self.regions, workers, out).items():
            size = batch_size(len(group), _threads(workers, resource))
            for i in range(0, len(group), size):
                batch = group[i:i + size]
                needed = {d: contents[d] for j in batch for d in _digests(j)}
                future = client.submit(run_batch, make_one, batch, needed, self.threads,
                                       resources={resource: 1} if resource else None,
                                       retries=1, pure=False,
                                       key=f"facsimile-sync-{batch[0].host}-{i}-"
                                           f"{os.urandom(4).hex()}")
                batches[future] = batch
        for future in distributed.as_completed(list(batches), loop=client.loop):
            batch = batches.pop(future)
            try:
                done = future.result()
            except Exception as exc:  # the batch failed for good: its hosts failed
                reason = f"on the dask cluster: {type(exc).__name__}: {exc}"
                for job in batch:
                    yield HostResult(job.target, job.host, False, reason)
                continue
            finally:
                future.release()  # counted: never run again should its worker be lost
            for result, lines in done:
                for line in lines:
                    out(line)
                out(f"  {result.target}/{result.host}: on worker {result.worker}")
                yield result


def batch_size(hosts: int, threads: int) -> int:
    """Hosts per task: about two tasks per worker thread, 1 to ``MAX_BATCH``."""
    return max(1, min(MAX_BATCH, math.ceil(hosts / max(1, 2 * threads))))


def _threads(workers: Mapping[str, Any], resource: str | None) -> int:
    """Worker threads that may run a task needing ``resource`` (None: any)."""
    return sum(int(w.get("nthreads", 1)) for w in workers.values()
               if resource is None or resource in (w.get("resources") or {}))


def _placed(jobs: list[Job], regions: Mapping[str, str | None], workers: Mapping[str, Any],
            out: Out) -> dict[str | None, list[Job]]:
    """The jobs by the resource their tasks need: ``region-R`` for a host of region
    R when some worker offers it, else None (any worker)."""
    offered = {r for w in workers.values() for r in (w.get("resources") or {})}
    groups: dict[str | None, list[Job]] = {}
    unplaced: set[str] = set()
    for job in jobs:
        region = regions.get(job.host)
        resource = f"region-{region}" if region else None
        if resource is not None and resource not in offered:
            unplaced.add(region or "")
            resource = None
        groups.setdefault(resource, []).append(job)
    if unplaced:
        out(f"note: no dask worker offers region(s) {', '.join(sorted(unplaced))} "
            "(dask worker --resources region-R=1): their hosts run on any worker")
    return groups


def _digests(job: Job) -> set[str]:
    return {f.digest for f in job.files.values()}


def _read_files(jobs: list[Job]) -> dict[str, bytes]:
    """Each distinct file of the jobs, read once: digest -> bytes."""
    contents: dict[str, bytes] = {}
    for job in jobs:
        for f in job.files.values():
            if f.digest not in contents:
                contents[f.digest] = Path(f.path).read_bytes()
    return contents


def run_batch(make_one: RunnerFactory, jobs: list[Job], contents: Mapping[str, bytes],
              threads: int) -> list[tuple[HostResult, list[str]]]:
    """On a worker: write the batch's files to a private folder, sync each job
    (``threads`` at once), and return each result with its progress lines."""
    address = distributed.get_worker().address
    folder = tempfile.mkdtemp(prefix="facsimile-sync-")  # 0700
    try:
        paths = {}
        for digest, data in contents.items():
            path = os.path.join(folder, digest)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                write_all(fd, data)
            finally:
                os.close(fd)
            paths[digest] = path
        local = [replace(job, files={rel: replace(f, path=paths[f.digest])
                                     for rel, f in job.files.items()}) for job in jobs]

        def one(job: Job) -> tuple[HostResult, list[str]]:
            lines: list[str] = []
            result = make_one(lines.append)(job)
            result.worker = address
            return result, lines

        with ThreadPoolExecutor(max_workers=max(1, min(threads, len(local)))) as pool:
            return list(pool.map(one, local))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
