"""facsimile's doit integration, the only package that imports doit: the task
dicts (:mod:`.generate`), their actions (:mod:`.actions`), the reporter
(:mod:`.reporter`), the run mode (:mod:`.mode`, :mod:`.invocation`) and the
fast path of batched runs and the database backend (:mod:`.fast`).

A root's ``dodo.py`` and ``facs build`` both hand doit :func:`guarded_tasks`
and :func:`doit_config`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .. import define as D
    from ..build import Build
    from .invocation import Invocation
    from .reporter import Reporter

__all__ = ["Reporter", "doit_config", "generate", "guarded_tasks", "invocation_loader"]

# Imported when first used: doit loads the database backend (tasks.fast.doitdb)
# before it reads dodo.py, and a no-op answered by facsimile.noop needs nothing
# else of this package.
_LAZY = {"Reporter": ".reporter", "generate": ".generate", "invocation_loader": ".invocation"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def guarded_tasks(make: Callable[[], Build],
                  run: Invocation | None = None) -> Iterator[dict[str, Any]]:
    """Tasks from ``generate(make())``, in the mode of the doit command creating
    them (``run``, from :func:`invocation_loader`; else found on the stack); a
    user error is one line and exit 1, no traceback."""
    from ..build.collector import collector_paused
    from ..errors import FacsimileError
    from .console import configure
    from .generate import generate, use_doits_db
    from .invocation import doit_command
    from .mode import decide
    from .record import arm_record

    run = run or doit_command()
    configure(None if run is None else run.params.get("verbosity"))
    try:
        # Creating 10k+ tasks allocates many long-lived objects: collecting while
        # creating them is slow.
        with collector_paused():
            build = make()
            use_doits_db(build)
            extra = [dict(t) for t in build.project.tasks()]
            mode = decide(run, build.project.instances, selected=False, extra_tasks=bool(extra))
            arm_record(build, mode, run, extra=bool(extra))
            yield from generate(build, mode, extra_tasks=extra)
    except FacsimileError as exc:
        print(f"facsimile: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print("facsimile: interrupted before the build began", file=sys.stderr)
        raise SystemExit(130) from None


def doit_config(root: D.Root | None) -> dict[str, Any]:
    """DOIT_CONFIG for a root: facsimile's database backend and reporter."""
    from ..build.check import DB_FILE
    from .reporter import Reporter

    cfg: dict[str, Any] = {
        "backend": "facsimile",
        "default_tasks": ["build"],
        "reporter": Reporter,
        "check_file_uptodate": "md5",
    }
    if root is not None:
        cfg["dep_file"] = str(root.base / DB_FILE)
    return cfg
