"""``define/schema.json``: its checks, and reading merge strategies from it.

The schema says how jsonmerge merges each key of the definitions
(``mergeStrategy``). :func:`check_schema` checks its structure when it is
read (only local ``$ref``, every subschema an object or a boolean, known
strategies); :func:`subschema` and :func:`strategy_at` walk it by key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from ..errors import DefinitionError
from .shapes import NOWHERE, escape, expect, follow, suggest, typename

#: jsonmerge's strategies (``jsonmerge.Merger.STRATEGIES``' names)
MERGE_STRATEGIES = ("append", "arrayMergeById", "arrayMergeByIndex", "discard", "objectMerge",
                    "overwrite", "version")
#: keywords whose value is one subschema
_SUB_ONE = ("additionalProperties", "additionalItems", "contains", "propertyNames", "not",
            "if", "then", "else", "unevaluatedProperties", "unevaluatedItems")
#: keywords whose value is an object of subschemas
_SUB_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
#: keywords whose value is a list of subschemas
_SUB_LIST = ("allOf", "anyOf", "oneOf", "prefixItems")


def check_local_refs(schema: Any, file: str, pointer: str = "") -> None:
    """External ``$ref`` could fetch over the network: refuse them."""
    if isinstance(schema, dict):
        for k, v in schema.items():
            if k == "$ref" and isinstance(v, str) and not v.startswith("#"):
                raise DefinitionError(
                    "only local '$ref' (starting with '#') are allowed in a schema",
                    file=file,
                    pointer=f"{pointer}/$ref",
                )
            check_local_refs(v, file, f"{pointer}/{k}")
    elif isinstance(schema, list):
        for i, v in enumerate(schema):
            check_local_refs(v, file, f"{pointer}/{i}")


def check_schema(schema: dict[str, Any], file: str) -> dict[str, Any]:
    """Check the structure of ``define/schema.json``; return it ready for jsonmerge.

    Every subschema is an object or a boolean, every pattern compiles, every
    ``$ref`` resolves in the file, every ``mergeStrategy`` is one of
    jsonmerge's. jsonmerge reads schemas as draft 4, where a boolean is not a
    schema: the copy returned has ``{}`` in their place (for merging, ``true``
    and ``false`` both mean "no strategy").
    """
    return _SchemaCheck(schema, file).sub(schema, "")


class _SchemaCheck:
    """One walk of a schema by :func:`check_schema`; ``$ref`` targets are walked once."""

    def __init__(self, schema: dict[str, Any], file: str) -> None:
        self.schema = schema
        self.file = file
        self.seen: set[int] = set()

    def fail(self, message: str, pointer: str) -> DefinitionError:
        return DefinitionError(message, file=self.file, pointer=pointer or None)

    def sub(self, node: Any, pointer: str) -> Any:
        """The checked copy of the subschema ``node`` found at ``pointer``."""
        if isinstance(node, bool):
            return {}
        if not isinstance(node, dict):
            raise self.fail(f"a subschema must be an object or a boolean, not "
                            f"{typename(node)}", pointer)
        out = dict(node)
        for key, value in node.items():
            p = f"{pointer}/{escape(key)}"
            if key in _SUB_ONE or (key == "items" and not isinstance(value, list)):
                out[key] = self.sub(value, p)
            elif key in _SUB_MAP:
                out[key] = self.sub_map(key, value, p)
            elif key in _SUB_LIST or key == "items":
                if not isinstance(value, list):
                    raise self.fail(f"{key} must be a list of subschemas, not "
                                    f"{typename(value)}", p)
                out[key] = [self.sub(v, f"{p}/{i}") for i, v in enumerate(value)]
            elif key == "dependencies":
                if not isinstance(value, dict):
                    raise self.fail(f"dependencies must be an object, not {typename(value)}", p)
                out[key] = {k: v if isinstance(v, list) else self.sub(v, f"{p}/{escape(k)}")
                            for k, v in value.items()}
            elif key == "$ref":
                self.ref(value, p)
            elif key == "mergeStrategy":
                self.strategy(value, p)
            elif key == "mergeOptions":
                expect(value, dict, "mergeOptions must be an object", self.file, p)
        return out

    def sub_map(self, key: str, value: Any, p: str) -> dict[str, Any]:
        """An object of subschemas (``properties``, ``patternProperties``, ...)."""
        if not isinstance(value, dict):
            raise self.fail(f"{key} must be an object of name: subschema, not "
                            f"{typename(value)}", p)
        if key == "patternProperties":
            for pattern in value:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise self.fail(f"pattern {pattern!r} does not compile: {exc}",
                                    f"{p}/{escape(pattern)}") from exc
        return {k: self.sub(v, f"{p}/{escape(k)}") for k, v in value.items()}

    def ref(self, value: Any, p: str) -> None:
        """A ``$ref`` names a subschema of this file, which is checked too."""
        if not isinstance(value, str):
            raise self.fail(f"$ref must be a string, not {typename(value)}", p)
        target = resolve_ref(self.schema, value)
        if target is NOWHERE:
            raise self.fail(f"$ref {value!r} points to nothing in this schema "
                            "(a local ref is '#/path/to/a/subschema')", p)
        if not isinstance(target, (dict, bool)):
            raise self.fail(f"$ref {value!r} points to {typename(target)}, not a "
                            "subschema", p)
        self.no_cycle(target, value, p)
        if value.strip("#/") and id(target) not in self.seen:
            self.seen.add(id(target))  # a target anywhere is a subschema too
            self.sub(target, "/" + unquote(value[1:].lstrip("/")))

    def no_cycle(self, target: Any, value: str, p: str) -> None:
        """A ``$ref`` that leads, through ``$ref`` only, back to itself names no
        subschema at all (jsonmerge would follow it forever)."""
        seen = {id(target)}
        while isinstance(target, dict) and isinstance(target.get("$ref"), str):
            target = resolve_ref(self.schema, target["$ref"])
            if id(target) in seen:
                raise self.fail(f"$ref {value!r} leads back to itself through $ref only", p)
            seen.add(id(target))

    def strategy(self, value: Any, p: str) -> None:
        if value not in MERGE_STRATEGIES:
            raise self.fail(
                f"unknown merge strategy {value!r}"
                + (suggest(value, MERGE_STRATEGIES) if isinstance(value, str) else "")
                + f" (jsonmerge's: {', '.join(MERGE_STRATEGIES)})", p)


def resolve_ref(schema: Any, ref: str) -> Any:
    """What the local ``ref`` (``#/a/b``) names in ``schema``; ``NOWHERE`` if nothing."""
    if not ref.startswith("#"):
        return NOWHERE
    fragment = ref[1:].lstrip("/")  # as jsonschema's RefResolver.resolve_fragment
    return follow(schema, unquote(fragment))


def subschema(schema: Mapping[str, Any], path: list[str], additional: bool = False) -> Any:
    """The subschema for the keys ``path`` (with ``additional``: its
    ``additionalProperties``, the schema of each of its values); None if none."""
    node: Any = schema
    for key in path:
        node = child(node, key)
        if node is None:
            return None
    if additional and isinstance(node, Mapping) and "additionalProperties" in node:
        return node["additionalProperties"]
    return node


def child(node: Any, key: str) -> Any:
    """The subschema of ``node`` for its key ``key`` (None when there is none)."""
    if not isinstance(node, Mapping):
        return None
    props = node.get("properties", {})
    if key in props:
        return props[key]
    for pattern, sub in node.get("patternProperties", {}).items():
        if re.search(pattern, key):
            return sub
    return node.get("additionalProperties")


def strategy_at(schema: Mapping[str, Any], path: list[str]) -> str | None:
    """The jsonmerge strategy the schema names for ``path``, if any."""
    node = subschema(schema, path)
    if isinstance(node, Mapping):
        return node.get("mergeStrategy")
    return None
