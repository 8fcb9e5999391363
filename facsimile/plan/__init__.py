"""``facs plan``: what a build would change and why, changing nothing.

It uses the same check as the doit tasks (:meth:`facsimile.build.Build.check`),
so ``doit list --all --status`` and the plan always agree. State that does not
exist yet is made in memory only, and listed as "will be generated"; state no
identity can decrypt is an error (exit 1), never a reason to generate.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..build import Build, Output
from ..build.validate import failed_check
from ..project import Project
from ..sync.run import unplaced
from .diff import diff_output, render_error

__all__ = ["Plan", "Stale", "diff_output", "make_plan", "print_plan"]


@dataclass
class Stale:
    task: str
    instance: str
    path: str  # BUILD/<instance>/<rel>
    reasons: list[str]
    output: Output | None = None  # None for an orphan


@dataclass
class Plan:
    stale: list[Stale] = field(default_factory=list)
    up_to_date: int = 0
    generate: dict[str, list[str]] = field(default_factory=dict)  # family -> paths
    new_state: set[str] = field(default_factory=set)  # families with no state yet
    #: outputs no host of their instance receives (BUILD/<instance>/<rel>)
    uncovered: list[str] = field(default_factory=list)
    #: stale outputs that cannot be made, with the reason (BUILD/... -> message)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def changes(self) -> bool:
        return bool(self.stale)


def make_plan(build: Build, instances: Iterable[str] | None = None) -> Plan:
    """Check every output of the chosen instances (all when none)."""
    project = build.project
    names = list(instances or [])
    plan = Plan()
    for inst in project.select(names):
        state = build.state(inst, write=False)
        if state.generated and inst.family not in plan.generate:
            plan.generate[inst.family] = [w.path for w in state.generated]
            if not state.exists:
                plan.new_state.add(inst.family)
        outputs = list(build.outputs(inst).values())
        fresh = True
        for o in outputs:
            reasons = build.check(o, every=True)
            fresh = fresh and not reasons
            if reasons:
                plan.stale.append(
                    Stale(o.task, inst.name, f"BUILD/{inst.name}/{o.rel}", reasons, o)
                )
            else:
                plan.up_to_date += 1
        build.note_checked(inst, outputs, fresh)
        plan.uncovered += [f"BUILD/{inst.name}/{rel}"
                           for rel in unplaced(project, inst, [o.rel for o in outputs])]
        for f in build.orphans(inst.name):
            rel = build.root.rel(f)
            plan.stale.append(Stale(f"build:{inst.name}", inst.name, rel, ["orphan"]))
    if not names:
        for f in build.orphans(None):
            rel = build.root.rel(f)
            inst_name = rel.split("/")[1] if rel.count("/") else ""
            plan.stale.append(Stale("build:_removed", inst_name, rel, ["orphan"]))
    build.save_caches()
    return plan


# --------------------------------------------------------------------------- output


def print_plan(
    project: Project,
    instances: list[str],
    *,
    diff: bool = False,
    as_json: bool = False,
    out: Callable[[str], None] = print,
    build: Build | None = None,
) -> int:
    """Print the plan; exit code 0 when nothing is stale, 2 when something is,
    1 when an output cannot be made or fails its ``validate`` check (said on its own
    line, with or without a diff). ``build``: the run's session, made here if not given."""
    build = build or Build(project)
    plan = make_plan(build, instances)
    for s in plan.stale:
        problem = render_error(build, s)
        failure = failed_check(build, s.output) if not problem and s.output else None
        if failure is not None:
            s.reasons.append(f"check failed: {failure.check}")
            problem = failure.message
        if problem:
            plan.errors[s.path] = problem
    code = 1 if plan.errors else (2 if plan.changes else 0)
    if as_json:
        doc: dict[str, Any] = {
            "stale": [
                {"task": s.task, "instance": s.instance, "path": s.path, "reasons": s.reasons}
                | ({"diff": diff_output(build, s)} if diff else {})
                for s in plan.stale
            ],
            "up_to_date": plan.up_to_date,
            "would_generate": plan.generate,
            "new_state": sorted(plan.new_state),
            "uncovered": plan.uncovered,
            "errors": plan.errors,
        }
        out(json.dumps(doc, indent=2))
        return code
    for family, paths in sorted(plan.generate.items()):
        out(generate_line(family, paths, family in plan.new_state))
    for path in plan.uncovered:
        out(f"warning: {path}: no host receives it (no target's files selects it)")
    for s in plan.stale:
        out(f"{s.path}: {'; '.join(s.reasons)}")
        if s.path in plan.errors:
            out(f"{s.path}: error: {plan.errors[s.path]}")
        if diff:
            text = diff_output(build, s)
            if text:
                out(text.rstrip("\n"))
    orphans = sum(1 for s in plan.stale if s.reasons == ["orphan"])
    stale = len(plan.stale) - orphans
    out(
        f"plan: {stale} to build, {orphans} to delete, {plan.up_to_date} up to date"
        if plan.changes else f"plan: nothing to do, {plan.up_to_date} up to date"
    )
    if plan.errors:
        out(f"plan: {len(plan.errors)} output(s) cannot be made")
    return code


def generate_line(family: str, paths: list[str], new: bool) -> str:
    """``state of family dev does not exist yet: 3 values will be generated (...)``."""
    n = len(paths)
    values = f"{n} {'value' if n == 1 else 'values'}"
    if new:
        return (f"state of family {family} does not exist yet: {values} will be generated "
                f"({', '.join(paths)})")
    return (f"state of family {family}: {n} new {'value' if n == 1 else 'values'} will be "
            f"generated ({', '.join(paths)})")
