"""Read tracking: a view of a context dict that records every value a template
reads, by dotted path, and the lookup of such a path in a context now.

The build saves digests of what was read (never the values) and, on the next
run, compares them with digests of what :func:`lookup_path` finds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from ..digest import ABSENT_VALUE


class Tracked(Mapping):
    """A read-recording view of a context dict: ``rec[path] = value`` on every read."""

    __slots__ = ("_data", "_path", "_rec")

    def __init__(self, data: Mapping[str, Any], path: str, rec: dict[str, Any]) -> None:
        self._data = data
        self._path = path
        self._rec = rec

    def __getitem__(self, key: Any) -> Any:
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
    tracked = {k: Tracked(v, k, rec) if isinstance(v, dict) else v for k, v in ctx.items()}
    if this is not None:
        value = lookup_path(ctx, this)
        tracked["this"] = Tracked(value, this, rec) if isinstance(value, dict) else value
    return tracked


def lookup_path(ctx: Mapping[str, Any], path: str) -> Any:
    """The value a recorded path names now (``ABSENT_VALUE`` when gone)."""
    keys_of = path.endswith("[keys]")
    if keys_of:
        path = path[: -len("[keys]")]
    node: Any = ctx
    parts = path.split(".")
    # a dotted key can itself contain dots; try the longest match at each level
    i = 0
    while i < len(parts):
        if not isinstance(node, Mapping):
            return ABSENT_VALUE
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if key in node:
                node = node[key]
                i = j
                break
        else:
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
