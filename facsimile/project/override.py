"""The project class override: ``"class": "module.path:ClassName"`` in facsimile.json.

The module is imported with the root and its parent folder on ``sys.path``;
the class must be a subclass of :class:`facsimile.Project`.
"""

from __future__ import annotations

import importlib
import sys
from typing import TypeVar

from .. import define as D
from ..errors import DefinitionError

P = TypeVar("P", bound=type)


def project_class(root: D.Root, defs: D.Definitions, base: P) -> P:
    """The class named by ``"class"``, a subclass of ``base``, importable from the root."""
    spec = defs.project.data["class"]
    where = {"file": defs.project.path, "pointer": "/class"}
    modname, _, clsname = spec.partition(":")
    if not modname or not clsname:
        raise DefinitionError(f"class {spec!r} must look like 'module.path:ClassName'", **where)
    for folder in (str(root.base), str(root.base.parent)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        module = importlib.import_module(modname)
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
