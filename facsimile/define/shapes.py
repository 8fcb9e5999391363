"""Small helpers for checking JSON values read from definition files.

They name a value's JSON type the way error messages do, suggest the near
miss of a misspelt word, refuse a value of the wrong type with an error
naming its file and JSON pointer, and escape and follow JSON pointers.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from typing import Any

from ..errors import DefinitionError

#: what :func:`follow` returns when a pointer names nothing
NOWHERE: Any = object()


def typename(value: Any) -> str:
    """``value``'s JSON type as error messages name it: "an object", "a list", ..."""
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def suggest(word: str, choices: list[str] | tuple[str, ...], cutoff: float = 0.6) -> str:
    """``", did you mean 'x'?"`` for the choice closest to ``word``, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return f", did you mean {close[0]!r}?" if close else ""


@lru_cache(maxsize=4096)
def close_match(key: str, known: tuple[str, ...]) -> str | None:
    """The known key ``key`` is a near miss of (free keys repeat in every instance)."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.8)
    return close[0] if close else None


def expect(value: Any, kind: type | tuple[type, ...], what: str, file: str,
           pointer: str) -> None:
    """Refuse ``value`` unless it is a ``kind`` (a boolean is no number)."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise DefinitionError(f"{what}, not {typename(value)}", file=file, pointer=pointer)


def str_list(value: Any, what: str, file: str, pointer: str) -> None:
    """Refuse ``value`` unless it is a list of strings."""
    expect(value, list, f"{what} must be a list of strings", file, pointer)
    for i, item in enumerate(value):
        expect(item, str, f"{what} must be a list of strings", file, f"{pointer}/{i}")


def escape(key: str) -> str:
    """``key`` as one JSON pointer segment."""
    return key.replace("~", "~0").replace("/", "~1")


def follow(node: Any, pointer: str) -> Any:
    """What the JSON pointer (``a/b``, no leading ``/`` needed) names in ``node``;
    :data:`NOWHERE` if nothing."""
    for part in pointer.lstrip("/").split("/") if pointer.lstrip("/") else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return NOWHERE
    return node


def check_glob_key(glob: str, key: str, file: str, pointer: str) -> None:
    """A glob that keys ``modes`` or ``validate``: not empty, a pattern facsimile takes."""
    from ..errors import SyncError
    from ..globs import check_pattern  # imported only when used

    if not glob:
        raise DefinitionError(f"a glob in {key} must not be empty", file=file, pointer=pointer)
    try:
        check_pattern(glob, "the glob")
    except SyncError as exc:
        raise DefinitionError(exc.message, file=file, pointer=pointer) from None
