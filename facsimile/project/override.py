"""The project class override: ``"class": "module.path:ClassName"`` in facsimile.json.

The module is a file found from the root, else from its parent folder
(``a.b`` is ``a/b.py`` or ``a/b/__init__.py``), and loaded from that file:
neither folder is put on ``sys.path``, so a file there that shares a name
with a library (``jinja2.py``) is never imported in the library's place.
The class must be a subclass of :class:`facsimile.Project`.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import TypeVar

from .. import define as D
from ..errors import DefinitionError

P = TypeVar("P", bound=type)

#: the loaded module's name in ``sys.modules``: under a prefix of its own, so a
#: ``json:Shop`` never replaces the standard library's ``json``
MODULE_PREFIX = "facsimile_project_class."


def module_file(root: D.Root, modname: str) -> Path | None:
    """The file of the module ``modname``: in the root first, then in its parent."""
    parts = modname.split(".")
    for folder in (root.base, root.base.parent):
        for candidate in (folder.joinpath(*parts[:-1], parts[-1] + ".py"),
                          folder.joinpath(*parts, "__init__.py")):
            if candidate.is_file():
                return candidate
    return None


def _load_module(path: Path, modname: str) -> ModuleType:
    """Execute the file ``path`` as a module, registered under :data:`MODULE_PREFIX`."""
    name = MODULE_PREFIX + modname
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickle look classes up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def project_class(root: D.Root, defs: D.Definitions, base: P) -> P:
    """The class named by ``"class"``, a subclass of ``base``, from a file of the
    root (or of its parent)."""
    spec = defs.project.data["class"]
    where = {"file": defs.project.path, "pointer": "/class"}
    modname, _, clsname = spec.partition(":")
    if not modname or not clsname:
        raise DefinitionError(f"class {spec!r} must look like 'module.path:ClassName'", **where)
    path = module_file(root, modname)
    if path is None:
        raise DefinitionError(
            f"cannot import {modname!r} for class {spec!r}: no {modname.replace('.', '/')}.py "
            "in the root or its parent folder", **where)
    try:
        module = sys.modules.get(MODULE_PREFIX + modname) or _load_module(path, modname)
    except Exception as exc:
        raise DefinitionError(
            f"cannot import {modname!r} for class {spec!r}: {type(exc).__name__}: {exc}", **where
        ) from exc
    klass = getattr(module, clsname, None)
    if not isinstance(klass, type) or not issubclass(klass, base):
        raise DefinitionError(
            f"{spec!r} is not a subclass of facsimile.Project"
            if klass is not None
            else f"module {modname!r} has no class {clsname!r}",
            **where,
        )
    return klass  # type: ignore[return-value]
