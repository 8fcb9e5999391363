"""Keyed digests of state, for doit's database and the build's caches.

State holds secrets, so its digest is keyed with the root's
``state/.digest-key`` (made once, mode 0600; ``state/digest-key.age`` when the
state is sealed): without the key the database says nothing about the values. :func:`wants_digest` digests only what a
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
from typing import TYPE_CHECKING, Any

from ..errors import StateError
from .kinds import Want

if TYPE_CHECKING:
    from .files import StateStore

KEY_FILE = ".digest-key"
SEALED_KEY_FILE = "digest-key.age"


def digest_key(where: Path | StateStore, *, write: bool) -> bytes:
    """The root's secret key for the digests kept in doit's database and caches.

    Unkeyed, the digest of a short generated password could be reversed by trying
    every value; keyed, the database says nothing without this file. It lives
    beside the state (0600; sealed to the recipients as ``digest-key.age`` when
    there are some, a plain one then sealed and removed at the next write), is
    made once, race-free (two processes that make it at once end with the same
    key), and is read once per run. With ``write=False`` a missing key (or a
    sealed one no identity opens) is not made: an ephemeral one stands in, so
    every record reads as changed.
    """
    store = where if not isinstance(where, Path) else None
    state_dir = where if isinstance(where, Path) else where.key_dir
    if state_dir is None:
        raise StateError("this state has no folder for its digest key")
    if store is not None and store._key is not None:
        return store._key
    sealed = store is not None and store.sealed_key
    key = _sealed_key(store, state_dir, write=write) if sealed and store is not None \
        else _plain_key(state_dir, write=write)
    if key is None:
        return secrets.token_bytes(32)
    if store is not None:
        store._key = key
    return key


def _plain_key(state_dir: Path, *, write: bool) -> bytes | None:
    path = state_dir / KEY_FILE
    try:
        return _read_key(path.read_text(encoding="ascii", errors="replace"), path)
    except FileNotFoundError:
        if not write:
            return None
    except OSError as exc:  # a folder, no permission
        raise StateError(f"the digest key cannot be read ({exc.strerror}); move it away "
                         "(the next build makes a new one and checks every output "
                         "again)", file=path) from None
    _create(state_dir, KEY_FILE, secrets.token_hex(32) + "\n")
    return _read_key(path.read_text(encoding="ascii", errors="replace"), path)


def _sealed_key(store: StateStore, state_dir: Path, *, write: bool) -> bytes | None:
    """``digest-key.age`` opened; a plain key sealed (and removed) when writing."""
    from . import crypt

    path, plain = state_dir / SEALED_KEY_FILE, state_dir / KEY_FILE
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        text = None
    if text is None:
        old = _plain_key(state_dir, write=False) if plain.exists() else None
        if not write:
            return old
        hexkey = (old.hex() if old else secrets.token_hex(32)) + "\n"
        _create(state_dir, SEALED_KEY_FILE, crypt.seal_bytes(
            hexkey.encode(), crypt.parse_recipients(store.recipients)))
        return _sealed_key(store, state_dir, write=True)  # read back; the plain one goes
    if not write and not store.identities():
        return None
    try:
        opened = crypt.open_bytes(text, store.identities(), str(path),
                                  recipients=store.recipients)
    except StateError:
        if not write:
            return None  # the state's own error says it better
        raise
    key = _read_key(opened.decode("ascii", "replace"), path)
    if write and plain.exists():
        with contextlib.suppress(OSError):
            plain.unlink()  # sealed now: the plain copy goes
    return key


def stored_key(state_dir: Path) -> bytes | None:
    """The digest key as it is in ``state_dir``, for readers that hold no state
    store (the model cache): the plain file, else ``digest-key.age`` opened with
    this run's identity; None when there is none or it cannot be opened."""
    from . import crypt

    if (state_dir / KEY_FILE).is_file():
        return _plain_key(state_dir, write=False)
    path = state_dir / SEALED_KEY_FILE
    try:
        text = path.read_text(encoding="ascii", errors="replace")
        opened = crypt.open_bytes(text, crypt.load_identities(crypt.identity_path()), str(path))
    except (OSError, StateError):
        return None
    return _read_key(opened.decode("ascii", "replace"), path)


def reseal_key(store: StateStore) -> None:
    """Seal the digest key again to the store's recipients (a plain one too)."""
    from . import crypt

    state_dir = store.key_dir
    if state_dir is None or not store.sealed_key:
        return
    key = _sealed_key(store, state_dir, write=True)
    if key is None:
        return
    text = crypt.seal_bytes((key.hex() + "\n").encode(),
                            crypt.parse_recipients(store.recipients))
    _create(state_dir, SEALED_KEY_FILE, text, replace=True)


def _create(state_dir: Path, name: str, text: str, *, replace: bool = False) -> None:
    """Write ``state_dir/name`` (0600) at once; unless ``replace``, only if it is not there."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=state_dir)
    try:
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, state_dir / name)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, state_dir / name)  # only the first process to get here wins
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _read_key(text: str, path: Path) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise StateError("the digest key is damaged; delete it (the next build makes a new "
                         "one and checks every output again)", file=path)
    return key


def data_digest(data: Mapping[str, Any], key: bytes) -> str:
    """A keyed digest of a family's state data (it holds secrets: never unkeyed)."""
    text = json.dumps(_essence(data), sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8, key=key).hexdigest()


def value_digest(value: Any, key: bytes) -> str:
    """A keyed digest of one generated value as text (an id as its digits): what an
    entry's ``seen`` list keeps of every value it has had, and what masking compares
    a word of a text with."""
    data = b"seen:" + str(value).encode()
    return hashlib.blake2b(data, digest_size=10, key=key).hexdigest()


def wants_digest(wants: list[Want]) -> str:
    """A digest of what a family asks for: when it changes, so may its state."""
    text = json.dumps(sorted((w.section, w.name, w.kind) for w in wants))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _essence(data: Mapping[str, Any]) -> dict[str, Any]:
    """What of a state document outputs can depend on: each entry but its ``rev``
    (the lineage, the format and a sealed file's bookkeeping aside), so sealing or
    re-encrypting a family changes no digest."""
    out: dict[str, Any] = {"next_id": data.get("next_id", 1)}
    for section in ("modules", "generate", "daemons"):
        entries = data.get(section)
        if isinstance(entries, Mapping) and entries:
            out[section] = {name: {k: v for k, v in e.items() if k != "rev"}
                            if isinstance(e, Mapping) else e for name, e in entries.items()}
    return out
