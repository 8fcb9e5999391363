"""The bundle format: where each object lives in a store and what a manifest says.

Layout below the store's URL::

    blobs/<sha256>                                  file contents, stored once, immutable
    <instance>/<target>/manifest.json               what every host of the target gets
    <instance>/<target>/hosts/<host>/manifest.json  ... and what one named host gets
    <instance>/<target>/[hosts/<host>/]manifests/<serial>.json   the kept earlier ones
    <instance>/refs.json                            the blobs each kept serial uses
    .facsimile/lock                                 held by a publish

A manifest file is an envelope, ``{"format": 1, "payload": {...}, "signature":
{...}}`` (see :mod:`.sign`): the signature travels in the one object a host
reads, so a no-op pull is one GET and a reader sees the old manifest or the
new, never a mix. The payload::

    {"format": 1, "project", "instance", "family", "target", "host" (null: shared),
     "lineage", "state_serial", "serial", "published_at", "postcmd": [...],
     "check": [...], "check_timeout" (deploy.rollout's health check, when there is one),
     "files": {rel: {"sha256", "size", "mode", "encrypted",
                     "recipients" and "mac" when encrypted}}}

``sha256`` and ``size`` are the blob's (for an encrypted file, its age
ciphertext's); ``mac`` is a digest of the clear content keyed with the root's
digest key, by which a publish knows an unchanged secret without decrypting
it and keeps its ciphertext. ``serial`` grows with every publish of the
instance; ``lineage`` and ``state_serial`` are those of the state the files
were built from.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import SyncError

FORMAT = 1
BLOBS = "blobs"
REFS = "refs.json"
MANIFEST = "manifest.json"
HISTORY = "manifests"
_SHA = re.compile(r"[0-9a-f]{64}")


def blob(sha: str) -> str:
    """Where the blob of digest ``sha`` lives."""
    return f"{BLOBS}/{sha}"


def scope_dir(instance: str, target: str, host: str | None = None) -> str:
    """The folder of one manifest: a target's, or one host's of it."""
    return f"{instance}/{target}" + (f"/hosts/{host}" if host else "")


def manifest(instance: str, target: str, host: str | None = None) -> str:
    """Where the current manifest of a target (or of one host of it) lives."""
    return f"{scope_dir(instance, target, host)}/{MANIFEST}"


def history(scope: str, serial: int) -> str:
    """Where a kept manifest of serial ``serial`` lives in ``scope``'s folder."""
    return f"{scope}/{HISTORY}/{serial}.json"


def is_sha(value: Any) -> bool:
    """Whether ``value`` is a lower-case hex sha256."""
    return isinstance(value, str) and bool(_SHA.fullmatch(value))


def segment_ok(name: str) -> bool:
    """Whether ``name`` is one safe path segment (no '/', no leading '.')."""
    from ..sync.manifest import inside

    return isinstance(name, str) and inside(name) and "/" not in name \
        and not name.startswith(".")


def check_payload(payload: Mapping[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """The files of a verified payload, every entry checked: a path inside the
    destination, a sha256, a size, a mode; a one-line refusal otherwise."""
    from ..sync.manifest import inside

    files = payload.get("files")
    serial = payload.get("serial")
    if payload.get("format") != FORMAT or not isinstance(files, dict) \
            or not isinstance(serial, int) or isinstance(serial, bool):
        raise SyncError(f"{where} is a manifest of another format (this facsimile reads "
                        f"format {FORMAT}): nothing was changed")
    for rel, entry in files.items():
        ok = (inside(rel) and isinstance(entry, dict) and is_sha(entry.get("sha256"))
              and isinstance(entry.get("size"), int) and isinstance(entry.get("mode"), int)
              and 0 <= entry["mode"] <= 0o7777 and isinstance(entry.get("encrypted"), bool))
        if not ok:
            raise SyncError(f"{where} has a bad entry {rel!r} (not a path inside the "
                            "destination with a sha256, size and mode): nothing was changed")
    for key in ("postcmd", "check"):
        commands = payload.get(key) or []
        if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
            raise SyncError(f"{where}: {key} is not a list of commands: nothing was changed")
    return files


def referenced(payload: Mapping[str, Any]) -> set[str]:
    """The blobs a payload uses."""
    files = payload.get("files")
    if not isinstance(files, dict):
        return set()
    return {e["sha256"] for e in files.values() if isinstance(e, dict) and is_sha(e.get("sha256"))}
