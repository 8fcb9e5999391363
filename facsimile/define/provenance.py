"""Provenance: which definition files set each value of an instance.

Made when asked (``facs show --explain``, the file an error names), never
by a build: :func:`provenance` walks the instance's resolution order the
way the merge does, noting for each dotted key the files that set it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .read import Definitions
from .resolve import Instance, Resolver
from .schema import child, subschema

#: strategies under which a later file adds to a value instead of replacing it
_ACCUMULATING = ("append", "arrayMergeById", "arrayMergeByIndex")


def provenance(defs: Definitions, inst: Instance) -> dict[str, list[str]]:
    """``inst.provenance`` (``"a.b.c" -> files``), made on first use."""
    if inst.provenance is None:
        inst.provenance = _of_order(Resolver(defs), tuple(inst.chain), {})
    return inst.provenance


def _of_order(resolver: Resolver, order: tuple[str, ...],
              memo: dict[tuple[str, ...], dict[str, list[str]]]) -> dict[str, list[str]]:
    """Which files set each value of ``order``'s merge; shared prefixes memoized."""
    found = memo.get(order)
    if found is not None:
        return found
    prov = dict(_of_order(resolver, order[:-1], memo)) if len(order) > 1 else {}
    data, path = resolver.layer(order[-1])
    record_provenance(prov, data, path, resolver.defs.schema)
    memo[order] = prov
    return prov


def record_provenance(
    prov: dict[str, list[str]], data: Any, file: str, schema: Mapping[str, Any],
    path: tuple[str, ...] = (),
) -> None:
    """Note ``file`` as the setter of every value ``data`` contains."""
    _walk(prov, data, file, subschema(schema, list(path)) if path else schema, path)


def _walk(prov: dict[str, list[str]], data: Any, file: str, node: Any,
          path: tuple[str, ...]) -> None:
    """:func:`record_provenance` with ``node``, the subschema at ``path``, walked along."""
    strategy = node.get("mergeStrategy") if path and isinstance(node, Mapping) else None
    if isinstance(data, dict) and strategy != "overwrite":
        # objects merge: ``{}`` adds this file to the key, and changes nothing below it
        for key, value in data.items():
            _walk(prov, value, file, child(node, key), (*path, key))
        if path:
            key = ".".join(path)
            prov.setdefault(key, [])
            if file not in prov[key]:
                prov[key] = [*prov[key], file]
        return
    key = ".".join(path)
    if strategy in _ACCUMULATING and key in prov:
        prov[key] = [*prov[key], file] if file not in prov[key] else prov[key]
    else:
        # a replaced value: deeper entries set earlier no longer stand (there are
        # some only where an object stood, and an object has an entry of its own)
        if key in prov or not key:
            for old in [k for k in prov if k.startswith(key + ".")]:
                del prov[old]
        prov[key] = [file]
