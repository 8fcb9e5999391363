"""Resolving inheritance: definitions in, :class:`Instance` objects out.

:func:`resolution_order` lists the definitions an instance is made from,
:class:`Resolver` merges them in that order by the schema's strategies
(sharing the merge of common prefixes), and :func:`resolve_all` resolves
every instance. Merge errors name the file and JSON pointer.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..errors import DefinitionError
from .merge import (
    _Pointer,
    check_ids,
    drop_nulls,
    fast_merge,
    is_ref_error,
    merge_error,
    plain_schema,
    under,
)
from .read import Definitions
from .schema import subschema
from .validate import INSTANCE_KEYS, PROJECT_ONLY_KEYS, normalize_modules


@dataclass
class Instance:
    """One resolved instance or subinstance: plain data, no state."""

    name: str
    family: str  # the top-level instance whose state it shares
    data: dict[str, Any]  # resolved definition, "name" set, "inherit" dropped
    chain: list[str]  # definition names applied, in order
    files: list[str]  # their files, in order
    modules: dict[str, dict[str, Any]]  # project modules overlaid by the instance's
    targets: dict[str, dict[str, Any]]  # resolved targets (their own inherit applied)
    regions: list[str] = field(default_factory=list)
    #: every definition it was made from: the chain, then its targets' parents
    uses: list[str] = field(default_factory=list)
    #: "a.b.c" -> files that set it; made when asked (see :func:`facsimile.define.provenance`)
    provenance: dict[str, list[str]] | None = None

    @property
    def layers(self) -> list[str]:
        """Template layers, lowest first: ``_ALL_``, ``prod``, ``prod.ch1``."""
        parts = self.name.split(".")
        return ["_ALL_"] + [".".join(parts[: i + 1]) for i in range(len(parts))]

    @property
    def hosts(self) -> list[tuple[str, str]]:
        """``(host, target)`` for every host of every target."""
        return [(h, t) for t, spec in self.targets.items() for h in spec.get("hosts", [])]


#: how many definitions deep an inheritance chain may go
MAX_INHERIT_DEPTH = 200


def ancestry(defs: Definitions, name: str, _stack: tuple[str, ...] = ()) -> list[str]:
    """Names applied before ``name``: each parent's own ancestry first, deduplicated."""
    if name in _stack:
        chain = " -> ".join([*_stack[_stack.index(name):], name])
        d = defs.get(_stack[-1]) or defs.project
        raise DefinitionError(f"inheritance cycle: {chain}", file=d.path, pointer="/inherit")
    if len(_stack) >= MAX_INHERIT_DEPTH:
        d = defs.get(_stack[0]) or defs.project
        raise DefinitionError(f"inheritance goes more than {MAX_INHERIT_DEPTH} definitions "
                              f"deep ({' -> '.join(_stack[:3])} -> ... -> {name})",
                              file=d.path, pointer="/inherit")
    d = defs.project if name == "facsimile" else defs.get(name)
    assert d is not None
    out: list[str] = []
    for parent in d.inherit:
        for n in [*ancestry(defs, parent, (*_stack, name)), parent]:
            if n not in out:
                out.append(n)
    return out


def resolution_order(defs: Definitions, name: str) -> list[str]:
    """``facsimile`` -> ancestry of ``prod`` -> ``prod`` -> ... -> ``prod.ch1``.

    A definition reached twice is applied once, at its first place, so that a
    child's settings are never undone by re-applying a shared ancestor.
    """
    parts = name.split(".")
    levels = ["facsimile"] + [".".join(parts[: i + 1]) for i in range(len(parts))]
    order: list[str] = []
    for level in levels:
        for n in [*ancestry(defs, level), level]:
            if n not in order:
                order.append(n)
    return order


def _regions(order: list[str] | tuple[str, ...]) -> list[str]:
    """The region names (``regions/<name>``) among ``order``, in order."""
    return [n.split("/", 1)[1] for n in order if n.startswith("regions/")]


class Resolver:
    """Merges definitions by the schema's strategies; memoizes shared prefixes."""

    def __init__(self, defs: Definitions, schema_file: str = "define/schema.json") -> None:
        self.defs = defs
        self.schema_file = schema_file
        self._memo: dict[tuple[str, ...], dict[str, Any]] = {}
        self._fast: dict[int, bool] = {}
        self._by_id: dict[int, bool] = {}
        self._mergers: dict[int, Any] = {}

    def layer(self, name: str) -> tuple[dict[str, Any], str]:
        """What the definition ``name`` adds to a merge, and its file."""
        d = self.defs.project if name == "facsimile" else self.defs.get(name)
        assert d is not None
        data = {k: v for k, v in d.data.items() if k not in ("inherit", "modules")}
        if name == "facsimile":
            data = {k: v for k, v in data.items() if k not in PROJECT_ONLY_KEYS}
        return data, d.path

    @cached_property
    def merger(self) -> Any:
        """jsonmerge's Merger for the whole schema, made only when a schema with
        references or combinators needs jsonmerge's own walk."""
        import jsonmerge

        return jsonmerge.Merger(self.defs.schema)

    @cached_property
    def module_merger(self) -> Any:
        """jsonmerge's Merger for one module, by the schema's ``modules`` values."""
        import jsonmerge

        return jsonmerge.Merger(subschema(self.defs.schema, ["modules"], additional=True) or {})

    def merged(self, order: tuple[str, ...]) -> dict[str, Any]:
        """The merge of ``order``'s layers."""
        found = self._memo.get(order)
        if found is not None:
            return found
        base = self.merged(order[:-1]) if len(order) > 1 else {}
        data, path = self.layer(order[-1])
        result = self.merge(base, data, path, "project", self.defs.schema)
        self._memo[order] = result
        return result

    def merge(self, base: Any, head: Any, file: str, which: str, schema: dict[str, Any]) -> Any:
        """``head`` merged over ``base`` by ``schema``'s strategies, which is the
        project's (``which="project"``) or the modules' (``"modules"``)."""
        if self._by_id.get(id(schema)) is None:
            self._by_id[id(schema)] = "arrayMergeById" in json.dumps(schema)
        if self._by_id[id(schema)]:
            check_ids(head, schema, file)
        try:
            if self._fast.get(id(schema), None) is None:
                self._fast[id(schema)] = plain_schema(schema)
            if self._fast[id(schema)]:
                return fast_merge(base, head, schema, self._mergers)
            merger = self.module_merger if which == "modules" else self.merger
            return merger.merge(base, head)  # jsonmerge copies what it changes
        except RecursionError as exc:  # a $ref cycle check_schema did not catch
            raise DefinitionError(f"cannot merge: the $refs of {self.schema_file} recurse "
                                  "without end", file=file) from exc
        except _Pointer as wrapped:
            raise self._pointer_error(wrapped, file) from wrapped.exc
        except merge_error() as exc:
            raise self._merge_error(exc, file) from exc
        except Exception as exc:
            if not is_ref_error(exc):
                raise
            detail = str(exc.args[0] if exc.args else exc).splitlines()[0]
            hint = (" (a $ref inside the modules' subschema resolves within that subschema)"
                    if which == "modules" else "")
            raise DefinitionError(f"cannot merge: a $ref in {self.schema_file} does not "
                                  f"resolve: {detail}{hint}", file=file) from exc

    def _pointer_error(self, wrapped: _Pointer, file: str) -> DefinitionError:
        """The error for jsonmerge's error inside :func:`fast_merge`."""
        exc = wrapped.exc
        ref = getattr(getattr(exc, "value", None), "ref", None)
        pointer = wrapped.pointer + (ref.lstrip("#") if isinstance(ref, str) else "")
        message = (f"cannot merge ({getattr(exc, 'strategy_name', None) or 'merge'}): "
                   f"{getattr(exc, 'message', exc)}; strategies from {self.schema_file}")
        return DefinitionError(message, file=file, pointer=pointer or None)

    def _merge_error(self, exc: Any, file: str) -> DefinitionError:
        """The error for jsonmerge's own merge error."""
        ref = getattr(exc.value, "ref", None)
        pointer = ref.lstrip("#") if isinstance(ref, str) else None
        if exc.message == "Base is not an object":
            message = ("an object cannot merge into the list or value a parent set here; "
                       "to replace it, give this key \"mergeStrategy\": \"overwrite\" in "
                       f"{self.schema_file}")
        else:
            message = (f"cannot merge ({exc.strategy_name or 'merge'}): {exc.message}; "
                       f"strategies from {self.schema_file}")
        return DefinitionError(message, file=file, pointer=pointer or None)

    def instance(self, name: str) -> Instance:
        """The resolved instance ``name``."""
        order = tuple(resolution_order(self.defs, name))
        data = drop_nulls(self.merged(order))
        modules = self._modules(order)
        targets = self._targets(name, data.get("targets") or {}, order)
        uses = list(dict.fromkeys([*order, *(n for t in targets.values()
                                             for n in t.pop("_uses", ()))]))
        data["targets"] = targets
        data["name"] = name
        files = [
            (self.defs.project if n == "facsimile" else self.defs.get(n)).path  # type: ignore[union-attr]
            for n in order
        ]
        return Instance(
            name=name,
            family=name.split(".")[0],
            data=data,
            chain=list(order),
            files=files,
            modules=modules,
            targets=targets,
            regions=_regions(order),
            uses=uses,
        )

    def _modules(self, order: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """The project's modules, overlaid by each definition's ``modules`` in order."""
        modules = copy.deepcopy(self.defs.modules)
        mschema = subschema(self.defs.schema, ["modules"], additional=True) or {}
        for n in order:
            if n == "facsimile":
                continue
            d = self.defs.get(n)
            assert d is not None
            if "modules" in d.data:
                overlay = normalize_modules(d.data["modules"], d.path, "/modules")
                for mname, mdata in overlay.items():
                    with under(f"/modules/{mname}"):
                        modules[mname] = self.merge(
                            modules.get(mname, {}), mdata, d.path, "modules", mschema
                        )
        return {k: drop_nulls(v) for k, v in modules.items()}

    def _targets(
        self, instance: str, targets: dict[str, Any], chain: tuple[str, ...]
    ) -> dict[str, dict[str, Any]]:
        """Each target with its own ``inherit`` applied (and ``_uses``: what it
        was made from, taken out by :meth:`instance`)."""
        out: dict[str, dict[str, Any]] = {}
        for tname, spec in targets.items():
            spec = dict(spec or {})
            parents = spec.pop("inherit", [])
            if parents:
                order: list[str] = []
                for p in parents:
                    for n in [*ancestry(self.defs, p), p]:
                        if n not in order:
                            order.append(n)
                base = self.merged(tuple(order)) if order else {}
                base = {k: v for k, v in base.items() if k not in INSTANCE_KEYS}
                # a merge error belongs to the file that set the target last
                file = next((path for data, path in map(self.layer, reversed(chain))
                             if isinstance(data.get("targets"), dict)
                             and tname in data["targets"]), f"define/{instance}.json")
                with under(f"/targets/{tname}"):
                    spec = drop_nulls(self.merge(base, spec, file, "project", {}))
                spec["regions"] = _regions(order)
                spec["_uses"] = order
            spec.setdefault("hosts", [])
            out[tname] = spec
        return out


def resolve_all(defs: Definitions) -> dict[str, Instance]:
    """Every instance and subinstance, resolved."""
    resolver = Resolver(defs)
    return {name: resolver.instance(name) for name in sorted(defs.instances)}


def lookup(data: Any, dotted: str) -> Iterator[Any]:
    """Yield the value at ``a.b.c`` (list items by index), or nothing."""
    node = data
    for part in dotted.split(".") if dotted else []:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return
    yield node
