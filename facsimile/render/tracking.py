"""Read tracking: a view of a context dict that records every value a template
reads, by dotted path, and the lookup of such a path in a context now.

The build saves digests of what was read (never the values) and, on the next
run, compares them with digests of what :func:`lookup_path` finds.

A path is its keys joined by ``.``; a key holding ``.``, ``\\`` or ``[`` has
each of those escaped with a ``\\`` (:func:`segment`), so that ``{"www.shop":
...}`` and ``{"www": {"shop": ...}}`` are two paths. Keys without those keep
the plain form, and so do the records made before. ``<path>[keys]`` is the read
of a mapping's keys. Top-level names that are not mappings (a project class's
``extra_context()`` scalars and lists) are recorded when a template names
them (:data:`TOP_READS`).
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Iterator, Mapping
from typing import Any

from ..digest import ABSENT_VALUE

#: ``(rec, names)`` of the render under way: top-level names whose values are not
#: mappings, recorded into ``rec`` when a template resolves one
TOP_READS: contextvars.ContextVar[tuple[dict[str, Any], frozenset[str]]] = (
    contextvars.ContextVar("facsimile_top_reads"))


_PLAIN = (str, int, float, list, tuple)


def segment(key: Any) -> str:
    """``key`` as one segment of a recorded path (escaped when it holds ``.``,
    ``\\`` or ``[``)."""
    if type(key) is str and ("." in key or "\\" in key or "[" in key):
        return key.replace("\\", "\\\\").replace(".", "\\.").replace("[", "\\[")
    return str(key)


def split_path(path: str) -> tuple[list[str], bool]:
    """The keys of a recorded path, and whether it is the read of their keys."""
    if "\\" not in path:
        keys_of = path.endswith("[keys]")
        return (path[: -len("[keys]")] if keys_of else path).split("."), keys_of
    parts: list[str] = []
    cur: list[str] = []
    i, n = 0, len(path)
    while i < n:
        c = path[i]
        if c == "\\" and i + 1 < n:
            cur.append(path[i + 1])
            i += 2
            continue
        if c == "[" and path[i:] == "[keys]":
            parts.append("".join(cur))
            return parts, True
        if c == ".":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts, False


class Tracked(Mapping):
    """A read-recording view of a context dict: ``rec[path] = value`` on every read."""

    __slots__ = ("_data", "_path", "_rec")

    def __init__(self, data: Mapping[str, Any], path: str, rec: dict[str, Any]) -> None:
        self._data = data
        self._path = path
        self._rec = rec

    def __getitem__(self, key: Any) -> Any:
        if type(key) is str and ("." in key or "\\" in key or "[" in key):
            p = f"{self._path}.{segment(key)}"
        else:
            p = f"{self._path}.{key}"
        try:
            v = self._data[key]
        except (KeyError, TypeError):
            self._rec.setdefault(p, ABSENT_VALUE)
            raise KeyError(key) from None
        if isinstance(v, dict):
            return Tracked(v, p, self._rec)
        self._rec[p] = v
        return v

    def __iter__(self) -> Iterator[str]:
        self._rec[self._path + "[keys]"] = sorted(self._data)
        return iter(self._data)

    def __len__(self) -> int:
        self._rec[self._path + "[keys]"] = sorted(self._data)
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        self._rec[self._path + "[keys]"] = sorted(self._data)
        return key in self._data

    def unwrap(self) -> Mapping[str, Any]:
        """The whole value, recorded as read."""
        self._rec[self._path] = self._data
        return self._data

    def __str__(self) -> str:
        return str(self.unwrap())

    __repr__ = __str__


TRACKED_ATTRS = frozenset(dir(Tracked))  # what ``getattr`` finds on a Tracked first


def track(ctx: Mapping[str, Any], rec: dict[str, Any], this: str | None) -> dict[str, Any]:
    """The context a template renders with: each dict a :class:`Tracked` recording
    into ``rec``; ``this``: a context path also bound to ``this`` (fan-out)."""
    tracked = {k: Tracked(v, segment(k), rec) if isinstance(v, dict) else v
               for k, v in ctx.items()}
    if this is not None:
        value = lookup_path(ctx, this)
        tracked["this"] = Tracked(value, this, rec) if isinstance(value, dict) else value
    return tracked


def top_names(ctx: Mapping[str, Any]) -> frozenset[str]:
    """The top-level names of ``ctx`` whose values are plain data, not mappings
    (a function a project class hands templates is code, not a value to record)."""
    return frozenset(k for k, v in ctx.items() if v is None or isinstance(v, _PLAIN))


def lookup_path(ctx: Mapping[str, Any], path: str) -> Any:
    """The value a recorded path names now (``ABSENT_VALUE`` when gone)."""
    parts, keys_of = split_path(path)
    node: Any = ctx
    for key in parts:
        if not isinstance(node, Mapping):
            return ABSENT_VALUE
        try:
            node = node[key]
        except KeyError:
            return ABSENT_VALUE
    if keys_of:
        return sorted(node) if isinstance(node, Mapping) else ABSENT_VALUE
    return node


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Tracked):
        return obj.unwrap()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def tojson_dumps(obj: Any, **kwargs: Any) -> str:
    """Jinja2's ``tojson`` for a tracked value: the whole value, recorded as read."""
    if isinstance(obj, Tracked):
        obj = obj.unwrap()
    return json.dumps(obj, default=_json_default, **kwargs)
