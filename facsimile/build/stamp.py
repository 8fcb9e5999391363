"""Writing the no-op record (:mod:`facsimile.noop`, which reads it): what a run that
left every output of its instances up to date depended on, as stats.

The record lists every file and folder of ``define/``, ``tmpl/``, ``extra/``,
``state/``, ``BUILD/`` and the layer folders the run listed (checkouts,
subprojects), the root's ``dodo.py``, ``.doit.db``, ``doit.cfg`` and
``pyproject.toml``, and the Python file of every module loaded (facsimile, its
libraries, the class module), with digests of their stats (one of the sources,
looked at first, and one of ``BUILD/``). It is written only when the run's
sources did not move while it ran (:func:`begin`, at its start) and when no
entry is newer than :data:`SETTLE_NS` (a later change could keep the same
timestamp); a run that failed removes it (:func:`forget`).
"""

from __future__ import annotations

import marshal
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..atomic import write_atomic
from ..noop import (
    DEBUG_VAR,
    RECORD,
    ROOT_FILES,
    digest,
    enabled,
    env,
    holds,
    mac,
    mac_key,
    read,
    sources_and_outputs,
    stats,
)
from ..state.files import Local

SETTLE_NS = 100_000_000  # entries newer than this when written make no record
COARSE_SETTLE_NS = 2_100_000_000  # the same on a file system of whole-second times
_SKIP_DIRS = (".git", ".hg", ".svn", "__pycache__")


def _walk(top: str, tree: dict[str, list[str]], base: str) -> bool:
    """``top`` itself (``.``) and every folder and file below it, as paths from it,
    into ``tree``; False when one is a link to a folder (then no record: the files
    behind it would not be seen)."""
    names = tree.setdefault(_key(base, top), [])
    names.append(".")
    stack = [(top, "")]
    while stack:
        path, prefix = stack.pop()
        try:
            entries = list(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for e in entries:
            names.append(prefix + e.name)
            if e.is_dir(follow_symlinks=False):
                if e.name not in _SKIP_DIRS:
                    stack.append((e.path, f"{prefix}{e.name}/"))
            elif e.is_symlink():
                real = os.path.realpath(e.path)
                if os.path.isdir(real):
                    return False
                _add(tree, base, *os.path.split(real))
    return True


def _key(base: str, folder: str) -> str:
    """``folder`` as a key of the tree: relative to ``base`` when inside it."""
    if folder == base:
        return ""
    if folder.startswith(base + os.sep):
        return folder[len(base) + 1:].replace(os.sep, "/")
    return folder


def _add(tree: dict[str, list[str]], base: str, folder: str, name: str) -> None:
    """Add the file ``folder/name``."""
    names = tree.setdefault(_key(base, folder), [])
    if name not in names[-1:]:
        names.append(name)


def _tops(base: str, folders: Iterable[str]) -> list[str]:
    """The folders to walk: the root's, then the run's layer folders that are not
    below one of them (an absent one there shows as a change of its parent)."""
    tops = [os.path.join(base, t) for t in ("define", "tmpl", "extra", "state", "BUILD")]
    out = list(tops)
    for f in sorted(set(folders)):
        if not any(f == t or f.startswith(t + os.sep) for t in tops):
            out.append(f)
    return out


_begun: tuple[str, dict[str, list[str]], str] | None = None


def _sources(base: str) -> dict[str, list[str]] | None:
    """The sources a run reads (definitions, templates, extras, checkouts, subprojects,
    the root's files but the database), as a tree for :func:`stats`."""
    tree: dict[str, list[str]] = {}
    for top in ("define", "tmpl", "extra", "SRC", "projects"):
        if not _walk(os.path.join(base, top), tree, base):
            return None
    for name in ROOT_FILES:
        if name != ".doit.db":
            _add(tree, base, base, name)
    return tree


def begin(base: str) -> None:
    """A full run starts: note its sources' stats, so that a record is written only
    when none changed while it ran (an edit then may not be in what it built)."""
    global _begun
    tree = _sources(base)
    _begun = None if tree is None else (base, tree, digest(stats(base, tree)))


def _unchanged_since_begun(base: str) -> bool:
    return _begun is not None and _begun[0] == base and \
        digest(stats(base, _begun[1])) == _begun[2]


def _plain_dodo(path: str) -> bool:
    """Whether ``dodo.py`` is the one line ``from facsimile.dodo import *``: one with
    tasks or a config of its own may make plain ``doit`` do more than build."""
    try:
        with open(path, encoding="utf-8") as fh:
            code = [line.split("#", 1)[0].strip() for line in fh]
    except (OSError, ValueError):
        return False
    return [c for c in code if c] == ["from facsimile.dodo import *"]


def _code(tree: dict[str, list[str]], base: str) -> None:
    """The Python files of every module loaded (facsimile, its libraries, the class
    module): an upgrade or an edit of one goes the full way."""
    for mod in list(sys.modules.values()):
        path = getattr(mod, "__file__", None)
        if isinstance(path, str) and os.path.isabs(path):
            _add(tree, base, *os.path.split(path))


def record(base: str, folders: Iterable[str], counts: Callable[[], dict[str, int]],
           every: list[str], plan: tuple[str, int, str] | None = None) -> None:
    """Write (or extend) the record after a run that left every output of the instances
    in ``counts()`` (name -> its number of outputs) up to date. ``folders``: the layer
    folders the run listed; ``every``: all instance names; ``plan``: (key, exit code,
    text) of a plan that found nothing to do. Best effort: never fails a run. With
    ``FACSIMILE_DEBUG_FASTNOOP`` set, a run that writes none says why on stderr."""
    try:
        why = _record(base, folders, counts, every, plan)
    except Exception as error:  # the record only saves time
        why = f"{type(error).__name__} while writing it"
    if why is not None:
        say_why(why)


def say_why(why: str) -> None:
    """With ``FACSIMILE_DEBUG_FASTNOOP`` set, say on stderr why no record was written."""
    if os.environ.get(DEBUG_VAR):
        sys.stderr.write(f"facsimile: no no-op record: {why}\n")


def _record(base: str, folders: Iterable[str], counts: Callable[[], dict[str, int]],
            every: list[str], plan: tuple[str, int, str] | None) -> str | None:
    """Write the record; None when written, else why not."""
    key = mac_key(base)
    if key is None:
        return "no digest key in state/"
    if _fresh(stats(base, {"": list(ROOT_FILES)})):
        # the database just written (the usual case) is seen before any walk
        return "a file of the root (the database, usually) is too new"
    if not _unchanged_since_begun(base):
        return "a source changed while the run read it" if _begun is not None \
            else "the run's sources were not noted at its start"
    tree: dict[str, list[str]] = {}
    for top in _tops(base, folders):
        if not _walk(top, tree, base):
            return f"a link to a folder below {os.path.relpath(top, base)}"
    for name in ("SRC", *ROOT_FILES):
        _add(tree, base, base, name)
    _code(tree, base)
    rec: dict[str, Any] = {"env": env(), "all": sorted(every), "counts": counts(),
                           "plans": {}, "dodo": _plain_dodo(os.path.join(base, "dodo.py"))}
    old = read(base, key)
    head, now = _two(base, tree)
    if old is not None and old.get("all") == rec["all"] and (
            (digest(head), digest(now)) == (old.get("head"), old.get("stats"))
            if old.get("tree") == tree else holds(base, old)):
        # as it was when written: this run adds its instances (and entries) to it
        if old["tree"] != tree:
            for folder, names in old["tree"].items():
                have = tree.setdefault(folder, [])
                seen = set(have)
                have.extend(n for n in names if n not in seen)
            head, now = _two(base, tree)
        rec["counts"] = {**old.get("counts", {}), **rec["counts"]}
        rec["plans"] = dict(old.get("plans", {}))
    if plan is not None:
        rec["plans"][plan[0]] = [plan[1], plan[2]]
    if _fresh(head) or _fresh(now):
        return "an entry is too new (it may change again within its timestamp)"
    rec["tree"], rec["head"], rec["stats"] = tree, digest(head), digest(now)
    body = marshal.dumps(rec)
    os.makedirs(os.path.join(base, ".facsimile"), exist_ok=True)
    write_atomic(os.path.join(base, RECORD), mac(key, body) + b"\n" + body)
    return None


def _two(base: str, tree: dict[str, list[str]]) -> tuple[Any, Any]:
    """The stats of the sources and of ``BUILD/`` (:func:`facsimile.noop.sources_and_outputs`)."""
    head, outputs = sources_and_outputs(tree)
    return stats(base, head), stats(base, outputs)


def _fresh(found: Any) -> bool:
    """Whether an entry of :func:`stats` is too new to record: it may change again
    within its timestamp."""
    stamps = [t for i in range(0, len(found), 4) for t in found[i + 1:i + 3] if t >= 0]
    coarse = bool(stamps) and all(t % 1_000_000 == 0 for t in stamps)
    return bool(stamps) and \
        max(stamps) > time.time_ns() - (COARSE_SETTLE_NS if coarse else SETTLE_NS)


def write_record(build: Any, chosen: list[str], plan: tuple[str, int, str] | None = None) -> None:
    """Record that every output of the instances ``chosen`` is up to date, for a
    :class:`facsimile.build.Build` whose run found or left them so. Not for a
    project with tasks of its own (a no-op runs them) nor remote state."""
    project = build.project
    if not enabled():
        return
    if list(project.tasks()) or not isinstance(project.store.backend, Local):
        say_why("the project has tasks of its own" if list(project.tasks())
                else "its state is not a local folder")
        return
    def counts() -> dict[str, int]:
        return {n: len(build.outputs(project.instances[n])) for n in chosen}

    record(str(build.root.base), list(build.index.folders), counts, list(project.instances),
           plan)


def forget(base: str) -> None:
    """Remove the record (a run that did not end up to date)."""
    try:
        os.unlink(os.path.join(base, RECORD))
    except OSError:
        pass
