"""An instance's ``refs.json`` in a store: the blobs each kept serial of its
manifests uses, and the collection of blobs that no instance's kept serials use.
Written by ``facs publish`` (:mod:`.publish`), in the order its docstring gives.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from ..errors import SyncError
from . import bundle as B
from .store import Store


def read(store: Store, instance: str) -> dict[str, list[str]]:
    """``{serial: [blob sha, ...]}`` of ``instance``'s ``refs.json`` ({} when absent)."""
    data = store.read(f"{instance}/{B.REFS}")
    try:
        refs = json.loads(data)["serials"] if data else {}
        return {str(k): list(v) for k, v in refs.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise SyncError(f"{store.where(instance + '/' + B.REFS)} is damaged: nothing "
                        "was published (remove it and publish again)") from None


def write(store: Store, instance: str, refs: dict[str, list[str]]) -> None:
    """Replace ``instance``'s ``refs.json`` with ``refs``, serials in order."""
    doc = {"format": B.FORMAT, "serials": dict(sorted(refs.items(), key=lambda i: int(i[0])))}
    store.write(f"{instance}/{B.REFS}", (json.dumps(doc, indent=1) + "\n").encode())


def collect(store: Store, blobs: set[str], out: Callable[[str], None]) -> int:
    """Delete the blobs that no instance's kept serials use; how many. An instance
    folder without ``refs.json`` stops the collection (its blobs are unknown)."""
    used: set[str] = set()
    for name in store.folders():
        if name in (B.BLOBS, ".facsimile"):
            continue
        data = store.read(f"{name}/{B.REFS}")
        if data is None:
            out(f"note: {store.where(name)} has no {B.REFS}: no blob collected this time")
            return 0
        for shas in read(store, name).values():
            used.update(shas)
    dead = sorted(b for b in blobs if b.removeprefix(B.BLOBS + "/") not in used)
    store.delete(dead)
    return len(dead)
