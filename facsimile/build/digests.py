"""What one run knows about the inputs of its outputs, each found once: the
instance contexts, the root's digest key, keyed digests of contexts, state and
values, content digests and modes of source files, and the caches kept in
``.facsimile/`` between runs (:class:`JsonCache`).

Two views of an instance's context: the check's (``write=False``: state as it
is on disk, nothing generated or written) and the build's (``write=True``:
missing state generated and saved). A digest of the check's is reused by the
build while the state it came from is unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import define as D
from .. import state as S
from ..atomic import write_atomic
from ..digest import ABSENT, bytes_digest, digest, file_digest
from ..project import Project
from ..render import lookup_path
from ..state import State
from .modes import ModeRules, secret_closure
from .validate import CheckRules


class Digests:
    """Contexts and digests of one run, each computed once (caches keyed by
    instance, subproject and whether the state may be written)."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.root = project.root
        self.ctx: dict[tuple[str, str | None, bool], dict[str, Any]] = {}
        self.ctx_digest: dict[tuple[str, str | None, bool], str] = {}
        self.val_digest: dict[tuple[str, str | None, str], str] = {}
        self.built_digest: dict[tuple[str, str | None, str], str] = {}
        self.files: dict[str, str] = {}  # root-relative path -> content digest
        self.modes: dict[str, int] = {}
        self.rules: dict[str, ModeRules] = {}
        self.checks: dict[str, CheckRules] = {}
        self.secrets: dict[tuple[str, str | None], frozenset[str]] = {}
        self.caches: dict[str, JsonCache] = {}
        self.state_digests: dict[tuple[str, bool], tuple[list[Any] | None, str]] = {}
        self._key: bytes | None = None
        self._key_written = False
        self._key_made = False  # in this run: digests made before differ

    # ------------------------------------------------------------ contexts

    def state(self, inst: D.Instance, *, write: bool) -> State:
        return self.project.state(inst, write=write)

    def context(self, inst: D.Instance, *, write: bool, sub: str | None = None) -> dict[str, Any]:
        key = (inst.name, sub, write)
        found = self.ctx.get(key)
        if found is None:
            found = self.ctx[key] = self.project.context(inst, self.state(inst, write=write),
                                                         sub=sub)
        return found

    def key(self, *, write: bool) -> bytes:
        """The root's digest key (see :func:`facsimile.state.digest_key`), once per run."""
        if self._key is None or (write and not self._key_written):
            old, self._key = self._key, self.project.store.digest_key(write=write)
            self._key_written = write
            self._key_made = self._key_made or (old is not None and old != self._key)
        return self._key

    def context_digest(self, inst: D.Instance, *, write: bool, sub: str | None = None) -> str:
        key = (inst.name, sub, write)
        found = self.ctx_digest.get(key)
        if found is None:
            state = self.state_digest(inst, write=write)
            read = self.ctx_digest.get((inst.name, sub, False)) if write else None
            if read is not None and state == self.state_digest(inst, write=False):
                found = read  # the state is as the check read it: so is the context
            else:
                plain = self.project.context_digest(inst, state, sub)
                found = bytes_digest(plain.encode(), self.key(write=write))
            self.ctx_digest[key] = found
        return found

    def state_digest(self, inst: D.Instance, *, write: bool) -> str:
        """A keyed digest of the family's state, once per run and family.

        For the check (``write=False``) it comes from ``.facsimile/state.json``
        while the state file's stamp (its stat, or the remote version token of the
        run's one listing) and the family's wants are as they were: a no-op then
        reads (and decrypts) no state file. For the build, it is the check's when the
        file is still the one the check saw.
        """
        fam = inst.family
        hit = self.state_digests.get((fam, write))
        if hit is not None:
            return hit[1]
        store = self.project.store
        if write:
            state = self.state(inst, write=True)
            stamp = store.stamp(fam)  # after any generating
            read = self.state_digests.get((fam, False))
            if read is not None and stamp is not None and read[0] == stamp and not self._key_made:
                found = read[1]
            else:
                found = S.data_digest(state.data, self.key(write=True))
        else:
            stamp = store.stamp(fam)
            found = self._cached_state_digest(inst, stamp)
        self.state_digests[(fam, write)] = (stamp, found)
        return found

    def _cached_state_digest(self, inst: D.Instance, stamp: list[Any] | None) -> str:
        """The check's state digest: from ``.facsimile/state.json`` when the file's
        stamp (a remote file's version token) and the family's wants are as recorded
        there, else read (and recorded)."""
        fam = inst.family
        cache = self._state_cache()
        wants = S.wants_digest(self.project.family_wants(fam))
        entry = cache.get(fam)
        if stamp is not None and isinstance(entry, list) and entry[:-1] == [*stamp, wants]:
            return entry[-1]
        state = self.state(inst, write=False)
        found = S.data_digest(state.data, self.key(write=False))
        if stamp is not None and not state.generated:
            cache[fam] = [*stamp, wants, found]
        else:
            cache.pop(fam, None)
        return found

    def _state_cache(self) -> JsonCache:
        """``.facsimile/state.json``: ``{family: [*stamp, wants digest, state digest]}``
        (made with another digest key, it does not verify: all dropped)."""
        return self.cache("state.json")

    def value_digest(self, inst: D.Instance, path: str, sub: str | None = None) -> str:
        """Keyed digest of the value a context path names now (the check's context)."""
        key = (inst.name, sub, path)
        found = self.val_digest.get(key)
        if found is None:
            value = lookup_path(self.context(inst, write=False, sub=sub), path)
            found = self.val_digest[key] = digest(value, self.key(write=False))
        return found

    def read_digests(self, instance: str, sub: str | None,
                     reads: dict[str, Any]) -> dict[str, str]:
        """Digests of the values a render read; a path's value is the same for every
        output of an instance in one run, so each is hashed once per run."""
        cache = self.built_digest
        k = self.key(write=True)
        out = {}
        for path in sorted(reads):
            ck = (instance, sub, path)
            d = cache.get(ck)
            if d is None:
                d = cache[ck] = digest(reads[path], k)
            out[path] = d
        return out

    def mode_rules(self, inst: D.Instance) -> ModeRules:
        """The instance's ``modes``, compiled once per run."""
        found = self.rules.get(inst.name)
        if found is None:
            found = self.rules[inst.name] = ModeRules(inst.data.get("modes"))
        return found

    def check_rules(self, inst: D.Instance) -> CheckRules:
        """The instance's ``validate``, compiled once per run."""
        found = self.checks.get(inst.name)
        if found is None:
            found = self.checks[inst.name] = CheckRules(inst.data.get("validate"))
        return found

    def secret_reads(self, inst: D.Instance, sub: str | None) -> frozenset[str]:
        """Context paths whose read means a render read a generated secret (see
        :func:`facsimile.build.modes.secret_closure`); the build's state."""
        key = (inst.name, sub)
        found = self.secrets.get(key)
        if found is None:
            paths = self.project.secret_paths(self.state(inst, write=True), sub=sub)
            found = self.secrets[key] = secret_closure(paths)
        return found

    # ------------------------------------------------------------ files

    def mode(self, path: str) -> int:
        """Permission bits of a source file, once per run."""
        m = self.modes.get(path)
        if m is None:
            m = self.modes[path] = os.stat(path).st_mode & 0o7777
        return m

    def fdigest(self, rel: str) -> str:
        """Content digest of a file under the root, once per run (templates are few)."""
        found = self.files.get(rel)
        if found is None:
            try:
                found = file_digest(self.root.base / rel)
            except OSError:
                found = ABSENT
            self.files[rel] = found
        return found

    # ------------------------------------------------------------ caches between runs

    def cache(self, name: str) -> JsonCache:
        """``.facsimile/<name>``, read once per run (see :class:`JsonCache`)."""
        c = self.caches.get(name)
        if c is None:
            c = self.caches[name] = JsonCache(self.root.cache / name,
                                              lambda: self.key(write=False))
        return c

    def save_caches(self) -> None:
        """Write the caches of ``.facsimile/`` that changed."""
        for c in self.caches.values():
            c.save()


class JsonCache(dict):  # type: ignore[type-arg]
    """A JSON object in ``.facsimile/`` that only saves time: read on first use,
    written (atomically) when changed; a file that cannot be read or written
    costs the time it would have saved, nothing else.

    What it holds decides what a run checks (a verified context skips comparing
    values, a cached state digest skips reading the state), so the file's first
    line is an HMAC of its name and the rest, keyed from the root's digest key
    (``key`` gives it): one that does not verify (edited, copied from another
    cache, made with another key) is ignored and rewritten."""

    def __init__(self, path: Path, key: Callable[[], bytes]) -> None:
        self.path = path
        self.key = key
        loaded = None
        with contextlib.suppress(OSError, ValueError):
            mac, _, body = path.read_bytes().partition(b"\n")
            if hmac.compare_digest(mac, self._mac(body)):
                loaded = json.loads(body)
        super().__init__(loaded if isinstance(loaded, dict) else {})
        self._saved = dict(self)

    def _mac(self, body: bytes) -> bytes:
        """The hex HMAC of ``body`` under this file's name."""
        key = hashlib.blake2b(self.key(), person=b"facsimile cache").digest()
        return hmac.new(key, self.path.name.encode() + b"\0" + body, "sha256") \
            .hexdigest().encode()

    def save(self) -> None:
        if self == self._saved:
            return
        body = json.dumps(self, sort_keys=True).encode()
        with contextlib.suppress(OSError):
            write_atomic(self.path, self._mac(body) + b"\n" + body)
        self._saved = dict(self)
