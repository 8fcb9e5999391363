"""Named points of a sync and a rollback where a test has this process killed
(``kill -9``), to show that a kill anywhere leaves each host whole and the next
run finishes or restores it. ``FACSIMILE_KILL_AT=NAME[:N]`` kills the process
the N-th time (default the first) it reaches point ``NAME``; unset, a point
costs one dictionary lookup.

Points: ``kept`` (a sync kept its generation, before its first put), ``put``
(after each file put to a folder), ``manifest`` (every put and delete done,
before the manifest), ``check`` (before a host's health check), ``move``
(after each file a rollback moved back into a folder), ``restored`` (a
rollback's files back, before the older manifest).
"""

from __future__ import annotations

import os
import signal

_AT = os.environ.get("FACSIMILE_KILL_AT", "")
_NAME, _, _NTH = _AT.partition(":")
_seen: dict[str, int] = {}


def reached(name: str) -> None:
    """Count one more pass of point ``name``; kill this process if it is the one asked for."""
    if not _AT or name != _NAME:
        return
    _seen[name] = _seen.get(name, 0) + 1
    if _seen[name] == int(_NTH or 1):
        os.kill(os.getpid(), signal.SIGKILL)
