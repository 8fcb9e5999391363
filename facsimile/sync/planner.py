"""Planning one destination: ``plan_host`` compares the build's digests and
modes with what the destination's manifest (or, for check and repair, the
destination itself) says, and lists the puts and the deletes in a
``HostPlan``; ``find_drift`` lists what changed at the destination behind the
manifest's back. Nothing is changed here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..globs import matches
from .destinations.base import Destination
from .manifest import Manifest, Records, read_manifest_doc, read_pending
from .scan import LocalFile


@dataclass
class Put:
    """A file to put and why: ``new``, ``missing``, ``changed`` or ``mode``."""

    file: LocalFile
    reason: str


@dataclass
class HostPlan:
    """What one destination needs: puts, deletes, and what stays."""

    target: str
    host: str
    url: str
    puts: list[Put] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    unchanged: int = 0
    manifest: Records = field(default_factory=dict)
    files: dict[str, LocalFile] = field(default_factory=dict)
    #: what a killed sync may have put (its pending record): facsimile's own too
    pending: Records = field(default_factory=dict)
    #: the manifest's owner, family, lineage and serial, and its bytes as read
    meta: dict[str, Any] = field(default_factory=dict)
    raw: bytes | None = None

    @property
    def changes(self) -> bool:
        """Whether carrying the plan out puts or deletes anything."""
        return bool(self.puts or self.deletes)


def plan_host(
    dest: Destination,
    files: Mapping[str, LocalFile],
    owned: list[str],
    exclude: list[re.Pattern[str]],
    target: str,
    host: str,
    url: str,
    actual: Mapping[str, str | None] | None = None,
    actual_modes: Mapping[str, int | None] | None = None,
    doc: Manifest | None = None,
) -> HostPlan:
    """Puts and deletes for one destination; nothing is changed here.

    ``owned``: folders whose files the build lacks are deleted (unless
    ``exclude`` matches them). ``actual``, ``actual_modes``: digests and modes
    read from the destination (check and repair) instead of the manifest's.
    ``doc``: the destination's manifest, when already read.
    """
    doc = read_manifest_doc(dest) if doc is None else doc
    manifest = doc.files
    pending = read_pending(dest)
    plan = HostPlan(target, host, url, manifest=manifest, files=dict(files), pending=pending,
                    meta=doc.meta, raw=doc.raw)
    for rel, f in sorted(files.items()):
        seen = manifest.get(rel)
        if actual is not None:
            have = actual.get(rel)
            mode = (actual_modes or {}).get(rel)
        else:
            have = (seen or {}).get("digest")
            mode = (seen or {}).get("mode")
        if have is None:
            plan.puts.append(Put(f, "missing" if actual is not None and seen else "new"))
        elif have != f.digest:
            plan.puts.append(Put(f, "changed"))
        elif dest.has_modes and (actual is None or mode is not None) and mode != f.mode:
            plan.puts.append(Put(f, "mode"))
        else:
            plan.unchanged += 1
    # files an earlier sync put, even one killed before its manifest
    gone = {rel for rel in (*manifest, *pending) if rel not in files}
    for folder in owned:
        gone |= {rel for rel in dest.find(folder)
                 if rel not in files and not rel.startswith(".facsimile/")}
    plan.deletes = sorted(rel for rel in gone if not matches(rel, exclude))
    return plan


def find_drift(manifest: Mapping[str, Mapping[str, Any]], actual: Mapping[str, str | None],
               modes: Mapping[str, int | None]) -> list[str]:
    """One line per file of ``manifest`` removed, edited or given another mode at
    the destination (``actual`` digests and ``modes`` read from there)."""
    drift = []
    for rel in sorted(manifest):
        if actual.get(rel) is None:
            drift.append(f"{rel}: removed on the host")
        elif actual[rel] != manifest[rel].get("digest"):
            drift.append(f"{rel}: edited on the host")
    for rel in sorted(manifest):
        mode, want = modes.get(rel), manifest[rel].get("mode")
        if mode is not None and want is not None and mode != want:
            drift.append(f"{rel}: mode {mode:o} on the host, {want:o} synced")
    return drift
