"""Merging one definition over another, as jsonmerge does.

:func:`fast_merge` walks a schema with no references or combinators in
plain Python and hands only the nodes that name a strategy to jsonmerge;
:func:`plain_schema` says when that gives jsonmerge's own result.
:func:`check_ids` refuses list items ``arrayMergeById`` would drop, and
:func:`drop_nulls` applies ``null`` as "delete this key".
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from ..errors import DefinitionError
from .shapes import NOWHERE, follow

_COMPOSITE = {"$ref", "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "$defs",
              "definitions"}


def merge_error() -> type[Exception]:
    """jsonmerge's error class, imported when an ``except`` clause meets an error."""
    from jsonmerge.exceptions import JSONMergeError

    return JSONMergeError


def is_ref_error(exc: BaseException) -> bool:
    """jsonschema's ``RefResolutionError`` (private in jsonschema 4.18+) or referencing's."""
    import jsonschema.exceptions

    kinds = [getattr(jsonschema.exceptions, "_RefResolutionError", None)]
    with contextlib.suppress(ImportError):
        from referencing.exceptions import Unresolvable

        kinds.append(Unresolvable)
    return isinstance(exc, tuple(k for k in kinds if isinstance(k, type)))


def plain_schema(schema: Any) -> bool:
    """True when :func:`fast_merge` gives jsonmerge's result for ``schema``: no
    references or combinators anywhere (those need jsonmerge's own walk)."""
    if isinstance(schema, dict):
        return not (_COMPOSITE & set(schema)) and all(plain_schema(v) for v in schema.values())
    if isinstance(schema, list):
        return all(plain_schema(v) for v in schema)
    return True


class _Pointer(Exception):
    """A jsonmerge error from inside :func:`fast_merge`, with the JSON pointer of
    the schema node it was raised under (jsonmerge's own is relative to it)."""

    def __init__(self, exc: Exception, pointer: str) -> None:
        super().__init__(str(exc))
        self.exc = exc
        self.pointer = pointer


def _sub_for(node: dict[str, Any], key: str) -> Any:
    """The subschema of the object schema ``node`` for ``key`` ({} when none)."""
    props = node.get("properties", {})
    if key in props:
        return props[key]
    patterns = node.get("patternProperties", {})
    return next((v for p, v in patterns.items() if re.search(p, key)),
                node.get("additionalProperties", {}))


def fast_merge(base: Any, head: Any, schema: Any, mergers: dict[int, Any],
               pointer: str = "") -> Any:
    """jsonmerge's merge, walked in plain Python where the schema names no strategy.

    Objects merge key by key (an object over a non-object is jsonmerge's
    "Base is not an object" error); anything else replaces. A schema node with
    a ``mergeStrategy`` is handed to jsonmerge as it is. ``base`` None means
    undefined. Neither input is changed; the result may share parts of them.
    """
    node = schema if isinstance(schema, dict) else {}
    if "mergeStrategy" in node or "mergeOptions" in node:
        merger = mergers.get(id(node))
        if merger is None:
            import jsonmerge

            merger = mergers[id(node)] = jsonmerge.Merger(node)
        try:
            return merger.merge(base, head)
        except merge_error() as exc:  # its pointer is relative to this node
            raise _Pointer(exc, pointer) from exc
    if not isinstance(head, dict):
        return head
    if base is None:
        base = {}
    elif not isinstance(base, dict):
        from jsonmerge.exceptions import BaseInstanceError
        from jsonmerge.jsonvalue import JSONValue

        raise BaseInstanceError("Base is not an object", JSONValue(base, f"#{pointer}"),
                                "objectMerge")
    out = dict(base)
    for key, value in head.items():
        sub = _sub_for(node, key) if node else _NO_SCHEMA
        if not isinstance(value, dict) and not (
                isinstance(sub, dict) and ("mergeStrategy" in sub or "mergeOptions" in sub)):
            out[key] = value  # what the call would return: a value replaces
            continue
        out[key] = fast_merge(base.get(key), value, sub, mergers, f"{pointer}/{key}")
    return out


_NO_SCHEMA: dict[str, Any] = {}  # the subschema of every key of a node that has none (read only)


@contextlib.contextmanager
def under(prefix: str) -> Iterator[None]:
    """Put ``prefix`` before the JSON pointer of a merge error raised inside."""
    try:
        yield
    except DefinitionError as exc:
        exc.pointer = prefix + (exc.pointer or "")
        raise


def check_ids(head: Any, schema: Any, file: str, pointer: str = "") -> None:
    """An item that ``arrayMergeById`` cannot key is an error naming the file.

    jsonmerge skips such items silently: a list entry would vanish from the result.
    """
    node = schema if isinstance(schema, dict) else {}
    if node.get("mergeStrategy") == "arrayMergeById" and isinstance(head, list):
        options = node.get("mergeOptions") or {}
        refs = options.get("idRef", "id")
        for i, item in enumerate(head):
            for ref in refs if isinstance(refs, list) else [refs]:
                if follow(item, str(ref)) is NOWHERE:
                    raise DefinitionError(
                        f"item {i} has no id {ref!r} for arrayMergeById (jsonmerge would "
                        "drop it); give it one, or change the strategy in define/schema.json",
                        file=file,
                        pointer=f"{pointer}/{i}",
                    )
            check_ids(item, node.get("items", {}), file, f"{pointer}/{i}")
    elif isinstance(head, dict):
        if not (node.get("properties") or node.get("patternProperties")
                or node.get("additionalProperties")):
            return
        for key, value in head.items():
            sub = _sub_for(node, key)
            if sub:
                check_ids(value, sub, file, f"{pointer}/{key}")


def drop_nulls(value: Any) -> Any:
    """``null`` deletes a key (as in Helm): drop it from the merged result."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    return value
