"""The actions of facsimile's doit tasks, and the ``uptodate`` entries that say
why a task is stale.

An action turns facsimile's errors into doit's ``TaskFailed``. An output
task's action returns the output's record as a falsy dict, which doit saves
as the task's values (and, being falsy, not a second time as its result).
"""

from __future__ import annotations

import inspect
from typing import Any

from .. import checkout as C
from ..build import Build, remove_output
from ..build.checkouts import check_out
from ..errors import FacsimileError
from .fast import FastRun, batch_action, stale_action


class DoitValues(dict):  # type: ignore[type-arg]
    """A record as doit saves it from an action's result. Falsy, so doit does not
    store it twice (doit also saves a truthy dict result as ``result:``)."""

    def __bool__(self) -> bool:
        return False


class Stale:
    """A stale task's ``uptodate`` entry: false, and reads as its reasons, in words
    (``doit info`` prints it; the reporter's ``-v`` lines read :attr:`reasons`)."""

    __slots__ = ("reasons",)
    __signature__ = inspect.Signature()  # doit inspects the signature of each callable

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = list(reasons)

    def __call__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "stale: " + "; ".join(self.reasons)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Stale, (self.reasons,))


def uptodate(reasons: list[str]) -> Any:
    """``True``, or a :class:`Stale` that says why."""
    return Stale(reasons) if reasons else True


def render_action(build: Build, instance: str, rel: str) -> Any:
    """Make one output (the action of ``build:<instance>/<path>``)."""
    from doit.exceptions import TaskFailed

    try:
        return DoitValues(build.build_one(instance, rel).to_values())
    except FacsimileError as exc:
        return TaskFailed(str(exc))


def checkout_action(build: Build, srcs: list[C.Source]) -> Any:
    """Clone the missing source checkouts of one name (a clone is of the tag as the
    remote has it now: nothing to verify)."""
    from doit.exceptions import TaskFailed

    try:
        for src in srcs:
            C.ensure(src, build.root.src)
    except FacsimileError as exc:
        return TaskFailed(str(exc))
    return None


def prune_action(build: Build, instance: str | None, found: bool = True,
                 fast: FastRun | None = None) -> None:
    """Delete orphans; ``found=False``: there were none when the tasks were made (and a
    run writes only outputs), so the walk is spared. In a batched run, an instance
    a helper process took is pruned there."""
    if fast is not None:
        fast.prune(instance, found)
    elif found:
        build.prune(instance)


def _sync_action(build: Build, instance: str) -> Any:
    """Push a built instance to its hosts (the action of ``sync:<instance>``), its
    checkouts' tags verified against their remotes first."""
    from doit.exceptions import TaskFailed

    from ..sync import run_sync

    try:
        check_out(build.project, [instance], verify=True)
        code = run_sync(build.project, instance)
    except FacsimileError as exc:
        return TaskFailed(str(exc))
    return None if code == 0 else TaskFailed(f"sync of {instance} failed (exit {code})")


def _presign(*funcs: Any) -> None:
    """doit calls ``inspect.signature`` on every action it runs; give it the answer."""
    for f in funcs:
        f.__signature__ = inspect.signature(f)


_presign(render_action, prune_action, batch_action, stale_action, remove_output,
         checkout_action, _sync_action)
