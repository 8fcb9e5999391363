"""``facs``: inspect definitions and state, build, plan and sync.

Thin: parses arguments, calls the stages, prints. Errors are one line on
stderr (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import definitions as D
from .errors import DefinitionError, FacsimileError
from .project import Project, mask
from .state import MASK

EPILOG = """\
The root is the nearest folder above the working directory with
define/facsimile.json (or config/facsimile.json); --root overrides.
Exit codes: 0 ok, 1 error, 2 something to do (plan) or drift found (sync --check)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facs`` command."""
    parser = make_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except FacsimileError as exc:
        if args.debug:
            raise
        print(f"facs: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("facs: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`facs plan --diff | head -1`): not an error, stop quietly.
        # stdout now points at devnull so the interpreter's final flush cannot fail
        # again; exit 141 (128 + SIGPIPE), what a shell shows for a command that a
        # broken pipe ended, so `set -o pipefail` still sees the output was cut short.
        import contextlib
        import os

        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="facs",
        description="Build exact copies of an environment's configuration for every "
        "instance, and push them to the hosts.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--root", metavar="DIR", help="the facsimile root (default: found by "
                   "walking up from the working directory)")
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    from . import __version__

    p.add_argument("--version", action="version", version=f"facs {__version__}")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")
    # --root and --debug work after the command too (facs sync dev --root X)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", metavar="DIR", default=argparse.SUPPRESS,
                        help="the facsimile root (default: found by walking up)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks of errors")

    def cmd(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> Any:
        sp = sub.add_parser(name, help=help_, description=help_, parents=[common])
        sp.set_defaults(func=func)
        return sp

    cmd("list", cmd_list, "list instances and subinstances with their targets, hosts and regions")

    sp = cmd("show", cmd_show, "print an instance's resolved definition (secrets masked)")
    sp.add_argument("instance", help="instance or subinstance name, e.g. prod.ch1")
    sp.add_argument("--json", action="store_true", help="print only the JSON document")
    sp.add_argument("--explain", metavar="KEY", help="print one value (a.b.c) and the "
                    "definition file(s) that set it")
    sp.add_argument("--reveal", action="store_true", help="show secret values unmasked")

    sp = cmd("state", lambda a: _usage(sp), "show or rotate generated state")
    ssub = sp.add_subparsers(title="state commands", metavar="ACTION")
    s1 = ssub.add_parser("show", help="generated values of an instance family (masked)",
                         parents=[common],
                         description="Generated values of an instance's family (made now "
                         "if missing). Secrets are masked unless --reveal.")
    s1.add_argument("instance")
    s1.add_argument("--reveal", action="store_true", help="show secret values unmasked")
    s1.set_defaults(func=cmd_state_show)
    s2 = ssub.add_parser("rotate", help="give a generated value a new one", parents=[common],
                         description="Give NAME a new value: a generate entry, or a module "
                         "name (its password). The next build rewrites exactly its users.")
    s2.add_argument("instance")
    s2.add_argument("name", help="a generate entry or a module name")
    s2.set_defaults(func=cmd_state_rotate)

    sp = cmd("build", cmd_build, "build instances into BUILD/ (all when none is named); "
             "the same as running doit")
    sp.add_argument("instances", nargs="*", metavar="INSTANCE")
    sp.add_argument("-n", "--process", type=int, default=0, metavar="N",
                    help="run N tasks in parallel (doit -n N -P process)")
    sp.add_argument("-v", "--verbosity", type=int, default=None, choices=(0, 1, 2),
                    help="doit verbosity")

    sp = cmd("plan", cmd_plan, "list stale outputs with the reason, changing nothing "
             "(exit 0: nothing to do, 2: something is stale, 1: error)")
    sp.add_argument("instances", nargs="*", metavar="INSTANCE")
    sp.add_argument("--diff", action="store_true", help="show a unified diff of each stale "
                    "output (state values masked)")
    sp.add_argument("--json", action="store_true", help="print the plan as JSON")

    sp = cmd("sync", cmd_sync, "push an instance's build to every host of its targets")
    sp.add_argument("instance")
    sp.add_argument("--dry-run", action="store_true", help="print what would be put and "
                    "deleted; change nothing")
    sp.add_argument("--check", action="store_true", help="report drift at the destinations "
                    "(exit 2) without fixing it")
    sp.add_argument("--target", metavar="T", help="only this target")
    sp.add_argument("--host", metavar="H", help="only this host")
    sp.add_argument("--repair", action="store_true", help="re-read the destinations and "
                    "push whatever drifted there too")
    sp.add_argument("--always", action="store_true", help="run deploy.postcmd even when "
                    "nothing changed")
    sp.add_argument("--no-build", action="store_true", help="push BUILD/ as it is, "
                    "without building first")

    sp = cmd("init", cmd_init, "create a new facsimile root with a small example")
    sp.add_argument("dir", type=Path)
    return p


def _usage(sp: argparse.ArgumentParser) -> int:
    sp.print_help()
    return 1


def _project(args: argparse.Namespace) -> Project:
    return Project.load(args.root)


def _out(text: str = "") -> None:
    print(text, flush=True)


# ---------------------------------------------------------------------- list/show


def cmd_list(args: argparse.Namespace) -> int:
    project = _project(args)
    _out(f"project {project.name} ({project.root.rel(project.root.project_file)})")
    if not project.instances:
        _out("  no instances: add define/<instance>.json")
    for name, inst in sorted(project.instances.items()):
        indent = "  " * (1 + name.count("."))
        regions = f"  regions: {', '.join(inst.regions)}" if inst.regions else ""
        _out(f"{indent}{name}{regions}")
        for tname, spec in inst.targets.items():
            hosts = ", ".join(spec.get("hosts", [])) or "no hosts"
            tregions = spec.get("regions") or []
            extra = f"  regions: {', '.join(tregions)}" if tregions else ""
            _out(f"{indent}  target {tname}: {hosts}{extra}")
    return 0


def _show_doc(project: Project, inst: D.Instance, reveal: bool) -> dict[str, Any]:
    state = project.state(inst, write=False)
    ctx = project.context(inst, state)
    doc = {"instance": ctx["instance"], "module": ctx["module"], "state": ctx["state"]}
    # values made in memory only would differ on the next run: never print them
    pending = {w.path for w in state.generated}
    doc = _replace(doc, pending, NOT_YET)
    if reveal:
        return doc
    return mask(doc, project.secret_paths(state) - pending)


NOT_YET = "<not generated yet>"


def _replace(value: Any, paths: set[str], text: str, prefix: str = "") -> Any:
    """A copy of ``value`` with each dotted path in ``paths`` replaced by ``text``."""
    if isinstance(value, dict) and paths:
        return {k: text if f"{prefix}{k}" in paths else _replace(v, paths, text, f"{prefix}{k}.")
                for k, v in value.items()}
    return value


def cmd_show(args: argparse.Namespace) -> int:
    project = _project(args)
    inst = project.instance(args.instance)
    doc = _show_doc(project, inst, args.reveal)
    if args.explain is not None:
        if "" in args.explain.split("."):
            raise DefinitionError(f"--explain {args.explain!r} is not a key: give names "
                                  "joined by single dots, like app.db.host")
        return _explain(project, inst, doc, args.explain)
    if args.json:
        _out(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    _out(f"# {inst.name}: " + " -> ".join(inst.files))
    pending = project.state(inst, write=False).generated
    if pending:
        _out("# not generated yet (a build makes them): " + ", ".join(w.path for w in pending))
    _out(json.dumps(doc, indent=2, sort_keys=True))
    return 0


def _explain(project: Project, inst: D.Instance, doc: dict[str, Any], key: str) -> int:
    path = key
    if not path.startswith(("instance.", "module.", "state.")):
        path = "instance." + path
    found = list(D.lookup(doc, path))
    if not found:
        raise DefinitionError(f"{key!r} is not set in {inst.name}")
    _out(f"{key} = {json.dumps(found[0], sort_keys=True)}")
    if path.startswith("instance."):
        dotted = path[len("instance."):]
        files: list[str] = []
        probe = dotted
        prov = D.provenance(project.defs, inst)
        while probe:
            if probe in prov:
                files = prov[probe]
                break
            probe = probe.rpartition(".")[0]
        strategy = D.strategy_at(project.defs.schema, dotted.split("."))
        if dotted == "name":
            _out("set by: the instance's name")
        elif files:
            _out(f"set by: {files[-1]}")
            if len(files) > 1:
                _out(f"merged from: {', '.join(files)}")
        if strategy:
            _out(f"merge strategy: {strategy} (define/schema.json)")
    elif path.startswith("module."):
        mod = path.split(".")[1]
        srcs = [project.defs.modules_file] if mod in project.defs.modules else []
        for name in inst.chain:
            d = project.defs.get(name)
            if d is not None and "modules" in d.data:
                over = D.normalize_modules(d.data["modules"], d.path)
                if mod in over:
                    srcs.append(d.path)
        state_file = project.root.rel(project.state(inst, write=False).path)
        if path.endswith(".password"):
            _out(f"generated state: {state_file}")
        elif path.endswith(".username") and "username" not in inst.modules.get(mod, {}):
            _out("default: the module's name")
        if srcs:
            _out(f"module defined in: {', '.join(srcs)}")
    else:
        state_file = project.root.rel(project.state(inst, write=False).path)
        _out(f"generated state: {state_file} (family {inst.family})")
    return 0


# ---------------------------------------------------------------------- state


def cmd_state_show(args: argparse.Namespace) -> int:
    project = _project(args)
    inst = project.instance(args.instance)
    state = project.state(inst, write=True)
    _out(f"# {project.root.rel(state.path)} (family {inst.family})")
    for path, kind in sorted(state.kinds().items()):
        section, name = ("modules", path.split(".")[1]) if path.startswith("module.") else (
            "generate", path.split(".", 1)[1])
        value = state.value(section, name)
        secret = kind.split(":")[0] in ("password", "token")
        shown = value if (args.reveal or not secret) else MASK
        _out(f"{path}  {kind}  {shown}")
    return 0


def cmd_state_rotate(args: argparse.Namespace) -> int:
    from . import state as S

    project = _project(args)
    inst = project.instance(args.instance)
    wants = project.family_wants(inst.family)
    by_name = {}
    for w in wants:
        by_name.setdefault(w.name, w)
        by_name[w.path] = w
    want = by_name.get(args.name)
    if want is None:
        names = sorted({w.name for w in wants})
        raise DefinitionError(
            f"{args.name!r} is not a generate entry or module of {inst.name} "
            f"(known: {', '.join(names) or 'none'})"
        )
    S.rotate(project.root.state, inst.family, wants, {want.path},
             shown_root=project.root.base, generators=project.generators())
    _out(f"rotated {want.path} of family {inst.family}; the next build rewrites its users")
    return 0


# ---------------------------------------------------------------------- build


def run_doit(project: Project, argv: list[str]) -> int:
    """Run doit in this process on the project's tasks."""
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

    from .tasks import Build, doit_config, guarded_tasks

    def task_facsimile() -> Any:
        """facsimile's tasks."""
        yield from guarded_tasks(lambda: Build(project))

    loader = ModuleTaskLoader({"task_facsimile": task_facsimile,
                               "DOIT_CONFIG": doit_config(project.root)})
    try:
        return int(DoitMain(loader, extra_config={"GLOBAL": {}}).run(argv))
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int) else 1


def cmd_build(args: argparse.Namespace) -> int:
    project = _project(args)
    names = [project.instance(n).name for n in args.instances]
    argv = ["run"]
    if args.process:
        argv += ["-n", str(args.process), "-P", "process"]
    if args.verbosity is not None:
        argv += ["-v", str(args.verbosity)]
    argv += [f"build:{n}" for n in names] or ["build"]
    return run_doit(project, argv)


# ---------------------------------------------------------------------- plan


def cmd_plan(args: argparse.Namespace) -> int:
    from .plan import print_plan

    project = _project(args)
    return print_plan(project, args.instances, diff=args.diff, as_json=args.json, out=_out)


# ---------------------------------------------------------------------- sync


def cmd_sync(args: argparse.Namespace) -> int:
    from .sync.run import check_sync_args, run_sync

    project = _project(args)
    inst = project.instance(args.instance)
    check_sync_args(project, inst, args.target, args.host)  # before a build it would make useless
    if not (args.no_build or args.dry_run or args.check):
        code = run_doit(project, ["run", f"build:{inst.name}"])
        if code != 0:
            return code
    elif args.dry_run or args.check:
        from .plan import make_plan
        from .tasks import Build

        stale = len(make_plan(Build(project), [inst.name]).stale)
        if stale:
            _out(f"note: BUILD/{inst.name} is not up to date ({stale} to build or delete); "
                 "this shows BUILD/ as it is now (facs build, or sync without --dry-run)")
    return run_sync(project, inst.name, dry_run=args.dry_run, check=args.check,
                    repair=args.repair, target=args.target, host=args.host,
                    always=args.always, out=_out)


# ---------------------------------------------------------------------- init


def cmd_init(args: argparse.Namespace) -> int:
    from .scaffold import init

    made = init(args.dir)
    for path in made:
        _out(f"created {path}")
    _out(f"next: cd {args.dir} && doit")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
