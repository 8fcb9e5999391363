"""The glob patterns of the definitions: ``targets.<t>.files``,
``deploy.exclude``, ``deploy.delete`` (read by the sync) and ``modes`` (read by
the build). ``glob_regex`` turns a pattern into a
regular expression over a file's relative path (``/`` separated),
``matches`` tests a path against several, and ``check_pattern`` refuses a
pattern that would reach outside the destination.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from .errors import SyncError


def glob_regex(pattern: str) -> re.Pattern[str]:
    """``**`` crosses folders, ``*`` and ``?`` stay within one; a pattern without
    ``/`` matches a file name at any depth (as in rsync and .gitignore)."""
    anywhere = "/" not in pattern.rstrip("/")
    pattern = pattern.rstrip("/")
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        out.append({"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c)))
        i += 1
    body = "".join(out)
    # a folder name matches everything below it too
    return re.compile(("(?:.*/)?" if anywhere else "") + body + "(?:/.*)?$")


def matches(rel: str, patterns: Iterable[re.Pattern[str]]) -> bool:
    """Whether the relative path ``rel`` matches any of ``patterns``."""
    return any(p.match(rel) for p in patterns)


def matcher(patterns: Iterable[re.Pattern[str]]) -> Callable[[str], bool] | None:
    """One test of a path against all of ``patterns`` at once (``matches`` with
    one regular expression); None when there are none."""
    found = [p.pattern for p in patterns]
    if not found:
        return None
    one = re.compile(found[0] if len(found) == 1 else "|".join(f"(?:{p})" for p in found))
    return lambda rel: one.match(rel) is not None


def check_pattern(pattern: str, what: str) -> None:
    """Refuse ``pattern`` (named ``what`` in the error) if it is absolute or has '..'."""
    parts = pattern.split("/")
    if pattern.startswith("/") or ".." in parts:
        raise SyncError(f"{what} {pattern!r} would escape the destination: "
                        "use a relative pattern without '..'")
