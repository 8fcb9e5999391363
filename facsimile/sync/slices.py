"""Slices of a fleet: ``facs sync INSTANCE --slice I/N`` syncs the I-th of N
disjoint parts of the instance's destinations, so that N machines (CI runners,
one machine per region) share one push without overlap.

A destination belongs to slice ``sha256(host) mod N + 1`` (the host its job
stands for, ``Job.host``): the same on every machine and in every Python (no
``hash()`` randomisation), independent of the order of the hosts, and a host
stays in its slice when others are added or removed. The union of the N slices
is the whole fleet and no two slices share a destination.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .host import Job

FORM = "I/N with 1 <= I <= N, e.g. 2/5"
_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Slice:
    """The ``index``-th (1-based) of ``count`` slices."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def has(self, host: str) -> bool:
        """Whether ``host`` is in this slice."""
        return slice_of(host, self.count) == self.index


def parse_slice(spec: str) -> Slice:
    """``"2/5"`` -> ``Slice(2, 5)``; ValueError naming the expected form otherwise."""
    m = _SPEC.fullmatch(spec)
    if not m:
        raise ValueError(f"bad slice {spec!r}: expected {FORM}")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or not 1 <= index <= count:
        raise ValueError(f"bad slice {spec!r}: expected {FORM}")
    return Slice(index, count)


def slice_of(host: str, count: int) -> int:
    """The slice (1-based) of ``count`` that ``host`` belongs to."""
    digest = hashlib.sha256(host.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def slice_jobs(jobs: list[Job], part: Slice) -> list[Job]:
    """The jobs whose host is in ``part``, in their order."""
    return [j for j in jobs if part.has(j.host)]
