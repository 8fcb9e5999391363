"""The layers a source checkout adds, and records whose checkout moved.

A checkout's template folder (``config/facsimile/tmpl``, or the module's
``"tmpl"``) has the root's layout: ``_ALL_/``, ``<instance>/``,
``<instance>.<sub>/`` and ``_lib/``; the ``extra`` folder beside it has the
same layers. Each of its layers comes just below the root's layer of the same
name (:meth:`facsimile.build.outputs.Outputs.tmpl_layers`). A template folder
with none of those folders is *flat*: it is one layer below all the others, as
it was before checkouts had layers, and a notice says so once per run.

A version bump moves every path of a checkout's templates from
``SRC/<name>-<old>/`` to ``SRC/<name>-<new>/``. :func:`retarget` maps a
record's paths onto the checkout in use now, so that the check compares the
contents of the same relative paths and rebuilds only what differs.

A build asks no remote: a checkout that is there is at its version (its folder
is named by it). :func:`check_out` with ``verify`` asks each remote whether the
tag still points at the checkout's commit; ``facs sync``, ``doit sync:<instance>``
and ``facs checkout --verify`` do.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import checkout as C
from ..render import LIB, LayerIndex
from .record import KEY_FILES, KEY_NAMES, KEY_SOURCE

if TYPE_CHECKING:
    from ..project import Project

ALL = "_ALL_"
_NOTICED: set[str] = set()  # flat checkouts named on stderr in this process (a run)


class Checkout(NamedTuple):
    """One source checkout's folders (absolute paths, as strings)."""

    name: str  # the module (or project) it is the source of
    folder: str  # SRC/<name>-<version>
    tmpl: str  # its template folder
    extra: str  # the ``extra`` folder beside it (it may not exist)
    flat: bool  # no layers: the template folder is one layer


def checkout_of(name: str, folder: Path, tmpl: str, layer_names: Iterable[str],
                index: LayerIndex) -> Checkout:
    """The checkout in ``folder`` whose templates are in ``tmpl`` (relative to it);
    ``layer_names``: every layer an instance of the project has."""
    tmpl_dir = folder / tmpl
    try:
        top = {e.name for e in os.scandir(tmpl_dir) if e.is_dir()}
    except OSError:
        top = set()
    flat = not top & {ALL, LIB, *layer_names}
    found = Checkout(name, str(folder), str(tmpl_dir), str(tmpl_dir.parent / "extra"), flat)
    if flat and index.files(found.tmpl):
        _notice(found, index.base, tmpl)
    return found


def _notice(co: Checkout, base: Path, tmpl: str) -> None:
    """Say once per run that a checkout's template folder is flat, and how to layer it."""
    if co.tmpl in _NOTICED:
        return
    _NOTICED.add(co.tmpl)
    shown = os.path.relpath(co.tmpl, base)
    print(f"facsimile: notice: {shown} has no {ALL}/ or instance layers: its files are used "
          f"as one layer below tmpl/{ALL}; move them to {tmpl}/{ALL}/ (see "
          'docs/pages/templates.md, "Templates in the application repository")', file=sys.stderr)


def present(src: C.Source, src_dir: Path) -> bool:
    """The checkout of ``src`` is in ``src_dir`` (then it is at its version: no remote asked)."""
    return src.path(src_dir).is_dir()


def sources_of(project: Project, instances: Iterable[str] | None) -> list[C.Source]:
    """Every source checkout (each version once) that the named instances use (all
    when ``None``)."""
    found: dict[C.Source, None] = {}
    for inst in project.select(instances):
        found.update(dict.fromkeys(project.sources(inst)))
    return list(found)


def check_out(project: Project, instances: Iterable[str] | None,
              verify: bool = False) -> list[tuple[C.Source, str]]:
    """Clone the missing checkouts of the instances; ``verify``: also check each one
    that was there against its remote, raising
    :class:`facsimile.checkout.CheckoutError` (one line: the module, repository and
    tag) when its tag moved or is gone. Each source with what was done:
    ``"cloned"``, ``"verified"`` or ``"present"``."""
    done = []
    for src in sources_of(project, instances):
        if not present(src, project.root.src):
            C.ensure(src, project.root.src)
            done.append((src, "cloned"))
        elif verify:
            C.verify(src, project.root.src)
            done.append((src, "verified"))
        else:
            done.append((src, "present"))
    return done


def retarget(rec: Mapping[str, Any], current: Mapping[str, str]) -> dict[str, Any] | None:
    """``rec`` with each path under an older checkout of a source in use now moved to
    the same relative path in the current checkout; ``None`` when none moved.

    ``current``: ``{source name: "SRC/<name>-<version>/"}``. A path
    ``SRC/<name>-<old>/rest`` belongs to the source of the longest name that
    ``<name>-<old>`` starts with followed by ``-``.
    """
    prefixes = set(current.values())
    moved = False

    def move(path: str) -> str:
        nonlocal moved
        head, sep, rest = path.partition("/")
        folder, sep2, rest = rest.partition("/")
        if not (sep and sep2) or f"{head}/{folder}/" in prefixes:
            return path
        names = [n for n in current if folder.startswith(f"{n}-")]
        now = current[max(names, key=len)] if names else None
        if now is None or not now.startswith(f"{head}/"):
            return path
        moved = True
        return now + rest

    out = dict(rec)
    out[KEY_SOURCE] = move(rec[KEY_SOURCE])
    if KEY_FILES in rec:
        out[KEY_FILES] = {move(p): d for p, d in rec[KEY_FILES].items()}
    if rec.get(KEY_NAMES):
        out[KEY_NAMES] = {n: move(p) for n, p in rec[KEY_NAMES].items()}
    return out if moved else None
