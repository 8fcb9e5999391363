"""The records facsimile keeps at each destination, under ``.facsimile/``.

``manifest.json`` says what facsimile wrote there (path, sha256, mode); it is
replaced only after every put and delete it describes has completed.
``pending.json`` is written before a sync's first put and removed after its
manifest: every planned put and any earlier pending record (not the old
manifest's files: that manifest stays in place until the new one replaces it),
so that after a kill the next sync still knows each file that may have been
put. Both have the same shape, ``{"format": 1, "written_by": "facsimile",
"files": {rel: {"digest": sha256, "mode": int, "size": int, "mtime": str}}}``
(size and mtime as the destination showed them right after the put), files sorted, one space
indent, a final newline. The manifest also says who wrote it (``META``): the
``instance`` that owns the destination, and the ``family``, ``lineage`` and
``serial`` of the state its files were built from; a manifest written by an
older facsimile lacks them; and the generations kept there (``generation``,
``made``, ``history``: see ``generations``). ``lock`` is held by the sync applying a plan there
(see ``lock``).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from ..errors import SyncError
from .destinations.base import Destination, Entry
from .scan import LocalFile

MANIFEST = ".facsimile/manifest.json"
PENDING = ".facsimile/pending.json"  # what a sync under way may have put: see apply_host
LOCK = ".facsimile/lock"  # held while a sync applies its plan: see lock.hold

#: what a manifest says about its writer besides the files: the owner and state
#: (``OWNER``), and the generations kept there (see ``generations``)
OWNER = ("instance", "family", "lineage", "serial")
META = (*OWNER, "generation", "made", "history")

Records = dict[str, dict[str, Any]]

#: a backslash or a control character: never in a path facsimile wrote
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\]")


@dataclass
class Manifest:
    """A destination's manifest: its files, its ``META`` entries (those present),
    and its bytes as read (None when there is none)."""

    files: Records = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    raw: bytes | None = None


def parse_record(dest: Destination, rel: str, data: bytes | None) -> Manifest:
    """The manifest or pending record ``rel`` of ``dest`` from its bytes ``data``
    (None: there is none); a one-line error naming it when it is not one."""
    if data is None:
        return Manifest()
    try:
        doc = json.loads(data)
        files = doc["files"]
        assert isinstance(files, dict)
    except (ValueError, KeyError, AssertionError, TypeError):
        raise SyncError(f"{dest.label}: {rel} is not a facsimile manifest; "
                        "move it away to start afresh") from None
    bad = next((p for p in files if not inside(p)), None)
    if bad is not None:
        raise SyncError(f"{dest.label}: {rel} is damaged: its entry {bad!r} is not a path "
                        "inside the destination; nothing was deleted (move the file away "
                        "to start afresh)")
    meta = {k: doc[k] for k in META if doc.get(k) is not None}
    return Manifest(files, meta, data)


def inside(rel: Any) -> bool:
    """Whether a manifest entry is a relative path that stays inside its
    destination (an entry is a path the next sync may delete)."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or _UNSAFE.search(rel):
        return False
    wrapped = f"/{rel}/"  # an empty, "." or ".." part shows as //, /./ or /../
    return "//" not in wrapped and "/./" not in wrapped and "/../" not in wrapped


def read_manifest_doc(dest: Destination) -> Manifest:
    """The last completed sync's manifest at ``dest``: files and who wrote them."""
    return parse_record(dest, MANIFEST, dest.read(MANIFEST))


def record(f: LocalFile, seen: Entry | None = None) -> dict[str, Any]:
    """The entry of one file in a manifest or pending record; ``seen``: what a
    listing of the destination showed of it right after (its size and mtime,
    which the next sync's quick check compares)."""
    rec: dict[str, Any] = {"digest": f.digest, "mode": f.mode}
    if seen is not None:
        rec.update(size=seen.size, mtime=seen.mtime)
    return rec


def document(files: Mapping[str, dict[str, Any]],
             meta: Mapping[str, Any] | None = None) -> bytes:
    """The bytes of a manifest or pending record listing ``files``; a manifest
    also has its ``META`` entries (``meta``). The bytes of ``json.dumps(doc,
    indent=1)``, the files' part made here (an indent keeps ``json`` to its
    pure-Python encoder: half a second for 10,000 files)."""
    doc: dict[str, Any] = {"format": 1, "written_by": "facsimile"}
    doc.update({k: meta[k] for k in META if meta and meta.get(k) is not None})
    ordered = dict(sorted(files.items()))
    block = _files_block(ordered)
    if block is None:  # a record with something else than text and numbers in it
        doc["files"] = ordered
        return (json.dumps(doc, indent=1) + "\n").encode()
    mark = "files-" + secrets.token_hex(16)
    doc["files"] = mark
    text = json.dumps(doc, indent=1)
    return (text.replace(json.dumps(mark), block, 1) + "\n").encode()


#: the two shapes of a file's entry that facsimile writes (``record``), key order and all
_PLAIN = ("digest", "mode")
_SEEN = ("digest", "mode", "size", "mtime")


def _files_block(files: Mapping[str, Any]) -> str | None:
    """``files`` as ``json.dumps`` with ``indent=1`` shows it at the second level
    of a document; None when a record holds anything but text, whole numbers
    and booleans (left to ``json``). The entries ``record`` makes are written
    in one step each (half the time of the general way, field by field)."""
    if not files:
        return "{}"
    text = encode_basestring_ascii
    parts = []
    add = parts.append
    for rel, rec in files.items():
        if type(rec) is dict and type(rel) is str:
            keys = tuple(rec)
            if keys == _SEEN:
                digest, mode, size, mtime = rec.values()
                if type(digest) is str and type(mode) is int and type(size) is int \
                        and type(mtime) is str:
                    add(f'  {text(rel)}: {{\n   "digest": {text(digest)},\n   "mode": {mode},'
                        f'\n   "size": {size},\n   "mtime": {text(mtime)}\n  }}')
                    continue
            elif keys == _PLAIN:
                digest, mode = rec.values()
                if type(digest) is str and type(mode) is int:
                    add(f'  {text(rel)}: {{\n   "digest": {text(digest)},\n   "mode": {mode}\n  }}')
                    continue
        entry = _entry(rel, rec)
        if entry is None:
            return None
        add(entry)
    return "{\n" + ",\n".join(parts) + "\n }"


def _entry(rel: Any, rec: Any) -> str | None:
    """One file's entry of ``_files_block``, field by field; None when it holds
    anything but text, whole numbers and booleans."""
    if not isinstance(rec, dict) or not isinstance(rel, str):
        return None
    text = encode_basestring_ascii
    fields = []
    for key, value in rec.items():
        if not isinstance(key, str):
            return None
        if isinstance(value, str):
            shown = text(value)
        elif value is True or value is False or value is None:
            shown = json.dumps(value)
        elif type(value) is int:
            shown = int.__repr__(value)
        else:
            return None
        fields.append(f"   {text(key)}: {shown}")
    body = "{\n" + ",\n".join(fields) + "\n  }" if fields else "{}"
    return f"  {text(rel)}: {body}"
