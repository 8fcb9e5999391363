"""``facs build``, ``facs plan`` and ``facs init``: run doit on the project's
tasks in this process (``run_doit``), print the plan, create a new root."""

from __future__ import annotations

import argparse
from typing import Any

from ..project import Project
from .common import load_project, out


def run_doit(project: Project, argv: list[str]) -> int:
    """Run doit in this process on the project's tasks."""
    from doit.doit_cmd import DoitMain

    from ..build import Build
    from ..tasks import doit_config, guarded_tasks, invocation_loader

    def task_facsimile() -> Any:
        """facsimile's tasks."""
        yield from guarded_tasks(lambda: Build(project), loader.invocation)

    loader = invocation_loader({"task_facsimile": task_facsimile,
                                "DOIT_CONFIG": doit_config(project.root)})
    try:
        return int(DoitMain(loader, extra_config={"GLOBAL": {}}).run(argv))
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else 1


def cmd_build(args: argparse.Namespace) -> int:
    """Build the named instances (all when none is named) through doit."""
    project = load_project(args)
    names = [project.instance(n).name for n in args.instances]
    argv = ["run"]
    if args.process:
        argv += ["-n", str(args.process), "-P", "process"]
    if args.verbosity is not None:
        argv += ["-v", str(args.verbosity)]
    argv += [f"build:{n}" for n in names] or ["build"]
    return run_doit(project, argv)


def cmd_plan(args: argparse.Namespace) -> int:
    """Print the stale outputs; exit 2 when there are any."""
    from ..plan import print_plan

    project = load_project(args)
    return print_plan(project, args.instances, diff=args.diff, as_json=args.json, out=out)


def cmd_init(args: argparse.Namespace) -> int:
    """Create a new root with a small example."""
    from ..scaffold import init

    made = init(args.dir)
    for path in made:
        out(f"created {path}")
    out(f"next: cd {args.dir} && doit")
    return 0
