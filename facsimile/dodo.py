"""What a root's ``dodo.py`` imports: ``from facsimile.dodo import *``.

The root is found by walking up from the working directory (doit runs in the
folder of ``dodo.py``).
"""

from __future__ import annotations

import sys

from . import noop

if noop.is_doit(sys.argv):
    noop.answer_doit(sys.argv[1:])  # a no-op the record answers ends the process here

from collections.abc import Iterator
from typing import Any

from .define import find_root
from .errors import FacsimileError
from .tasks import doit_config

try:
    _ROOT = find_root()
except FacsimileError:
    _ROOT = None

DOIT_CONFIG = doit_config(_ROOT)


def task_facsimile() -> Iterator[dict[str, Any]]:
    """facsimile's tasks: build:<instance>/<path>, build:<instance>, sync:<instance>."""
    from .build import Build
    from .project import Project
    from .tasks import guarded_tasks

    yield from guarded_tasks(lambda: Build(Project.load(_ROOT or find_root())))


__all__ = ["DOIT_CONFIG", "task_facsimile"]
