"""Where a root's state lives, and how it is read and written: plain or sealed.

A :class:`StateStore` is a :class:`Local` folder (``state/<family>/state.json``)
or a :class:`Remote` URL, plus the age recipients its files are sealed to
(:mod:`.crypt`). Reading is transparent: a sealed file is opened with the
identities of :func:`.crypt.identity_path`, loaded once per run and only when a
sealed file is met. A file no identity opens is an error naming it and its
recipients, and nothing is generated or written after it: a clone without the
key never makes new passwords. Every write happens under the family's lock,
from the document read under that lock, sealed whenever recipients are
configured (unchanged entries keep their ciphertext).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

from ..define.root import shown_path
from ..errors import StateError
from . import crypt

NOT_WRITTEN = "; nothing was generated or written"
GITIGNORE_PLAIN = "# plain state holds secrets: never commit it\n*\n"
GITIGNORE_SEALED = ("# state is sealed to the recipients of define/facsimile.json: commit it\n"
                    ".lock\n*.tmp\n.digest-key\n")


def empty_state() -> dict[str, Any]:
    """The document of a family that has no state yet."""
    return {"format": crypt.PLAIN_FORMAT, "next_id": 1, "modules": {}, "generate": {}}


class Backend(Protocol):
    """The bytes of each family's state file, its lock and its version stamp."""

    def shown(self, family: str) -> str: ...
    def stamp(self, family: str) -> list[Any] | None: ...
    def read(self, family: str) -> bytes | None: ...
    def write(self, family: str, data: bytes) -> None: ...
    def lock(self, family: str) -> contextlib.AbstractContextManager[Any]: ...
    def families(self) -> list[str]: ...


class StateStore:
    """A root's state: its backend, the recipients it is sealed to, the digest key."""

    def __init__(self, backend: Backend, recipients: list[str] | None = None, *,
                 key_dir: Path | None = None, sealed_key: bool = False) -> None:
        self.backend = backend
        self.recipients = list(recipients or [])
        self.key_dir = key_dir  # where the digest key lives (always a local folder)
        self.sealed_key = sealed_key and bool(self.recipients)
        self._identities: list[crypt.Identity] | None = None
        self._key: bytes | None = None
        #: what :func:`facsimile.mask.state_values` made of the stored families, once a run
        self.masking: Any = None

    # ------------------------------------------------------------ reading

    def identities(self) -> list[crypt.Identity]:
        """The run's identities, loaded at the first sealed file met."""
        if self._identities is None:
            self._identities = crypt.load_identities(crypt.identity_path())
        return self._identities

    def parse(self, raw: bytes, shown: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The plain document in ``raw``, and the sealed one it came from (if sealed)."""
        from .store import check_state, parse_json  # store builds on this module

        doc = parse_json(raw, shown)
        if not crypt.is_sealed(doc):
            check_state(doc, shown)
            return doc, None
        plain = self.open(doc, shown)
        check_state(plain, shown)
        return plain, doc

    def open(self, doc: Mapping[str, Any], shown: str) -> dict[str, Any]:
        """A sealed document opened, or one clear error: which file, sealed to whom."""
        to = ", ".join(map(crypt.short, doc.get("recipients") or [])) or "no one"
        where = crypt.identity_path()
        if not self.identities():
            raise StateError(f"state is encrypted to {to} and there is no identity at "
                             f"{where} (set FACSIMILE_IDENTITY, or run facs state keygen and "
                             "ask a recipient to add you)" + NOT_WRITTEN, file=shown)
        try:
            plain = crypt.open_sealed(doc, self.identities(), shown=shown)
        except StateError as exc:
            raise StateError(f"{exc.message} (identity: {where})" + NOT_WRITTEN,
                             file=shown, pointer=exc.pointer) from None
        if crypt.lineage(doc):
            plain["lineage"] = crypt.lineage(doc)
        return plain

    def read(self, family: str) -> tuple[dict[str, Any], bool]:
        """The family's plain document (empty if none yet) and whether it exists."""
        raw = self.backend.read(family)
        if raw is None:
            return empty_state(), False
        return _defaults(self.parse(raw, self.backend.shown(family))[0]), True

    def documents(self) -> list[dict[str, Any]]:
        """The plain document of every family that has state, a definition or not (one
        no identity opens is left out: what it holds was never built here)."""
        docs = []
        for family in self.backend.families():
            with contextlib.suppress(StateError):
                docs.append(self.read(family)[0])
        return docs

    def stamp(self, family: str) -> list[Any] | None:
        """What tells the family file's versions apart without reading it (None: no file)."""
        return self.backend.stamp(family)

    def sealed_to(self, family: str) -> list[str] | None:
        """The recipients the family's file is sealed to (None: plain or absent)."""
        raw = self.backend.read(family)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            return None
        return list(doc.get("recipients") or []) if crypt.is_sealed(doc) else None

    # ------------------------------------------------------------ writing

    def update(self, family: str, change: Callable[[dict[str, Any]], bool], *,
               force: bool = False) -> dict[str, Any]:
        """Under the family's lock: read it, let ``change`` edit the plain document
        (it says whether it changed anything), write it back if so (or ``force``)."""
        import uuid

        shown = self.backend.shown(family)
        with self.backend.lock(family):
            raw = self.backend.read(family)
            plain, sealed = (empty_state(), None) if raw is None else self.parse(raw, shown)
            plain = _defaults(plain)
            # the previous plain, for seal (which keeps the entries that did not change)
            before = json.loads(json.dumps(plain)) if sealed is not None else None
            if not (change(plain) or force or raw is None):
                return plain
            plain.setdefault("lineage", uuid.uuid4().hex)  # the first write gives it
            self.backend.write(family, self.dumps(plain, sealed, before))
        if self.sealed_key and self.key_dir is not None \
                and (self.key_dir / ".digest-key").exists():
            from .digest import reseal_key

            reseal_key(self)  # a plain digest key goes with the first sealed write
        return plain

    def dumps(self, plain: Mapping[str, Any], sealed: Mapping[str, Any] | None,
              before: Mapping[str, Any] | None) -> bytes:
        """The file's new bytes: sealed to the recipients if any, else plain JSON.
        ``sealed`` and ``before``: the file as it was, sealed and opened (or None)."""
        if not self.recipients:
            return crypt.dumps(plain).encode()
        previous = (sealed, before) if sealed is not None else (None, None)
        doc = crypt.seal(plain, self.recipients, previous=previous[0],
                         previous_plain=previous[1], lineage=plain.get("lineage"))
        return crypt.dumps(doc).encode()

    def reseal(self) -> list[str]:
        """Write every family (and the digest key) again to today's recipients."""
        done = []
        for family in self.backend.families():
            self.update(family, lambda _data: False, force=True)
            done.append(family)
        if self.key_dir is not None:
            from .digest import reseal_key

            reseal_key(self)
        return done

    # ------------------------------------------------------------ the digest key

    def digest_key(self, *, write: bool) -> bytes:
        """The root's digest key (see :func:`.digest.digest_key`), decrypted once per run."""
        from .digest import digest_key

        if write:
            self.ignore()
        return digest_key(self, write=write)

    def ignore(self) -> None:
        """Keep ``state/.gitignore`` saying what of the state folder may be committed."""
        if isinstance(self.backend, Local):
            self.backend.ignore()
        elif self.key_dir is not None:  # remote state: only the local digest key is here
            Local(self.key_dir, gitignore=True).ignore()


def open_store(state_dir: Path, shown_root: Path | None,
               config: Mapping[str, Any] | None) -> StateStore:
    """The store ``"state"`` of facsimile.json describes (checked when it was read):
    ``recipients`` to seal to, ``url`` of remote state with its ``ssh``, ``s3`` and
    ``storage_options``, ``lock_timeout`` in seconds. Without it: plain, in state/."""
    config = dict(config or {})
    recipients = [str(r) for r in config.get("recipients") or []]
    url = config.get("url")
    if url:
        options = {k: config[k] for k in ("ssh", "s3", "storage_options") if k in config}
        backend: Backend = Remote(str(url), options,
                                  timeout=float(config.get("lock_timeout", 60)))
    else:
        backend = Local(state_dir, shown_root, sealed=bool(recipients), gitignore=True)
    # the digest key keys local digests only: it stays in state/ even with remote state
    return StateStore(backend, recipients, key_dir=state_dir, sealed_key=True)


def _defaults(data: dict[str, Any]) -> dict[str, Any]:
    data.setdefault("modules", {})
    data.setdefault("generate", {})
    data.setdefault("next_id", 1)
    return data


class Local:
    """``state/<family>/state.json`` below a folder, locked with ``flock``; it also
    keeps ``state/.gitignore`` saying what of it may be committed."""

    def __init__(self, folder: Path, shown_root: Path | None = None, *,
                 sealed: bool = False, gitignore: bool = False) -> None:
        self.folder = folder
        self.shown_root = shown_root
        self.sealed = sealed
        self.gitignore = gitignore
        self._paths: dict[str, tuple[Path, str]] = {}  # family -> (path, shown), once a run
        self._ignored = False  # state/.gitignore made right in this run

    def _path(self, family: str) -> tuple[Path, str]:
        found = self._paths.get(family)
        if found is None:
            path = self.folder / family / "state.json"
            found = self._paths[family] = (path, shown_path(path, self.shown_root))
        return found

    def path(self, family: str) -> Path:
        return self._path(family)[0]

    def shown(self, family: str) -> str:
        return self._path(family)[1]

    def stamp(self, family: str) -> list[Any] | None:
        return _stamp(self.path(family))

    def read(self, family: str) -> bytes | None:
        path, shown = self._path(family)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except IsADirectoryError as exc:
            raise StateError("state path is a folder, not a file; move it away",
                             file=shown) from exc
        except OSError as exc:
            raise StateError(f"cannot read state: {exc.strerror}", file=shown) from exc

    def write(self, family: str, data: bytes) -> None:
        from .store import write_bytes

        path, shown = self._path(family)
        write_bytes(path, data, shown)
        self.ignore()

    def ignore(self) -> None:
        """Make ``state/.gitignore`` say what may be committed (sealed) or not (plain);
        looked at once a run (a first build writes every family's file)."""
        if not self.gitignore or self._ignored:
            return
        path, text = self.folder / ".gitignore", GITIGNORE_SEALED if self.sealed \
            else GITIGNORE_PLAIN
        with contextlib.suppress(OSError):
            if not path.is_file() or path.read_text() != text:
                path.write_text(text)
            self._ignored = True  # not before the folder is there

    @contextlib.contextmanager
    def lock(self, family: str) -> Iterator[None]:
        from .store import locked

        with locked(self.path(family), self.shown(family)):
            yield

    def families(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.parent.name for p in self.folder.glob("*/state.json"))


class Remote:
    """State at an fsspec URL (:class:`.remote.RemoteStore`), connected at first use;
    the version stamps of every family come from one listing per run."""

    def __init__(self, url: str, options: Mapping[str, Any], *, timeout: float = 60) -> None:
        self.url = url.rstrip("/")
        self.options = dict(options)
        self.timeout = timeout
        self._store: Any = None
        self._versions: dict[str, str] | None = None

    @property
    def store(self) -> Any:
        if self._store is None:
            from .remote import RemoteStore

            self._store = RemoteStore(self.url, **self.options)
        return self._store

    def shown(self, family: str) -> str:
        return f"{self.url}/{family}/state.json"

    def versions(self) -> dict[str, str]:
        if self._versions is None:
            self._versions = self.store.versions()
        return self._versions

    def stamp(self, family: str) -> list[Any] | None:
        token = self.versions().get(family)
        return None if token is None else ["remote", token]

    def read(self, family: str) -> bytes | None:
        found = self.store.read(family)
        return None if found is None else found[0]

    def write(self, family: str, data: bytes) -> None:
        self.store.write(family, data)
        if self._versions is not None:  # its new token is unknown: no cache this run
            self._versions.pop(family, None)

    def lock(self, family: str) -> contextlib.AbstractContextManager[Any]:
        return self.store.lock(family, timeout=self.timeout)

    def families(self) -> list[str]:
        return sorted(self.versions())


def _stamp(path: Path | str) -> list[int] | None:
    """What tells a file's versions apart without reading it: inode, size, mtime and
    ctime (a state file is replaced by a rename on every write)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
