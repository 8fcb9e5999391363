"""Sync: push ``BUILD/<instance>/`` to every host of its targets, only what differs.

Each destination is an fsspec filesystem (``file://``, ``sftp://`` through the
``sshfs`` package, ``s3://`` through ``s3fs``), one backend per module under
``destinations/``. A manifest at the destination, ``.facsimile/manifest.json``,
records what facsimile wrote (``manifest``). A sync plans before it acts: it
scans the build (``scan``), decides which host gets which file
(``placement``), compares with what each host holds now, one listing per host
held against the manifest, and lists the puts and the deletes (``planner``;
``saved`` writes and checks a saved plan), then, unless a dry run, carries the
plan out crash-safely with the manifest last (``apply``), under the
destination's lock (``lock``), unless ``guard`` refuses the host (another
instance owns it, or the state has another lineage or an older serial than the
manifest records). ``jobs`` decides
which host gets which files and runs the hosts in parallel (``host`` syncs
one); ``run`` is the entry point for a loaded project. This package imports
neither the command line nor the build's tasks.
"""

from __future__ import annotations

from .jobs import sync_instance
from .run import run_sync

__all__ = ["run_sync", "sync_instance"]
