"""``facs sync``: build the instances unless told not to (or only looking), then
push each with :func:`facsimile.sync.run.run_sync`; several instances end
with one total. Also the saved plan (``--dry-run --out``, ``--plan``), the
confirmation an instance asks for (``deploy.confirm``, ``--yes``) and the
JSON document (``--json``).

Exit codes: 0 done or nothing to do, 2 a dry run or check found something
to do, 1 any error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..build.checkouts import check_out
from ..errors import SyncError
from ..project import Project
from ..sync.fleet import Fleet
from ..sync.host import HostResult
from ..sync.run import check_sync_args, run_sync
from ..sync.saved import read_plan, write_plan
from .build import run_doit
from .common import load_project, out

#: the version of ``facs sync --json``'s shape (docs/pages/console.md, "Machine-readable output")
SYNC_FORMAT = 1


def worst(a: int, b: int) -> int:
    """The exit code of two results together: an error (1) wins, then changes (2)."""
    return 1 if 1 in (a, b) else max(a, b)


def _names(project: Project, args: argparse.Namespace,
           saved: dict[str, Any] | None) -> list[str]:
    """The instances to sync: those named, every one with hosts (``--all``), or
    those of the saved plan."""
    if args.all:
        return [i.name for i in project.select([]) if any(h for h, _ in i.hosts)]
    if args.instances:
        return [project.instance(n).name for n in args.instances]
    if saved:
        return list(saved)
    raise SyncError("name an instance to sync, or pass --all (or --plan FILE)")


def cmd_sync(args: argparse.Namespace) -> int:
    """Build, then push, check or dry-run each instance's sync."""
    if (args.out or args.diff) and not args.dry_run:
        raise SyncError(f"{'--out' if args.out else '--diff'} goes with --dry-run")
    if args.plan and (args.dry_run or args.check):
        raise SyncError("--plan applies a saved plan: without --dry-run or --check")
    project = load_project(args)
    saved = read_plan(Path(args.plan)) if args.plan else None
    names = _names(project, args, saved)
    looking = args.dry_run or args.check
    for name in names:  # before a build it would make useless
        check_sync_args(project, project.instance(name), args.target, args.host)
        if saved is not None and name not in saved:
            raise SyncError(f"the saved plan {args.plan} has no instance {name}")
    check_out(project, names, verify=True)  # a moved tag: refused before anything is built
    emit = _quiet if args.json else out
    if not (args.no_build or looking or saved is not None):
        code = run_doit(project, ["run", *(f"build:{n}" for n in names)])
        if code != 0:
            return code
    elif looking:
        for name in names:
            note_stale(project, name, emit)
    if saved is not None:
        _precheck(project, names, args, saved, emit)
    code, every = 0, {}
    for name in names:
        results: list[HostResult] = []
        code = worst(code, _one(project, name, args, saved, results, emit))
        every[name] = results
    if len(names) > 1:
        _total(every, looking, emit)
    if args.out:
        write_plan(Path(args.out), {n: [r.plan for r in rs if r.plan] for n, rs in every.items()})
        emit(f"plan written to {args.out}: apply it with facs sync --plan {args.out}")
    if args.json:
        out(json.dumps(sync_document(every, code, looking), indent=2, sort_keys=True))
    return code


def _precheck(project: Project, names: list[str], args: argparse.Namespace,
              saved: dict[str, Any], emit: Any) -> None:
    """Plan every host of a saved plan again before the first put anywhere; raise
    when one no longer matches (each is checked again under its lock)."""
    for name in names:
        code = run_sync(project, name, dry_run=True, quiet=True, expect=saved[name],
                        target=args.target, host=args.host, checksum=args.checksum,
                        adopt_state=args.adopt_state, out=emit)
        if code == 1:
            raise SyncError(f"the saved plan {args.plan} no longer holds for instance {name} "
                            "(see above): nothing was changed")


def _quiet(text: str = "") -> None:
    """With ``--json``, the lines meant for people go to stderr."""
    print(text, file=sys.stderr, flush=True)


def _one(project: Project, name: str, args: argparse.Namespace,
         saved: dict[str, Any] | None, results: list[HostResult], emit: Any) -> int:
    """Sync one instance; asks first when its ``deploy.confirm`` says so."""
    kw = dict(target=args.target, host=args.host, always=args.always,
              adopt_state=args.adopt_state, checksum=args.checksum, out=emit,
              fleet=Fleet(args.slice, args.engine, args.scheduler))
    staged = dict(wave=args.wave, rollout=not args.no_rollout)
    looking = args.dry_run or args.check
    expect = saved.get(name) if saved is not None else None
    confirm = project.instance(name).data.get("deploy", {}).get("confirm")
    if not looking and expect is None and confirm:
        shown: list[HostResult] = []
        code = run_sync(project, name, dry_run=True, results=shown, **kw)
        if code != 2:
            results.extend(shown)
            return code
        _ask(name, confirm, args.yes)
        expect = {r.label: r.plan for r in shown if r.plan}
    return run_sync(project, name, dry_run=args.dry_run, check=args.check,
                    repair=args.repair, expect=expect, results=results,
                    diff=args.diff and args.dry_run, **staged, **kw)


def _ask(name: str, confirm: object, yes: bool) -> None:
    """Go on only when the operator agrees (or ``--yes``); else raise."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise SyncError(f"instance {name} asks to confirm a sync (deploy.confirm) and there "
                        "is no terminal to ask on: pass --yes (in CI), or run it in a terminal")
    word = confirm if isinstance(confirm, str) else "yes"
    answer = input(f"Apply this plan to instance {name}? Type {word!r} to go on: ")
    if answer.strip() != word and not (word == "yes" and answer.strip().lower() == "y"):
        raise SyncError(f"sync of instance {name} not confirmed: nothing was changed")


def _total(every: dict[str, list[HostResult]], looking: bool, emit: Any) -> None:
    """The one total line of several instances."""
    results = [r for rs in every.values() for r in rs]
    failed = sum(1 for r in results if not r.ok)
    puts = sum(len(r.puts) for r in results if r.ok)
    deletes = sum(len(r.deletes) for r in results if r.ok)
    verb = ("would put", "would delete") if looking else ("put", "deleted")
    emit(f"total: {len(every)} instance(s), {len(results) - failed} host(s) ok, {failed} "
         f"failed; {verb[0]} {puts}, {verb[1]} {deletes}")


def sync_document(every: dict[str, list[HostResult]], code: int,
                  looking: bool) -> dict[str, Any]:
    """The ``facs sync --json`` document."""
    return {
        "format": SYNC_FORMAT, "exit": code, "dry_run": looking,
        "instances": {name: [{"target": r.target, "host": r.host, "ok": r.ok,
                              "puts": r.puts if r.ok else [],
                              "deletes": r.deletes if r.ok else [],
                              "drift": r.drift, "errors": [] if r.ok else [r.message]}
                             for r in results]
                      for name, results in every.items()},
    }


def note_stale(project: Project, name: str, emit: Any) -> None:
    """Say so when the build that a dry run or check shows is not up to date."""
    from ..build import Build
    from ..plan import make_plan

    stale = len(make_plan(Build(project), [name]).stale)
    if stale:
        emit(f"note: BUILD/{name} is not up to date ({stale} to build or delete); "
             "this shows BUILD/ as it is now (facs build, or sync without --dry-run)")
