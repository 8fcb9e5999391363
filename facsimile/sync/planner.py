"""Planning one destination: ``plan_host`` compares the build with what the
destination holds now, and lists the puts and the deletes in a ``HostPlan``.
Nothing is changed here.

What the destination holds comes from one survey (``Destination.survey``:
its manifest and pending record, and the size, mtime and mode of every file
in the folders involved, temporary files included), held against
what the manifest recorded when facsimile last put each file (rsync's quick
check): a file whose size or mtime moved since is read back (one digest
command for all of them) and put again if its content differs; a file removed
or given another mode is put again. ``checksum`` reads back every file
instead. A file in an owned folder that facsimile never wrote is deleted and
named as not ours. A no-op is that one survey (over ssh: SFTP requests sent at
once, or for a host of many files one command). The
listing covers ``.facsimile/`` too, so that a lock left there is seen.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..globs import matches
from .destinations.base import Destination, Entry, in_roots, is_tmp_name, listing_roots
from .manifest import LOCK, MANIFEST, PENDING, Manifest, Records, parse_record
from .scan import LocalFile

#: put reasons that are the host's doing (drift), not the build's
DRIFT = ("removed on the host", "edited on the host")


@dataclass
class Put:
    """A file to put and why: ``new``, ``changed`` or ``mode`` (the build), or
    drift at the host (``removed on the host``, ``edited on the host``, ``mode
    644 on the host, 600 synced``)."""

    file: LocalFile
    reason: str

    @property
    def drift(self) -> bool:
        """Whether the host, not the build, made this put needed."""
        return self.reason in DRIFT or self.reason.endswith("synced")


@dataclass
class HostPlan:
    """What one destination needs: puts, deletes, and what stays."""

    target: str
    host: str
    url: str
    puts: list[Put] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    #: deletes of files in owned folders that facsimile never wrote
    foreign: list[str] = field(default_factory=list)
    unchanged: int = 0
    manifest: Records = field(default_factory=dict)
    files: dict[str, LocalFile] = field(default_factory=dict)
    #: what a killed sync may have put (its pending record): facsimile's own too
    pending: Records = field(default_factory=dict)
    #: the manifest's owner, family, lineage and serial, and its bytes as read
    meta: dict[str, Any] = field(default_factory=dict)
    raw: bytes | None = None
    #: what the listing showed of each file (the manifest records it)
    seen: dict[str, Entry] = field(default_factory=dict)
    #: sha256 of files read back at the host (quick check suspects, --checksum)
    digests: dict[str, str | None] = field(default_factory=dict)
    #: temporary files (``.NAME.facsimile-tmp``) the listing showed: a killed sync's
    leftovers: list[str] = field(default_factory=list)
    #: the listing showed ``.facsimile/lock``: another sync's, or a killed one's
    locked: bool = False

    @property
    def changes(self) -> bool:
        """Whether carrying the plan out puts or deletes anything."""
        return bool(self.puts or self.deletes)

    @property
    def drift(self) -> list[str]:
        """One line per file changed at the host behind the manifest's back."""
        return [f"{p.file.rel}: {p.reason}" for p in self.puts if p.drift]


def plan_host(
    dest: Destination,
    files: Mapping[str, LocalFile],
    owned: list[str],
    exclude: list[re.Pattern[str]],
    target: str,
    host: str,
    url: str,
    doc: Manifest | None = None,
    checksum: bool = False,
) -> HostPlan:
    """Puts and deletes for one destination against what it holds now (see the
    module's docstring); nothing is changed here.

    ``owned``: folders whose files the build lacks are deleted (unless
    ``exclude`` matches them). ``doc``: the destination's manifest, when already
    read. ``checksum``: compare every file's content, not size and mtime.
    """
    doc, pending, listing, digests = _look(dest, files, owned, doc, checksum)
    manifest = doc.files
    plan = HostPlan(target, host, url, manifest=manifest, files=dict(files), pending=pending,
                    meta=doc.meta, raw=doc.raw)
    plan.locked = LOCK in listing
    plan.seen = {rel: e for rel, e in listing.items() if rel in files}
    plan.leftovers = sorted(rel for rel in listing
                            if is_tmp_name(posixpath.basename(rel)) and rel not in files)
    suspects = [rel for rel in sorted(files)
                if rel in listing and rel in manifest
                and manifest[rel].get("digest") == files[rel].digest
                and (checksum or _moved(manifest[rel], listing[rel]))]
    if checksum:
        plan.digests = {rel: digests.get(rel) for rel in suspects}
    else:
        plan.digests = dest.digests(suspects) if suspects else {}
    for rel, f in sorted(files.items()):
        reason = _reason(f, manifest.get(rel), listing.get(rel), plan.digests, dest.has_modes)
        if reason:
            plan.puts.append(Put(f, reason))
        else:
            plan.unchanged += 1
    # files an earlier sync put, even one killed before its manifest
    gone = {rel for rel in (*manifest, *pending) if rel not in files}
    foreign = {rel for rel in listing
               if rel not in files and rel not in gone and not rel.startswith(".facsimile/")
               and any(in_roots(rel, [o]) for o in owned)}
    plan.deletes = sorted(rel for rel in gone | foreign if not matches(rel, exclude))
    plan.foreign = [rel for rel in plan.deletes if rel in foreign]
    return plan


def _look(dest: Destination, files: Mapping[str, LocalFile], owned: list[str],
          doc: Manifest | None, checksum: bool,
          ) -> tuple[Manifest, Records, dict[str, Entry], dict[str, str | None]]:
    """One survey of ``dest``: its manifest (unless ``doc`` is it already), its
    pending record, the listing of every folder involved, and with ``checksum``
    the digest of every file of the build. A folder only the records name (a
    folder the build no longer has) is listed after, when there is one."""
    roots = listing_roots([*files, LOCK], owned)  # a lock left there is seen
    asked = [PENDING] if doc is not None else [MANIFEST, PENDING]
    survey = dest.survey(asked, roots, sorted(files) if checksum else [], len(files),
                         folders={posixpath.dirname(rel) for rel in files})
    if doc is None:
        doc = parse_record(dest, MANIFEST, survey.records[MANIFEST])
    pending = parse_record(dest, PENDING, survey.records[PENDING]).files
    more = [r for r in listing_roots([*files, *doc.files, *pending], owned) if r not in roots]
    listing = {**survey.listing, **dest.listing(more)} if more else survey.listing
    return doc, pending, listing, survey.digests


def _moved(rec: Mapping[str, Any], e: Entry) -> bool:
    """Whether the quick check doubts a file: its size or mtime is not what the
    manifest recorded at the last put (or the manifest recorded neither)."""
    return rec.get("size") != e.size or rec.get("mtime") != e.mtime


def _reason(f: LocalFile, rec: Mapping[str, Any] | None, e: Entry | None,
            digests: Mapping[str, str | None], has_modes: bool) -> str | None:
    """Why ``f`` must be put, given its manifest record ``rec`` and what the
    listing showed (``e``); None when it is in place."""
    if e is None:
        return "removed on the host" if rec is not None else "new"
    if rec is None:
        return "new"
    if rec.get("digest") != f.digest:
        return "changed"
    if f.rel in digests and digests[f.rel] != f.digest:
        return "edited on the host"
    if has_modes and e.mode is not None and e.mode != f.mode:
        want = rec.get("mode")
        return f"mode {e.mode:o} on the host, {f.mode:o} synced" if want == f.mode else "mode"
    return None
