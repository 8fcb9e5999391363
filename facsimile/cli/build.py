"""``facs build``, ``facs plan``, ``facs checkout`` and ``facs init``: run doit on
the project's tasks in this process (``run_doit``), print the plan, clone or
verify the source checkouts, create a new root."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any

from ..project import Project
from .common import load_project, out

#: the version of ``facs build --json``'s shape (docs/pages/console.md, "Machine-readable output")
BUILD_FORMAT = 1


def run_doit(project: Project, argv: list[str], outstream: Any = None) -> int:
    """Run doit in this process on the project's tasks; ``outstream``: where
    doit's reporter writes (default: stdout)."""
    from doit.doit_cmd import DoitMain

    from ..build import Build
    from ..tasks import doit_config, guarded_tasks, invocation_loader

    def task_facsimile() -> Any:
        """facsimile's tasks."""
        yield from guarded_tasks(lambda: Build(project), loader.invocation)

    loader = invocation_loader({"task_facsimile": task_facsimile,
                                "DOIT_CONFIG": doit_config(project.root)})
    extra: dict[str, dict[str, Any]] = {"GLOBAL": {}}
    if outstream is not None:
        extra["run"] = {"outfile": outstream}
    try:
        return int(DoitMain(loader, extra_config=extra).run(argv))
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
    if not getattr(args, "json", False):
        return run_doit(project, argv)
    return _build_json(project, argv, names)


def _build_json(project: Project, argv: list[str], names: list[str]) -> int:
    """``facs build --json``: doit's lines to stderr, then one JSON summary on stdout."""
    from ..tasks import console

    outcome = console.collect()
    with contextlib.redirect_stdout(sys.stderr):
        code = run_doit(project, argv, outstream=sys.stderr)
    out(json.dumps(build_document(outcome, names, code), indent=2, sort_keys=True))
    return code


def _output(task: str) -> str | None:
    """``dev/etc/app.ini`` (below BUILD/) of ``build:dev/etc/app.ini``; ``None``
    for a task that is no output."""
    rel = task.removeprefix("build:")
    return rel if task.startswith("build:") and "/" in rel else None


def build_document(outcome: Any, names: list[str], code: int) -> dict[str, Any]:
    """The ``facs build --json`` document of a run's :class:`~facsimile.tasks.console.Outcome`."""
    counts = outcome.counts
    return {
        "format": BUILD_FORMAT,
        "ok": code == 0,
        "exit": code,
        "instances": names or None,
        "interrupted": outcome.interrupted,
        "counts": {"built": counts.get("built", 0), "deleted": counts.get("deleted", 0),
                   "failed": counts.get("failed", 0),
                   "up_to_date": counts.get("up to date", 0)},
        "made": [{"task": m["task"], "output": _output(m["task"]), "reasons": m["reasons"]}
                 for m in outcome.made],
        "failed": [{"task": f["task"], "output": _output(f["task"]), "message": f["message"]}
                   for f in outcome.failed],
    }


def cmd_plan(args: argparse.Namespace) -> int:
    """Print the stale outputs; exit 2 when there are any."""
    from .. import noop
    from ..build import Build, stamp
    from ..plan import print_plan

    project = load_project(args)
    build, lines = Build(project), []

    def kept(text: str = "") -> None:
        lines.append(text)
        out(text)

    code = print_plan(project, args.instances, diff=args.diff, as_json=args.json, out=kept,
                      build=build)
    if code == 0 and not args.diff:  # nothing stale: the no-op record may answer it next
        stamp.write_record(build, [i.name for i in project.select(args.instances)],
                           (noop.plan_key(args.instances, args.json), 0,
                            "".join(f"{line}\n" for line in lines)))
    return code


def cmd_init(args: argparse.Namespace) -> int:
    """Create a new root with a small example."""
    from ..scaffold import init

    made = init(args.dir)
    for path in made:
        out(f"created {path}")
    out(f"next: cd {args.dir} && doit")
    return 0


def cmd_checkout(args: argparse.Namespace) -> int:
    """Clone the missing source checkouts; ``--verify``: check the others' tags."""
    from ..build.checkouts import check_out

    project = load_project(args)
    done = check_out(project, args.instances or None, verify=args.verify)
    for src, what in done:
        out(f"{src.name} {src.version}: {what} (SRC/{src.path(project.root.src).name})")
    if not done:
        out("no source checkouts (no module has a repo and a version)")
    return 0
