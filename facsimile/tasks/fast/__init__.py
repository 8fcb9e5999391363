"""The fast path of a run: who calls "make this output", nothing else.

A batched run (:mod:`facsimile.tasks.mode`) makes stale outputs in a few doit
tasks rather than one each (:mod:`.batch`), shares large runs with forked
helper processes (:mod:`.pool`), and saves each output's record under its
own task name itself, as doit would. The database backend (:mod:`.doitdb`)
writes only what changed. ``FACSIMILE_FAST=0`` switches batching and helpers
off; the outputs and their records are the same.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FastRun", "batch_action", "stale_action"]


def __getattr__(name: str) -> Any:
    """:mod:`.batch`'s names, imported when first asked for: doit loads the
    database backend (:mod:`.doitdb`) before it reads ``dodo.py``, and a no-op
    answered by :mod:`facsimile.noop` needs nothing else of this package."""
    if name in __all__:
        from . import batch

        return getattr(batch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
