"""Layer folders: the files of every folder under ``tmpl/`` and ``extra/``, and
where a template name resolves through a search path.

Each folder is walked once per run (:class:`LayerIndex`); a name is resolved
once per search path. Both the Jinja2 environment (to load a template) and
the build's check (to see whether an include now comes from another file)
resolve through :meth:`LayerIndex.resolve`, so the two cannot disagree.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..define.root import shown_path
from ..errors import TemplateError

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
    real: str = ""  # the real path of ``base``, found when first needed
    state: str = ""  # the real path of its state/ folder, which no link may lead into

    def files(self, folder: Path | str) -> dict[str, str]:
        """``{relpath: path}`` of every file below ``folder`` (cached; plain strings,
        since pathlib costs more than the walk itself at 10k files)."""
        key = str(folder)
        found = self.folders.get(key)
        if found is None:
            bound = self.bound(key)
            try:
                if os.path.exists(key):
                    resolve_link(key, bound, self.state)  # the folder itself too
                found = self.folders[key] = dict(walk(key, bound, self.state))
            except TemplateError as exc:  # named as the user names it
                raise TemplateError(exc.message, file=rel_to(self.base, exc.file or key)) from None
        return found

    def bound(self, folder: str) -> str:
        """The real folder links below ``folder`` must stay in: its checkout's for a
        folder of ``SRC/<name>-<version>/``, else the project's."""
        real = self.real
        if not real:
            real = self.real = os.path.realpath(self.base)
            self.state = os.path.join(real, "state")
        src = f"{self.base}{os.sep}SRC{os.sep}"
        if folder.startswith(src):
            return os.path.realpath(src + folder[len(src):].split(os.sep, 1)[0])
        return real

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


def walk(folder: Path | str, bound: str | None = None,
         denied: str = "") -> Iterator[tuple[str, str]]:
    """``(relpath, path)`` of every file below ``folder``, dot-files included
    (``.htaccess``, ``.env.j2``), editors' leftovers and VCS folders not.

    ``bound``: the real folder that symbolic links must resolve into; a link
    is followed when it does, and is an error naming it when it does not (or
    loops). ``None`` (``BUILD/``): a link is never followed; it is listed as an
    entry itself, so that removing it removes the link, not what it points to.
    ``denied``: a real folder inside ``bound`` no link may lead into (``state/``).
    """
    stack = [(str(folder), "")]
    seen: set[str] = set()  # real folders entered through a link
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
            if e.is_symlink():
                if bound is None:
                    yield r, e.path
                    continue
                real = resolve_link(e.path, bound, denied)
                if os.path.isdir(real):
                    if name in SKIP_DIRS:
                        continue
                    if real in seen:
                        raise TemplateError("a symbolic link loop: this link leads back "
                                            "into a folder already walked", file=e.path)
                    seen.add(real)
                    stack.append((e.path, r + "/"))
                elif os.path.isfile(real):
                    yield r, e.path
            elif e.is_dir(follow_symlinks=False):
                if name not in SKIP_DIRS:
                    stack.append((e.path, r + "/"))
            elif e.is_file(follow_symlinks=False):
                yield r, e.path


def resolve_link(path: str, bound: str, denied: str = "") -> str:
    """The real path of ``path``, which must lie inside the real folder ``bound``
    and outside ``denied``; else a :class:`~facsimile.errors.TemplateError`
    naming ``path``."""
    try:
        real = os.path.realpath(path, strict=True)
    except OSError as exc:
        what = "a symbolic link loop" if exc.errno == errno.ELOOP else "a broken symbolic link"
        raise TemplateError(what, file=path) from None
    if real != bound and not real.startswith(bound + os.sep):
        raise TemplateError(f"a symbolic link to {real}, outside {bound}: links must stay "
                            "inside the project (a checkout's, inside the checkout)",
                            file=path)
    if denied and (real == denied or real.startswith(denied + os.sep)):
        raise TemplateError("a symbolic link into state/: generated values are never "
                            "copied as files", file=path)
    return real


def rel_to(base: Path, path: Path | str) -> str:
    """``path`` relative to ``base`` as the user names it (else as it is)."""
    return shown_path(path, base)
