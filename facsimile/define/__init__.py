"""The first stage: reading ``define/`` and resolving it into instances.

Data flows one way through its modules: :mod:`.root` finds the tree,
:mod:`.read` reads and checks each file (with :mod:`.validate`,
:mod:`.names` and :mod:`.schema`), :mod:`.resolve` merges inheritance
(with :mod:`.merge`) into :class:`Instance` objects, and :mod:`.provenance`
says which file set a value. Nothing here knows about state or templates.
"""

from __future__ import annotations

from .names import host_problem
from .provenance import provenance
from .read import (
    MODULES_FILE,
    SCHEMA_FILE,
    Definition,
    Definitions,
    definition_files,
    load,
    reload_changed,
)
from .resolve import Instance, Resolver, lookup, resolve_all
from .root import Root, find_root, open_root
from .schema import strategy_at
from .validate import normalize_modules

__all__ = [
    "MODULES_FILE",
    "SCHEMA_FILE",
    "Definition",
    "Definitions",
    "Instance",
    "Resolver",
    "Root",
    "definition_files",
    "find_root",
    "host_problem",
    "load",
    "lookup",
    "normalize_modules",
    "open_root",
    "provenance",
    "reload_changed",
    "resolve_all",
    "strategy_at",
]
