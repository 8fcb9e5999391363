"""``facs state show`` and ``facs state rotate``: print an instance family's
generated values, and give one a new value."""

from __future__ import annotations

import argparse

from .. import state as S
from ..lookup import state_rows, want_named
from .common import load_project, out


def cmd_state_show(args: argparse.Namespace) -> int:
    """Print the family's generated values (made now if missing), secrets masked."""
    project = load_project(args)
    inst = project.instance(args.instance)
    state = project.state(inst, write=True)
    out(f"# {project.root.rel(state.path)} (family {inst.family})")
    for path, kind, shown in state_rows(state, args.reveal):
        out(f"{path}  {kind}  {shown}")
    return 0


def cmd_state_rotate(args: argparse.Namespace) -> int:
    """Give the generated value ``args.name`` stands for a new value."""
    project = load_project(args)
    inst = project.instance(args.instance)
    want, wants = want_named(project, inst, args.name)
    S.rotate(project.root.state, inst.family, wants, {want.path},
             shown_root=project.root.base, generators=project.generators())
    out(f"rotated {want.path} of family {inst.family}; the next build rewrites its users")
    return 0
