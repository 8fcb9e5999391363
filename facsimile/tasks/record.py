"""When a doit run writes the no-op record (:mod:`facsimile.noop`): a run of build
groups only (``doit``, ``doit build:<instance>``, ``facs build``) that ends with no
failure; :func:`arm_record` says which instances it leaves up to date, the
reporter calls :func:`settle` when the run is over."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import noop
from ..build import stamp

if TYPE_CHECKING:
    from ..build import Build
    from .invocation import Invocation
    from .mode import RunMode

_armed: tuple[Build, list[str]] | None = None


def arm_record(build: Build, mode: RunMode, run: Invocation | None, *, extra: bool) -> None:
    """Note the instances this run is to leave up to date, when its kind of run may
    write the record: lean, no project tasks, only ``build`` groups, local state."""
    global _armed
    _armed = None
    if not mode.lean or extra or run is None or not noop.enabled():
        return
    names = set(build.project.instances)
    if mode.runs_all and all(a == "build" for a in run.args):
        chosen = sorted(names)
    elif all(a.startswith("build:") and a[6:] in names for a in run.args):
        chosen = [a[6:] for a in run.args]
    else:
        return
    _armed = (build, chosen)


def settle(ok: bool, *, changed: bool = False) -> None:
    """The run is over: write the record when it went well and ``changed`` nothing in
    ``BUILD/`` (what it just wrote is too new to record: the next no-op writes it),
    remove it when it did not go well."""
    global _armed
    armed, _armed = _armed, None
    if armed is None:
        return
    build, chosen = armed
    if not ok:
        stamp.forget(str(build.root.base))
    elif changed:
        stamp.say_why("this run wrote or removed outputs (the next no-op writes it)")
    else:
        stamp.write_record(build, chosen)
