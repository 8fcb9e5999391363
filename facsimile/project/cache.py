"""The model cache: resolved definitions kept in ``.facsimile/model.pickle``.

It is keyed by :data:`CACHE_FORMAT`, facsimile's version and the stat of
every definition file. When only instance or abstract definitions changed,
only the instances made from them are resolved again; any other change
means a full load. A cache that cannot be read or written only costs time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

from .. import define as D
from ..atomic import write_atomic

#: 8: the classes moved to facsimile.define; 7: provenance made when asked
CACHE_FORMAT = 8

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
    cached = _read_cache(cache_file, key) if use_cache else None
    if cached is not None:
        old_stats, model = cached
        if old_stats == stats:
            return model
        if _update(root, model, old_stats, stats):
            _write_cache(cache_file, (key, stats, model))
            return model
    defs = D.load(root)
    instances = D.resolve_all(defs)
    model = (defs, instances, model_digests(defs, instances))
    if use_cache:
        _write_cache(cache_file, (key, stats, model))
    return model


def _stat_key(file: Path) -> tuple[int, int]:
    st = file.stat()
    return st.st_mtime_ns, st.st_size


def _read_cache(path: Path, key: Any) -> tuple[dict[str, Any], Model] | None:
    """The cached stats and model, if the cache is there, readable and ``key``'s."""
    with contextlib.suppress(Exception):
        with open(path, "rb") as fh:
            cached_key, cached_stats, payload = pickle.load(fh)
        if cached_key == key:
            return cached_stats, payload
    return None


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


def _write_cache(path: Path, payload: Any) -> None:
    """Best effort: a cache that cannot be written only costs time."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL), 0o600)
