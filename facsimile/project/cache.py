"""The model cache: resolved definitions kept in ``.facsimile/model.pickle``.

It is keyed by :data:`CACHE_FORMAT`, facsimile's version and the stat of
every definition file. When only instance or abstract definitions changed,
only the instances made from them are resolved again; any other change
means a full load. A cache that cannot be read or written only costs time.

Unpickling runs code, so the file is authenticated before it is unpickled:
it starts with an HMAC of the rest, keyed with the root's digest key
(``state/.digest-key``). Without that key (before the first build) there is
no cache; a file whose HMAC or shape is wrong is ignored and rewritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import pickle
from pathlib import Path
from typing import Any

from .. import define as D
from ..atomic import write_atomic
from ..errors import FacsimileError
from ..state.digest import stored_key

#: the length of the HMAC-SHA256 the cache file starts with
_MAC_SIZE = 32
#: 9: authenticated; 8: the classes moved to facsimile.define; 7: provenance made when asked
CACHE_FORMAT = 9

Model = tuple[D.Definitions, dict[str, D.Instance], dict[str, str]]


def model_digests(defs: D.Definitions, instances: dict[str, D.Instance]) -> dict[str, str]:
    """Per instance a digest of its resolved data, modules and targets; "" for the project."""

    def dig(value: Any) -> str:
        data = json.dumps(value, sort_keys=True, default=str).encode()
        return hashlib.blake2b(data, digest_size=8).hexdigest()

    out = {name: dig([i.data, i.modules, i.targets]) for name, i in instances.items()}
    # "state" says where state lives and whom it is sealed to: no output depends on it
    project = {k: v for k, v in defs.project.data.items() if k != "state"}
    out[""] = dig([project, defs.modules])
    return out


def load_model(root: D.Root, use_cache: bool) -> Model:
    """Definitions and resolved instances, from the cache where their files are unchanged.

    When only instance or abstract definition files changed (not the project,
    modules or schema, and no file came or went), only the instances whose
    inheritance chain names a changed file are resolved again.
    """
    from .. import __version__

    files = D.definition_files(root)
    stats = {str(f): _stat_key(f) for f in files}
    key = (CACHE_FORMAT, __version__)
    cache_file = root.cache / "model.pickle"
    mac_key = _mac_key(root) if use_cache else None
    cached = _read_cache(cache_file, key, mac_key) if mac_key else None
    if cached is not None:
        old_stats, model = cached
        if old_stats == stats:
            return model
        if _update(root, model, old_stats, stats):
            _write_cache(cache_file, (key, stats, model), mac_key)
            return model
    defs = D.load(root)
    instances = D.resolve_all(defs)
    model = (defs, instances, model_digests(defs, instances))
    if mac_key:
        _write_cache(cache_file, (key, stats, model), mac_key)
    return model


def _mac_key(root: D.Root) -> bytes | None:
    """The key of the cache's HMAC: the root's digest key (plain, or sealed and
    opened with this run's identity), None when there is none yet or it cannot be
    read (then nothing is cached; the build reports a damaged key)."""
    try:
        key = stored_key(root.state)
    except (OSError, FacsimileError):
        return None
    return hashlib.blake2b(key, person=b"model.pickle").digest() if key else None


def _stat_key(file: Path) -> tuple[int, int]:
    st = file.stat()
    return st.st_mtime_ns, st.st_size


def _read_cache(path: Path, key: Any, mac_key: bytes) -> tuple[dict[str, Any], Model] | None:
    """The cached stats and model, if the cache is there, authentic, of the right
    shape and ``key``'s. Nothing is unpickled before its HMAC is checked."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    mac, body = data[:_MAC_SIZE], data[_MAC_SIZE:]
    if not hmac.compare_digest(mac, hmac.digest(mac_key, body, "sha256")):
        return None
    with contextlib.suppress(Exception):
        cached = pickle.loads(body)
        if _is_cache(cached) and cached[0] == key:
            return cached[1], cached[2]
    return None


def _is_cache(cached: Any) -> bool:
    """Whether ``cached`` is ``(key, stats, (Definitions, instances, digests))``."""
    if not (isinstance(cached, tuple) and len(cached) == 3 and isinstance(cached[1], dict)):
        return False
    model = cached[2]
    return (isinstance(model, tuple) and len(model) == 3
            and isinstance(model[0], D.Definitions) and isinstance(model[1], dict)
            and all(isinstance(i, D.Instance) for i in model[1].values())
            and isinstance(model[2], dict))


def _update(root: D.Root, model: Model, old_stats: dict[str, Any],
            stats: dict[str, Any]) -> bool:
    """Bring ``model`` up to date in place by re-reading the changed instance and
    abstract files; False (nothing changed) when a full load is needed."""
    defs, instances, digests = model
    changed = [Path(f) for f in stats if old_stats.get(f) != stats[f]]
    fixed = {str(root.project_file), str(root.define / D.MODULES_FILE),
             str(root.define / D.SCHEMA_FILE)}
    if set(old_stats) != set(stats) or fixed & {str(c) for c in changed}:
        return False
    names = set(D.reload_changed(root, defs, changed))
    resolver = D.Resolver(defs)
    for name, inst in list(instances.items()):
        if names & set(inst.uses):
            instances[name] = resolver.instance(name)
    for name, inst in instances.items():
        if names & set(inst.uses):
            digests[name] = model_digests(defs, {name: inst})[name]
    return True


def _write_cache(path: Path, payload: Any, mac_key: bytes) -> None:
    """Best effort: a cache that cannot be written only costs time."""
    body = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, hmac.digest(mac_key, body, "sha256") + body, 0o600)
