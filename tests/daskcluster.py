"""A real dask.distributed cluster on 127.0.0.1 for the fleet tests: ``dask
scheduler`` and two ``dask worker --nthreads 1`` processes (``w-any``, and
``w-ch1`` with ``--resources region-ch1=1``), started by the fixture and
stopped by it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import free_port, not_quick, stop, wait_port

DASK = str(Path(sys.executable).parent / "dask")
WORKERS = {"w-any": [], "w-ch1": ["--resources", "region-ch1=1"]}


class DaskCluster:
    """The scheduler's address, and the worker processes by name."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.scheduler = subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(self.port),
             "--no-dashboard"], cwd=folder,
            stdout=subprocess.DEVNULL, stderr=(folder / "scheduler.log").open("ab"))
        self.workers: dict[str, subprocess.Popen] = {}

    def start_worker(self, name: str) -> None:
        """Start worker ``name`` (no nanny: its pid is the worker's) and wait for it."""
        self.workers[name] = subprocess.Popen(
            [DASK, "worker", self.address, "--nthreads", "1", "--no-nanny",
             "--no-dashboard", "--host", "127.0.0.1", "--name", name, *WORKERS[name]],
            cwd=self.folder, stdout=subprocess.DEVNULL,
            stderr=(self.folder / f"{name}.log").open("ab"))
        self.wait()

    def wait(self) -> None:
        """Wait until every running worker is known to the scheduler."""
        with self.client() as client:
            client.wait_for_workers(len(self.workers), timeout=90)

    def client(self) -> Any:  # a distributed.Client
        import distributed

        return distributed.Client(self.address, timeout="60s", set_as_default=False)

    def addresses(self) -> dict[str, str]:
        """Worker name -> address."""
        with self.client() as client:
            workers = client.scheduler_info(n_workers=-1)["workers"]
        return {w["name"]: addr for addr, w in workers.items()}

    def stop(self) -> None:
        for proc in self.workers.values():
            stop(proc)
        stop(self.scheduler)


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory,
                 request: pytest.FixtureRequest) -> Iterator[DaskCluster]:
    not_quick(request, "a dask cluster")
    pytest.importorskip("distributed")
    cluster = DaskCluster(tmp_path_factory.mktemp("dask"))
    try:
        wait_port(cluster.port, cluster.scheduler, seconds=60)
        for name in WORKERS:
            cluster.start_worker(name)
        yield cluster
    finally:
        cluster.stop()
