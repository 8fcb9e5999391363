"""The records facsimile keeps at each destination, under ``.facsimile/``.

``manifest.json`` says what facsimile wrote there (path, sha256, mode); it is
replaced only after every put and delete it describes has completed.
``pending.json`` is written before a sync's first put and removed after its
manifest: the old manifest, any earlier pending record and every planned put,
so that after a kill the next sync still knows each file that may have been
put. Both have the same shape, ``{"format": 1, "written_by": "facsimile",
"files": {rel: {"digest": sha256, "mode": int}}}``, files sorted, one space
indent, a final newline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import SyncError
from .destinations.base import Destination
from .scan import LocalFile

MANIFEST = ".facsimile/manifest.json"
PENDING = ".facsimile/pending.json"  # what a sync under way may have put: see apply_host

Records = dict[str, dict[str, Any]]


def _read_files(dest: Destination, rel: str) -> Records:
    data = dest.read(rel)
    if data is None:
        return {}
    try:
        doc = json.loads(data)
        files = doc["files"]
        assert isinstance(files, dict)
        return files
    except (ValueError, KeyError, AssertionError, TypeError):
        raise SyncError(f"{dest.label}: {rel} is not a facsimile manifest; "
                        "move it away to start afresh") from None


def read_manifest(dest: Destination) -> Records:
    """The files the last completed sync wrote to ``dest`` (empty when none)."""
    return _read_files(dest, MANIFEST)


def read_pending(dest: Destination) -> Records:
    """The record a sync writes before its first put and removes after its
    manifest: present only when a sync was killed (or failed) half way."""
    return _read_files(dest, PENDING)


def record(f: LocalFile) -> dict[str, Any]:
    """The entry of one file in a manifest or pending record."""
    return {"digest": f.digest, "mode": f.mode}


def document(files: Mapping[str, dict[str, Any]]) -> bytes:
    """The bytes of a manifest or pending record listing ``files``."""
    doc = {"format": 1, "written_by": "facsimile", "files": dict(sorted(files.items()))}
    return (json.dumps(doc, indent=1) + "\n").encode()
