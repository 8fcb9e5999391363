"""Masking: how a generated value is hidden in what facsimile prints.

:data:`MASK` stands in for every value shown masked; :func:`mask` puts it
in place of the values at given dotted paths of a document.
"""

from __future__ import annotations

from typing import Any

MASK = "********"


def mask(value: Any, paths: set[str], prefix: str = "") -> Any:
    """A copy of ``value`` with every path in ``paths`` replaced by ``********``."""
    if isinstance(value, dict):
        return {
            k: MASK if f"{prefix}{k}" in paths else mask(v, paths, f"{prefix}{k}.")
            for k, v in value.items()
        }
    return value
