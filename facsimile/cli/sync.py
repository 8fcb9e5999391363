"""``facs sync``: build the instance unless told not to (or only looking), then
push it with :func:`facsimile.sync.run.run_sync`."""

from __future__ import annotations

import argparse

from ..project import Project
from ..sync.fleet import Fleet
from ..sync.run import check_sync_args, run_sync
from .build import run_doit
from .common import load_project, out


def cmd_sync(args: argparse.Namespace) -> int:
    """Build, then push, check or dry-run the instance's sync."""
    project = load_project(args)
    inst = project.instance(args.instance)
    check_sync_args(project, inst, args.target, args.host)  # before a build it would make useless
    if not (args.no_build or args.dry_run or args.check):
        code = run_doit(project, ["run", f"build:{inst.name}"])
        if code != 0:
            return code
    elif args.dry_run or args.check:
        _note_stale(project, inst.name)
    return run_sync(project, inst.name, dry_run=args.dry_run, check=args.check,
                    repair=args.repair, target=args.target, host=args.host,
                    always=args.always, adopt_state=args.adopt_state, out=out,
                    fleet=Fleet(args.slice, args.engine, args.scheduler))


def _note_stale(project: Project, name: str) -> None:
    """Say so when the build that a dry run or check shows is not up to date."""
    from ..build import Build
    from ..plan import make_plan

    stale = len(make_plan(Build(project), [name]).stale)
    if stale:
        out(f"note: BUILD/{name} is not up to date ({stale} to build or delete); "
            "this shows BUILD/ as it is now (facs build, or sync without --dry-run)")
