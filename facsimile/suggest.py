"""Did-you-mean for names that are not there: the closest key of the mapping a
lookup was made on (a template's ``instance.app.prot``, ``facs show
--explain app.wrokers``), by :mod:`difflib`'s ratio."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

#: how alike a key must be to be suggested (difflib's ratio, 0..1)
CUTOFF = 0.6


def close_key(word: str, keys: Iterable[Any], cutoff: float = CUTOFF) -> str | None:
    """The string key in ``keys`` closest to ``word``, or ``None`` if none is close."""
    choices = [k for k in keys if isinstance(k, str) and k != word]
    close = difflib.get_close_matches(word, choices, n=1, cutoff=cutoff)
    return close[0] if close else None


def did_you_mean_path(doc: Mapping[str, Any], path: str) -> str | None:
    """The dotted path set in ``doc`` that ``path`` most likely meant: ``path``
    with its first missing key replaced by the closest key at that level (and
    the rest kept when it is then found). ``None`` when nothing is close or
    ``path`` is found as it is."""
    parts = path.split(".")
    node: Any = doc
    for i, part in enumerate(parts):
        if not isinstance(node, Mapping):
            return None
        if part in node:
            node = node[part]
            continue
        close = close_key(part, node)
        if close is None:
            return None
        fixed = [*parts[:i], close]
        rest = parts[i + 1:]
        return ".".join(fixed + rest) if _has(node[close], rest) else ".".join(fixed)
    return None


def _has(node: Any, parts: list[str]) -> bool:
    """Whether the keys ``parts`` lead somewhere from ``node``."""
    for part in parts:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True
