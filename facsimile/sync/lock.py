"""The destination lock: ``hold`` creates ``.facsimile/lock`` exclusively (the
backend's ``create_exclusive``: on a folder and over SFTP written whole to a
temporary name, then hard-linked in, which fails if the lock is there; a
conditional put on S3) for as long as a sync applies its plan there, and
removes it after: one create and one delete per host that needs puts or
deletes. A lock is never seen empty, even when its writer was killed. A lock
held by another sync makes this one wait, polling with backoff, up to
``WAIT`` seconds, then fail that host naming the holder (user@host pid) and
the lock's age. A lock left by a sync that was killed on
this machine (its pid is gone) is taken over; one left elsewhere is removed
by hand. A sync with nothing to do takes no lock, but removes one it finds
that a killed sync of this machine left (``clear_dead``): a sync killed after
its manifest, before its lock was removed, leaves nothing else to do.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

from ..errors import SyncError
from .destinations.base import Destination
from .manifest import LOCK

WAIT = 8.0  # seconds a sync waits for another one's lock
FIRST_POLL = 0.1  # seconds before the first retry; doubled each time up to MAX_POLL
MAX_POLL = 1.0


def _me() -> dict[str, Any]:
    return {"user": getpass.getuser(), "host": socket.gethostname(), "pid": os.getpid(),
            "time": time.time()}


def _holder(dest: Destination) -> dict[str, Any] | None:
    """What the lock says about its holder; None if it is gone (or unreadable: {})."""
    data = dest.read(LOCK)
    if data is None:
        return None
    try:
        doc = json.loads(data)
        return doc if isinstance(doc, dict) else {}
    except ValueError:
        return {}


def _dead_here(holder: dict[str, Any]) -> bool:
    """Whether the holder ran on this machine and its process is gone (killed)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def describe(holder: dict[str, Any]) -> str:
    """``user@host pid N, taken Ns ago`` (what is known of it)."""
    who = f"{holder.get('user', '?')}@{holder.get('host', '?')} pid {holder.get('pid', '?')}"
    when = holder.get("time")
    if isinstance(when, int | float):
        who += f", taken {max(0, time.time() - when):.0f}s ago"
    return who


def clear_dead(dest: Destination) -> bool:
    """Remove the lock if a sync of this machine that is gone (killed) left it;
    whether it did."""
    return _remove_if_dead(dest, _holder(dest))


def _remove_if_dead(dest: Destination, holder: dict[str, Any] | None) -> bool:
    if holder is None or not _dead_here(holder):
        return False
    dest.remove(LOCK)
    return True


@contextlib.contextmanager
def hold(dest: Destination, wait: float = WAIT) -> Iterator[None]:
    """Hold the destination's lock for the block (see the module's docstring)."""
    mine = (json.dumps(_me()) + "\n").encode()
    deadline = time.monotonic() + wait
    pause = FIRST_POLL
    while not dest.create_exclusive(LOCK, mine):
        holder = _holder(dest)
        if _remove_if_dead(dest, holder):  # a killed sync's, on this machine
            continue
        if time.monotonic() + pause > deadline:
            raise SyncError(f"{dest.label}: another sync holds the destination's lock "
                            f"({describe(holder or {})}); waited {wait:.0f}s: try again "
                            "when it is done, or, if no sync is running there, remove "
                            f"{LOCK} at the destination")
        time.sleep(pause)
        pause = min(pause * 2, MAX_POLL)
    try:
        yield
    finally:
        dest.remove(LOCK)
