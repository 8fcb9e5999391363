"""What ``facs sync --slice I/N --engine dask --scheduler ADDRESS`` asks of a
sync, kept together so that ``run_sync`` takes one argument for it: which
slice of the hosts (``slices``) and which engine runs their jobs (``engines``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .engines import Engine, host_regions, make_engine
from .jobs import DEFAULT_JOBS
from .slices import Slice

if TYPE_CHECKING:
    from ..define import Instance


@dataclass(frozen=True)
class Fleet:
    """A slice of the hosts (None: all) and an engine name with its scheduler."""

    part: Slice | None = None
    engine: str = "threads"
    scheduler: str | None = None

    def resolve(self, inst: Instance,
                deploy: Mapping[str, Any]) -> tuple[Slice | None, Engine | None]:
        """The slice and the engine for ``inst`` (None: the local thread pool)."""
        threads = int(deploy.get("jobs") or DEFAULT_JOBS)
        return self.part, make_engine(self.engine, self.scheduler,
                                      regions=host_regions(inst), threads=threads)
