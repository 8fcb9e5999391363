"""Carrying a ``HostPlan`` out, crash-safely (``apply_host``).

Why the manifest can be trusted after a crash: it is only ever replaced after
every put and delete it describes has completed. A sync killed half way leaves
the previous manifest, so every file it had already put still differs from
that manifest and is put again (idempotently) by the next sync; every delete
is attempted again. Each file is at any moment either its old or its new
content, since it only changes by a rename (or an atomic S3 put). A file the
killed sync put that the next build no longer has is still found: before its
first put, a sync records its planned puts (and any earlier pending record) in
``.facsimile/pending.json`` and removes that record after the manifest.
A temporary file gets its final mode before any content, so a 0600 secret is
never readable by others on the way.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable, Mapping
from typing import Any

from . import generations, killpoints
from .destinations.base import Destination, Entry
from .manifest import MANIFEST, OWNER, PENDING, document, record
from .planner import HostPlan


def apply_host(dest: Destination, plan: HostPlan, out: Callable[[str], None],
               meta: Mapping[str, Any] | None = None,
               keep: generations.Stamp | None = None) -> int:
    """Carry the plan out; the manifest last, recording ``meta`` (owner and state;
    the old manifest's when None). Returns bytes sent. ``keep``: a plan that
    changes something makes the destination's next generation, keeping what it
    replaces and deletes (see ``generations``); None or ``keep.keep == 0``: none.

    Before the first put, ``.facsimile/pending.json`` records any earlier
    pending record and every planned put: should this sync be killed
    before its manifest, the next one still knows each file it may have put
    (and deletes it if the build no longer has it). Temporary files a killed
    sync left in the folders written to are removed. Where nothing else changes
    at the destination before the puts or after them, a backend that can
    (ssh) puts both records with the files, in the same order, in one go.
    """
    progress = _Progress(plan, out)
    keeping = keep is not None and bool(keep.keep) and plan.changes
    # where nothing changes at the destination before the puts (no generation keeps
    # anything) and nothing after them but the records (no delete), a backend may
    # put the records with the files in one go (see Destination.put_recorded)
    together = bool(plan.puts) and not plan.deletes and not (
        keeping and generations.keeps_any(plan))
    pending = _pending(plan) if plan.puts else b""
    if plan.puts and not together:
        dest.write_bytes(PENDING, pending)
    _remove_leftovers(dest, plan)
    made = generations.keep_before(dest, plan, keep) if keeping else None
    killpoints.reached("kept")
    meta = {k: v for k, v in (plan.meta if meta is None else meta).items() if v is not None}
    meta.update({k: v for k, v in plan.meta.items() if k not in OWNER})  # the generations
    if made is not None:
        meta.update(generations.meta_after(plan, keep, made, meta.get("serial")))
    seen = dict(plan.seen)
    written = False  # whether the manifest went with the puts
    if plan.puts:
        files = [p.file for p in plan.puts]
        after = dest.put_recorded(files, progress, (PENDING, pending), (
            MANIFEST, lambda after: document(_manifest(plan, _seen_after(plan, seen, after)),
                                             meta))) if together else None
        written = after is not None
        if not written:
            if together:
                dest.write_bytes(PENDING, pending)
            after = dest.put_many(files, progress)
        seen = _seen_after(plan, seen, after)
    if plan.deletes:
        dest.delete_many(plan.deletes)
    if not written:
        manifest = _manifest(plan, seen)
        killpoints.reached("manifest")
        if plan.changes or manifest != plan.manifest or meta != plan.meta:
            dest.write_bytes(MANIFEST, document(manifest, meta))
        if plan.puts or plan.pending:
            dest.remove(PENDING)
    if made is not None:
        generations.prune(dest, plan.meta, meta)
    return progress.sent


def _seen_after(plan: HostPlan, seen: dict[str, Entry],
                after: Mapping[str, Entry]) -> dict[str, Entry]:
    """``seen`` (what the survey showed) with what the puts left of each file: what
    the next quick check compares."""
    out = dict(seen)
    for p in plan.puts:
        if p.file.rel in after:
            out[p.file.rel] = after[p.file.rel]
        else:
            out.pop(p.file.rel, None)
    return out


def _manifest(plan: HostPlan, seen: Mapping[str, Entry]) -> dict[str, dict[str, Any]]:
    """Every selected file, in place: what facsimile owns at the destination now."""
    return {rel: record(f, seen.get(rel)) for rel, f in plan.files.items()}


def _pending(plan: HostPlan) -> bytes:
    """The pending record: every file this sync or an earlier, killed one may have
    put. Not the old manifest's: it stays in place until the new one replaces
    it, and this sync deletes what the new one drops before it is written."""
    files = dict(plan.pending)
    files.update({p.file.rel: record(p.file) for p in plan.puts})
    return document(files)


def _remove_leftovers(dest: Destination, plan: HostPlan) -> None:
    """Remove temporary files a killed sync left in the folders written to (the
    plan's listing showed them)."""
    if not plan.leftovers:
        return
    folders = {posixpath.dirname(rel)
               for rel in (*(p.file.rel for p in plan.puts), *plan.pending)}
    leftovers = [rel for rel in plan.leftovers if posixpath.dirname(rel) in folders]
    if leftovers:
        dest.delete_many(leftovers)


class _Progress:
    """Counts the bytes sent; every two seconds or more, prints the percentage."""

    def __init__(self, plan: HostPlan, out: Callable[[str], None]) -> None:
        self.label = f"{plan.target}/{plan.host}"
        self.total = sum(p.file.size for p in plan.puts)
        self.out = out
        self.sent = 0
        self.last = time.monotonic()

    def __call__(self, n: int) -> None:
        self.sent += n
        now = time.monotonic()
        if now - self.last > 2 and self.total:
            self.out(f"  {self.label}: {self.sent * 100 // self.total}% of "
                     f"{human_size(self.total)}")
            self.last = now


def human_size(n: int) -> str:
    """``n`` bytes as ``512 B``, ``1.5 kB``, ``2.0 MB`` or ``3.1 GB`` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return f"{n} B"
