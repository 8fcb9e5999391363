"""Generations: what a destination keeps of the syncs before its last, so that a
sync can be undone byte for byte (``deploy.keep``, default 3; 0 keeps none).

A sync that changes a destination makes its next generation ``N`` (the
manifest's ``generation``; ``made`` counts every one ever made there, so a
number is never used twice). Before its first put it keeps, in the one folder
``.facsimile/generations/``, the manifest it replaces (``N=manifest.json``)
and every file it will replace or delete, as they are (``N-<path, quoted>``):
a hard link where the destination has them (a folder, sftp), so keeping costs
no copy and keeps the mode; a server-side copy on S3. One flat folder: no
folder to make or remove per generation (each a round trip to a host). A
kept copy is never overwritten: a sync killed half way and run again finds
the copies of the files as they were before either run. The manifest's ``history`` lists the
kept generations (when, by whom, the root's commit, the state serial, how
many files were put and deleted); the oldest beyond ``deploy.keep`` is
removed after the manifest.

``restore`` takes a destination back: first to its own manifest when a sync
was killed or failed there half way (its pending record is there), then one
generation at a time down to the one asked for. Each step reads back the
digest of every file involved, moves the kept copy of each that differs back
into place (a rename), deletes the files the undone generation added (only
ones its manifest lists: facsimile's own), writes the older manifest, and
removes what is left of the generation. Every step can be killed and run
again: a file already back is left alone.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from ..errors import SyncError
from . import killpoints
from .destinations.base import Destination, listing_roots
from .manifest import MANIFEST, PENDING, Manifest, document, parse_record, read_manifest_doc

GENERATIONS = ".facsimile/generations"
#: where a rollback records the generation it goes to (see ``restore``)
ROLLBACK = ".facsimile/rollback.json"
DEFAULT_KEEP = 3


#: kept files a history entry names (``kept``) at most; a larger one is listed
NAMED = 64


def previous_name(n: int) -> str:
    """Where generation ``n`` keeps the manifest it replaced."""
    return f"{GENERATIONS}/{n}=manifest.json"


def kept_name(n: int, rel: str) -> str:
    """Where generation ``n`` keeps the file ``rel`` as it was: the path quoted into
    one name (``=`` and a digest when that would be too long a name)."""
    token = quote(rel, safe="")
    if len(token) > 200:
        token = "=" + hashlib.sha256(rel.encode()).hexdigest()
    return f"{GENERATIONS}/{n}-{token}"


def kept_files(dest: Destination, n: int, known: Iterable[str]) -> dict[str, str]:
    """``{rel: kept name}`` of the files generation ``n`` kept at ``dest`` (one
    listing); ``known``: the paths it may have kept under a digest name."""
    prefix = f"{GENERATIONS}/{n}-"
    names = {name for name in dest.listing([GENERATIONS]) if name.startswith(prefix)}
    found = {unquote(name[len(prefix):]): name for name in names
             if not name[len(prefix):].startswith("=")}
    found.update({rel: kept_name(n, rel) for rel in known if kept_name(n, rel) in names})
    return found


@dataclass(frozen=True)
class Stamp:
    """Who makes the generations of this sync: when, by whom, from which commit,
    and how many a destination keeps."""

    keep: int = DEFAULT_KEEP
    when: str = ""
    by: str = ""
    commit: str | None = None
    #: a health check follows: the generation is recorded unchecked until it passes
    checks: bool = False


def stamp_now(root: Path, keep: int) -> Stamp:
    """The ``Stamp`` of a sync started now from the root ``root``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Stamp(keep, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 f"{user}@{socket.gethostname()}", git_commit(root))


def git_commit(root: Path) -> str | None:
    """The commit the root's git work tree is at (``+`` when it has changes); None
    outside git."""
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], text=True,
                              capture_output=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "-uno"],
                               text=True, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")


def keep_setting(deploy: Mapping[str, Any]) -> int:
    """``deploy.keep``: the generations a destination keeps (0: none)."""
    keep = deploy.get("keep", DEFAULT_KEEP)
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
        raise SyncError(f"deploy.keep must be a whole number of generations, 0 or more "
                        f"(got {keep!r})")
    return keep


def made(meta: Mapping[str, Any]) -> int:
    """How many generations were ever made at the destination whose manifest says ``meta``."""
    return max(int(meta.get("made") or 0), int(meta.get("generation") or 0))


def to_keep(plan: Any) -> list[str]:
    """The files at the destination that the sync of ``plan`` replaces or deletes."""
    return [*(p.file.rel for p in plan.puts if p.file.rel in plan.seen), *plan.deletes]


def keeps_any(plan: Any) -> bool:
    """Whether ``keep_before`` would keep anything at the destination for ``plan``
    (what it replaces or deletes, or an earlier manifest)."""
    return plan.raw is not None or bool(to_keep(plan))


def keep_before(dest: Destination, plan: Any, stamp: Stamp) -> int:
    """Keep what the sync of ``plan`` will replace or delete as its generation;
    that generation's number."""
    n = made(plan.meta) + 1
    pairs = [(rel, kept_name(n, rel)) for rel in to_keep(plan)]
    if plan.raw is not None:
        pairs.append((MANIFEST, previous_name(n)))
    dest.keep_copies(pairs)
    return n


def meta_after(plan: Any, stamp: Stamp, n: int, serial: Any) -> dict[str, Any]:
    """The generation entries of the manifest a sync of ``plan`` writes as generation ``n``."""
    kept = to_keep(plan)
    entry = {"generation": n, "when": stamp.when, "by": stamp.by, "commit": stamp.commit,
             "serial": serial, "put": len(plan.puts), "deleted": len(plan.deletes),
             "previous": plan.raw is not None}
    if len(kept) <= NAMED:
        entry["kept"] = sorted(kept)
    if stamp.checks:
        entry["checked"] = False
    history = [h for h in plan.meta.get("history", []) if isinstance(h, dict)]
    return {"generation": n, "made": n, "history": [*history, entry][-max(stamp.keep, 1):]}


def unchecked(meta: Mapping[str, Any]) -> bool:
    """Whether the destination's current generation still waits for its health
    check (a sync was killed or stopped before it ran or passed)."""
    current = meta.get("generation")
    return any(isinstance(h, dict) and h.get("generation") == current
               and h.get("checked") is False for h in meta.get("history", []))


def mark_checked(dest: Destination) -> None:
    """Record that the destination's current generation passed its health check."""
    doc = read_manifest_doc(dest)
    if not unchecked(doc.meta):
        return
    history = [{**h, "checked": True} if isinstance(h, dict)
               and h.get("generation") == doc.meta.get("generation") else h
               for h in doc.meta.get("history", [])]
    dest.write_bytes(MANIFEST, document(doc.files, {**doc.meta, "history": history}))


def prune(dest: Destination, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    """Remove what the generations the new manifest no longer lists kept."""
    kept = {h.get("generation") for h in after.get("history", [])}
    names: list[str] = []
    for h in before.get("history", []):
        if isinstance(h, dict) and isinstance(h.get("generation"), int) \
                and h["generation"] not in kept:
            names += _names(dest, h["generation"], h.get("kept"))
    if names:
        dest.remove_many(names)


def _names(dest: Destination, n: int, kept: Any) -> list[str]:
    """Everything generation ``n`` keeps at ``dest``: from its history entry's
    ``kept`` list, else from a listing."""
    if isinstance(kept, list):
        files = [kept_name(n, rel) for rel in kept if isinstance(rel, str)]
    else:
        files = list(kept_files(dest, n, ()).values())
    return [previous_name(n), *files]


@dataclass
class Restored:
    """What ``restore`` did at one destination: the generation it is at now, and
    the files moved back (or given back their mode) and deleted."""

    generation: int
    restored: list[str]
    deleted: list[str]


def kept_generations(meta: Mapping[str, Any]) -> list[int]:
    """The generations a destination can go back to, newest first (each one below a
    kept one; 0: before facsimile's first sync there)."""
    gens = sorted((int(h["generation"]) for h in meta.get("history", [])
                   if isinstance(h, dict) and isinstance(h.get("generation"), int)),
                  reverse=True)
    return [g - 1 for g in gens]


def restore(dest: Destination, to: int | None, has_modes: bool,
            only_pending: bool = False) -> Restored:
    """Take ``dest`` back to generation ``to`` (None: the one before its current),
    undoing first a sync that stopped half way there (see the module's docstring);
    ``only_pending``: only that."""
    doc = read_manifest_doc(dest)
    pending = parse_record(dest, PENDING, dest.read(PENDING))
    restored: list[str] = []
    deleted: list[str] = []
    if pending.raw is not None:  # a sync stopped there before its manifest: undo it
        n = made(doc.meta) + 1
        r, d, names = _step(dest, doc, {**pending.files, **doc.files}, n, doc.meta, has_modes)
        restored += r
        deleted += d
        dest.remove(PENDING)
        dest.remove_many(names)
        doc = read_manifest_doc(dest)
        if to is None:
            return Restored(int(doc.meta.get("generation") or 0), restored, deleted)
    if only_pending:
        return Restored(int(doc.meta.get("generation") or 0), restored, deleted)
    current = int(doc.meta.get("generation") or 0)
    goal = current - 1 if to is None else to
    if to is None:  # a rollback killed half way goes on to where it was going
        goal = _under_way(dest, doc.meta, goal)
    possible = kept_generations(doc.meta)
    if goal < 0:
        raise SyncError(f"{dest.label}: nothing to roll back: it keeps no generation "
                        "(never synced here, or deploy.keep is 0)")
    if goal > current or (goal < current and goal not in possible):
        have = ", ".join(str(g) for g in possible) or "none"
        raise SyncError(f"{dest.label}: generation {goal} is not kept there (it is at "
                        f"generation {current}; it can go back to: {have})")
    if goal < current:
        dest.write_bytes(ROLLBACK, json.dumps({"to": goal, "made": made(doc.meta)}).encode())
    while current > goal:
        prev = _previous(dest, doc, current)
        still = {h.get("generation") for h in doc.meta.get("history", []) if isinstance(h, dict)}
        history = [h for h in prev.meta.get("history", [])  # not those pruned since
                   if isinstance(h, dict) and h.get("generation") in still]
        r, d, names = _step(dest, prev, doc.files, current,
                            {**prev.meta, "history": history, "made": made(doc.meta)}, has_modes)
        restored += r
        deleted += d
        dest.remove_many(names)
        doc = read_manifest_doc(dest)
        current = int(doc.meta.get("generation") or 0)
    return Restored(current, restored, deleted)


def _under_way(dest: Destination, meta: Mapping[str, Any], goal: int) -> int:
    """The generation the last rollback at ``dest`` went to, when no sync came
    after it (its record stays): ``facs rollback`` run again, after a kill or
    for the hosts it could not reach, takes no host further back than the first
    run meant to; else ``goal``."""
    data = dest.read(ROLLBACK)
    try:
        mark = json.loads(data) if data is not None else None
    except ValueError:
        return goal
    if isinstance(mark, dict) and mark.get("made") == made(meta) \
            and isinstance(mark.get("to"), int) and mark["to"] <= goal + 1:
        return int(mark["to"])
    return goal


def _previous(dest: Destination, doc: Manifest, n: int) -> Manifest:
    """The manifest generation ``n`` replaced (empty when it was the first sync)."""
    entry = next((h for h in doc.meta.get("history", [])
                  if isinstance(h, dict) and h.get("generation") == n), None)
    if entry is None:
        raise SyncError(f"{dest.label}: generation {n} is not kept there")
    rel = previous_name(n)
    data = dest.read(rel)
    if data is None:
        if entry.get("previous"):
            raise SyncError(f"{dest.label}: {rel} is missing: generation {n - 1} cannot "
                            "be restored")
        return Manifest()
    return parse_record(dest, rel, data)


def _step(dest: Destination, want: Manifest, now: Mapping[str, Any], n: int,
          meta: Mapping[str, Any], has_modes: bool) -> tuple[list[str], list[str], list[str]]:
    """Make ``dest`` hold what ``want`` lists, from the copies generation ``n``
    kept: move back each file that differs, delete each of ``now`` (facsimile's
    own files) that ``want`` lacks, write ``want`` as the manifest with ``meta``.
    The files restored and deleted, and the names of what is left of ``n``."""
    backups = kept_files(dest, n, [*want.files, *now])
    rels = sorted(set(want.files) | set(now) | set(backups))
    listing = dest.listing(listing_roots(rels))
    digests = dest.digests([r for r in rels if r in listing and r in want.files])
    moves: list[tuple[str, str]] = []
    modes: list[tuple[str, int]] = []
    missing = []
    for rel in rels:
        rec = want.files.get(rel)
        if rec is None:
            continue
        here = listing.get(rel)
        same = here is not None and digests.get(rel) == rec.get("digest")
        mode_ok = not has_modes or (here is not None and here.mode in (None, rec.get("mode")))
        if same and mode_ok:
            continue
        if rel in backups:
            moves.append((backups[rel], rel))
        elif same:
            modes.append((rel, int(rec["mode"])))
        else:
            missing.append(rel)
    if missing:
        raise SyncError(f"{dest.label}: cannot restore {', '.join(missing[:5])}: no kept copy "
                        "(changed on the host since); nothing more was changed")
    # a file the undone sync replaced or deleted that the older manifest does not
    # list (a file of the host's own in an owned folder) goes back too
    moves += [(backups[rel], rel) for rel in sorted(backups) if rel not in want.files]
    drop = sorted(rel for rel in now if rel not in want.files and rel not in backups
                  and rel in listing)
    if moves:
        dest.move_many(moves)
    for rel, mode in modes:
        dest.chmod(dest.path(rel), mode)
    if drop:
        dest.delete_many(drop)
    killpoints.reached("restored")
    dest.write_bytes(MANIFEST, document(want.files, meta))
    moved = {name for name, _ in moves}
    left = [previous_name(n), *(name for name in backups.values() if name not in moved)]
    return [rel for _, rel in moves] + [rel for rel, _ in modes], drop, left


def describe(meta: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The kept generations of a destination's manifest, newest first, and the
    current one marked."""
    current = meta.get("generation")
    out = []
    for h in reversed(meta.get("history", [])):
        if isinstance(h, dict):
            out.append({**{k: v for k, v in h.items() if k not in ("previous", "kept")},
                        "current": h.get("generation") == current})
    return out


def short_commit(commit: object) -> str:
    """A commit shortened for a table (``-`` when there is none)."""
    if not commit:
        return "-"
    text = str(commit)
    return text[:10] + ("+" if text.endswith("+") else "")
