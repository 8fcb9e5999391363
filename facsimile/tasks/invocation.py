"""Which doit command is running, for the task creator: the one place that
depends on doit's internals to find it.

doit hands a task creator nothing about the command line: its loader API
(``TaskLoader2.setup(opt_values)``, ``load_tasks(cmd, pos_args)``) gives the
command to the loader. ``facs build`` runs doit with such a loader
(:func:`invocation_loader`), which hands the task creator what it was told.
Plain ``doit`` cannot: the loader is chosen before ``dodo.py`` is read (by
``DoitMain``, from ``GLOBAL.loader`` in the root's doit config), so a dodo file
cannot supply one. For it, :func:`doit_command` finds the command in the call
stack: doit creates tasks inside ``DoitCmdBase.execute(self, params, args)``,
whose locals are the command, its options and its positional arguments.
``tests/test_tasks.py`` pins that behaviour of doit, so an upgrade that
changes it fails there first.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, NamedTuple


class Invocation(NamedTuple):
    """The doit command creating tasks: its object, its options, its arguments."""

    command: Any  # a doit.cmd_base.DoitCmdBase
    params: Any  # doit's option values (a dict-like)
    args: list[str]  # positional arguments (task names)


def doit_command() -> Invocation | None:
    """The doit command whose ``execute`` is on the call stack, or ``None`` (the
    tasks are created outside doit, or by a doit whose ``execute`` differs)."""
    from doit.cmd_base import DoitCmdBase

    frame = sys._getframe(1)
    while frame is not None:
        cmd = frame.f_locals.get("self")
        if frame.f_code.co_name == "execute" and isinstance(cmd, DoitCmdBase):
            params, args = frame.f_locals.get("params"), frame.f_locals.get("args")
            if params is None or not isinstance(args, list):
                return None
            return Invocation(cmd, params, args)
        frame = frame.f_back
    return None


def invocation_loader(namespace: Mapping[str, Any]) -> Any:
    """A doit task loader over ``namespace`` (task creators and ``DOIT_CONFIG``)
    that records the command it loads tasks for in its ``invocation``."""
    from doit.cmd_base import ModuleTaskLoader

    class InvocationLoader(ModuleTaskLoader):
        invocation: Invocation | None = None
        _params: Any = None

        def setup(self, opt_values: Any) -> None:
            self._params = opt_values  # doit fills in the defaults before load_tasks

        def load_tasks(self, cmd: Any, pos_args: list[str]) -> Any:
            self.invocation = Invocation(cmd, self._params, list(pos_args))
            return super().load_tasks(cmd, pos_args)

    return InvocationLoader(dict(namespace))
