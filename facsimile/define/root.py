"""Where a facsimile tree lives: finding and opening its root.

A root is a folder with ``define/facsimile.json``, or the ``config/``
folder of one whose ``config/facsimile.json`` exists; :class:`Root` names
the folders under it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..errors import RootNotFoundError

PROJECT_FILE = "facsimile.json"


@dataclass(frozen=True)
class Root:
    """Where a facsimile tree lives. ``base`` holds define/, tmpl/, extra/, BUILD/."""

    base: Path
    project_file: Path

    @cached_property
    def define(self) -> Path:
        return self.base / "define"

    @cached_property
    def tmpl(self) -> Path:
        return self.base / "tmpl"

    @cached_property
    def extra(self) -> Path:
        return self.base / "extra"

    @cached_property
    def build(self) -> Path:
        return self.base / "BUILD"

    @cached_property
    def state(self) -> Path:
        return self.base / "state"

    @cached_property
    def src(self) -> Path:
        return self.base / "SRC"

    @cached_property
    def cache(self) -> Path:
        return self.base / ".facsimile"

    def rel(self, path: Path | str) -> str:
        """A path as the user sees it: relative to the root when inside it."""
        return shown_path(path, self.base)


_PATH = type(Path())  # PosixPath or WindowsPath
_POSIX = os.sep == "/"


def shown_path(path: Path | str, base: Path | str | None) -> str:
    """``path`` as messages show it: relative to ``base`` when inside it, else
    as it is (the one rule for every path facsimile prints)."""
    if base is not None:
        if type(path) is type(base) is _PATH and _POSIX:  # both normalized: by string
            inside, prefix = str(path), str(base) + "/"
            if inside.startswith(prefix) and len(prefix) > 1:
                return inside[len(prefix):]
        try:
            return Path(path).relative_to(base).as_posix()
        except ValueError:
            pass
    return str(path)


def root_at(folder: Path) -> Root | None:
    """The root whose tree is ``folder`` (or ``folder/config``), if there is one."""
    if (folder / "define" / PROJECT_FILE).is_file():
        return Root(folder, folder / "define" / PROJECT_FILE)
    if (folder / "config" / PROJECT_FILE).is_file():
        return Root(folder / "config", folder / "config" / PROJECT_FILE)
    return None


def find_root(start: Path | str | None = None) -> Root:
    """Walk up from ``start`` (default: the working directory) to the nearest root."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        found = root_at(folder)
        if found:
            return found
    raise RootNotFoundError(
        f"no facsimile root here or above: looked for define/{PROJECT_FILE} "
        f"or config/{PROJECT_FILE} from {here}"
    )


def open_root(path: Path | str) -> Root:
    """The root at exactly ``path`` (``--root DIR``)."""
    folder = Path(path).resolve()
    found = root_at(folder)
    if found is None:
        raise RootNotFoundError(
            f"{folder} is not a facsimile root: it has no define/{PROJECT_FILE} "
            f"and no config/{PROJECT_FILE}"
        )
    return found
