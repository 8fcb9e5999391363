"""Keyed digests of state, for doit's database and the build's caches.

State holds secrets, so its digest is keyed with the root's
``state/.digest-key`` (made once, mode 0600): without the key the database
says nothing about the values. :func:`wants_digest` digests only what a
family asks for (names and kinds, no values) and needs no key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import StateError
from .kinds import Want

KEY_FILE = ".digest-key"


def digest_key(state_dir: Path, *, write: bool) -> bytes:
    """The root's secret key for the digests kept in doit's database and caches.

    Unkeyed, the digest of a short generated password could be reversed by trying
    every value; keyed, the database says nothing without this file. It lives
    beside the state (0600), is made once, race-free (two processes that make it
    at once end with the same key), and with ``write=False`` a missing key is
    not made: an ephemeral one stands in, so every record reads as changed.
    """
    path = state_dir / KEY_FILE
    try:
        return _read_key(path)
    except FileNotFoundError:
        if not write:
            return secrets.token_bytes(32)
    state_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".digest-key.", suffix=".tmp", dir=state_dir)
    try:
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # only the first process to get here wins
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    text = path.read_text(encoding="ascii", errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise StateError("the digest key is damaged; delete it (the next build makes a new "
                         "one and checks every output again)", file=path)
    return key


def data_digest(data: Mapping[str, Any], key: bytes) -> str:
    """A keyed digest of a family's state data (it holds secrets: never unkeyed)."""
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8, key=key).hexdigest()


def wants_digest(wants: list[Want]) -> str:
    """A digest of what a family asks for: when it changes, so may its state."""
    text = json.dumps(sorted((w.section, w.name, w.kind) for w in wants))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
