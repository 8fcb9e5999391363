"""Which doit command is running, for the task creator: the one place that
depends on doit's internals to find it.

doit hands a task creator nothing about the command line: its loader API
(``TaskLoader2.load_tasks(cmd, pos_args)``) gives the command to the loader,
and the loader is chosen before ``dodo.py`` is read (by ``DoitMain``, from
``GLOBAL.loader`` in the root's doit config), so a dodo file cannot supply
one. :func:`doit_command` finds the command in the call stack instead: doit
creates tasks inside ``DoitCmdBase.execute(self, params, args)``, whose
locals are the command, its options and its positional arguments.
``tests/test_invocation.py`` pins that behaviour of doit, so an upgrade that
changes it fails there first.
"""

from __future__ import annotations

import sys
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
