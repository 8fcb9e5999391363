"""Digests: short, stable, keyed hashes of values, files and bytes.

What doit's database and ``.facsimile/`` hold instead of values. A digest of a
value is keyed with the root's digest key (:func:`facsimile.state.digest_key`)
so that a short secret cannot be found from it; :data:`ABSENT` stands for a
value, file or template that is not there.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

ABSENT = "absent"  # the digest of a missing value, file or template


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT_VALUE = _Absent()  # a context path that names nothing (see render.tracking)


def digest(value: Any, key: bytes = b"") -> str:
    """A short stable digest of a JSON-able value (never the value itself), keyed
    with the root's digest key so that a short secret cannot be found from it."""
    if value is ABSENT_VALUE:
        return ABSENT
    kind = type(value)
    if kind is str:  # the common case, without json
        data = b"s" + value.encode()
    elif kind is int or kind is bool or value is None:
        data = repr(value).encode()
    else:
        data = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.blake2b(data, digest_size=6, key=key).hexdigest()


def file_digest(path: Path | str, key: bytes = b"") -> str:
    """Digest of a file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.blake2b(fh.read(), digest_size=8, key=key).hexdigest()


def bytes_digest(data: bytes, key: bytes = b"") -> str:
    """Digest of bytes (as :func:`file_digest` of a file holding them)."""
    return hashlib.blake2b(data, digest_size=8, key=key).hexdigest()
