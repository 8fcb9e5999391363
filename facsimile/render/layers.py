"""Layer folders: the files of every folder under ``tmpl/`` and ``extra/``, and
where a template name resolves through a search path.

Each folder is walked once per run (:class:`LayerIndex`); a name is resolved
once per search path. Both the Jinja2 environment (to load a template) and
the build's check (to see whether an include now comes from another file)
resolve through :meth:`LayerIndex.resolve`, so the two cannot disagree.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

LIB = "_lib"  # the folder of tmpl/ searched after every layer

# Never outputs: version-control folders, editors' swap and backup files, caches.
SKIP_DIRS = frozenset((".git", ".hg", ".svn", "__pycache__"))
SKIP_PREFIX = (".#",)
SKIP_SUFFIX = ("~", ".swp", ".swo", ".pyc")
SKIP_NAMES = frozenset((".DS_Store",))


@dataclass
class LayerIndex:
    """Files of every layer folder under ``tmpl/`` and ``extra/``, listed once per run,
    and template names resolved through search paths (the index is fixed for the run)."""

    base: Path
    folders: dict[str, dict[str, str]] = field(default_factory=dict)
    resolved: dict[tuple[tuple[str, ...], str], str | None] = field(default_factory=dict)

    def files(self, folder: Path | str) -> dict[str, str]:
        """``{relpath: path}`` of every file below ``folder`` (cached; plain strings,
        since pathlib costs more than the walk itself at 10k files)."""
        key = str(folder)
        found = self.folders.get(key)
        if found is None:
            found = self.folders[key] = dict(walk(key))
        return found

    def resolve(self, name: str, search: tuple[str, ...]) -> str | None:
        """The file template ``name`` names through ``search`` (folders, highest
        first), or ``None``: not found, or a name that escapes the folders."""
        key = (search, name)
        try:
            return self.resolved[key]
        except KeyError:
            pass
        hit = None
        if not escapes(name):
            for folder in search:
                hit = self.files(folder).get(name)
                if hit is not None:
                    break
        self.resolved[key] = hit
        return hit


def escapes(name: str) -> bool:
    """Whether a template name leaves the template folders (absolute, or ``..``)."""
    return name.startswith("/") or ".." in name.replace("\\", "/").split("/")


def walk(folder: Path | str) -> Iterator[tuple[str, str]]:
    """``(relpath, path)`` of every file below ``folder``, dot-files included
    (``.htaccess``, ``.env.j2``), editors' leftovers and VCS folders not."""
    stack = [(str(folder), "")]
    while stack:
        path, rel = stack.pop()
        try:
            entries = list(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for e in entries:
            name = e.name
            if (name.endswith(SKIP_SUFFIX) or name.startswith(SKIP_PREFIX)
                    or name in SKIP_NAMES):
                continue
            r = f"{rel}{name}"
            if e.is_dir():
                if name not in SKIP_DIRS:
                    stack.append((e.path, r + "/"))
            elif e.is_file():
                yield r, e.path


def rel_to(base: Path, path: Path | str) -> str:
    """``path`` relative to ``base`` as the user names it (else as it is)."""
    try:
        return Path(path).relative_to(base).as_posix()
    except ValueError:
        return str(path)
