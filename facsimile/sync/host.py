"""Syncing one destination, in the mode asked for: ``sync_host`` plans it (from
the manifest, or for check and repair from digests and modes read at the
destination), then reports drift (check), prints the plan (dry run), or
carries it out and runs ``deploy.postcmd``. Its ``HostResult`` (ok or failed,
changed, drift) is what the instance's summary counts. Also ``Job``, the unit
of work (a destination and its files), and ``Mode``, what the sync is asked to
do.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .apply import apply_host, human_size
from .destinations.base import Destination
from .manifest import read_manifest
from .planner import HostPlan, find_drift, plan_host
from .scan import LocalFile
from .urls import shown_url


@dataclass(frozen=True)
class Job:
    """One destination: the targets (joined by ``+``) and host it stands for, its
    URL, and the files of the build it gets."""

    target: str
    host: str
    url: str
    files: dict[str, LocalFile]


@dataclass(frozen=True)
class Mode:
    """What a sync is asked to do, the same for every host."""

    dry_run: bool = False
    check: bool = False
    repair: bool = False
    always: bool = False
    out: Callable[[str], None] = print


@dataclass
class HostResult:
    """How one destination went: ``ok``, a message, whether it changed, its drift."""

    target: str
    host: str
    ok: bool
    message: str
    changed: bool = False
    drift: list[str] = field(default_factory=list)


def sync_host(dest: Destination, job: Job, owned: list[str], exclude: list[re.Pattern[str]],
              postcmds: list[str], mode: Mode) -> HostResult:
    """Plan ``job`` at ``dest``, then check, print or carry out the plan as ``mode`` says."""
    label = f"{job.target}/{job.host}"
    if mode.check or mode.repair:
        manifest = read_manifest(dest)
        rels = sorted(set(job.files) | set(manifest))
        actual = dest.digests(rels)
        modes = dest.modes(rels) if dest.has_modes else {}
        plan = plan_host(dest, job.files, owned, exclude, job.target, job.host, job.url,
                         actual, modes)
        if mode.check:
            return _report_drift(job, plan, find_drift(manifest, actual, modes), mode.out)
    else:
        plan = plan_host(dest, job.files, owned, exclude, job.target, job.host, job.url)
    if mode.dry_run:
        return _print_plan(job, plan, mode.out)
    sent = apply_host(dest, plan, mode.out)
    mode.out(f"  {label}: {len(plan.puts)} put, {len(plan.deletes)} deleted, "
             f"{plan.unchanged} unchanged, {human_size(sent)} sent")
    if postcmds and (plan.changes or mode.always):
        return _run_postcmds(dest, job, plan, postcmds, mode.out)
    return HostResult(job.target, job.host, True, "ok", plan.changes)


def _report_drift(job: Job, plan: HostPlan, drift: list[str],
                  out: Callable[[str], None]) -> HostResult:
    label = f"{job.target}/{job.host}"
    for line in drift:
        out(f"  {label}: drift: {line}")
    pending = len(plan.puts) + len(plan.deletes)
    out(f"  {label}: {len(drift)} drifted, {pending} to sync")
    return HostResult(job.target, job.host, True, "checked", drift=drift)


def _print_plan(job: Job, plan: HostPlan, out: Callable[[str], None]) -> HostResult:
    label = f"{job.target}/{job.host}"
    for p in plan.puts:
        out(f"  {label}: put {p.file.rel} ({p.reason}, {human_size(p.file.size)})")
    for rel in plan.deletes:
        out(f"  {label}: delete {rel}")
    out(f"  {label}: would put {len(plan.puts)}, delete {len(plan.deletes)}, "
        f"{plan.unchanged} unchanged ({shown_url(job.url)})")
    return HostResult(job.target, job.host, True, "dry run", plan.changes)


def _run_postcmds(dest: Destination, job: Job, plan: HostPlan, postcmds: list[str],
                  out: Callable[[str], None]) -> HostResult:
    """Run each post-command at the destination, its output prefixed by the host;
    the first that fails fails the host."""
    if not dest.runs_commands:
        out(f"  {job.target}/{job.host}: postcmd skipped: not an ssh destination")
        return HostResult(job.target, job.host, True, "ok", plan.changes)
    for cmd in postcmds:
        code, text = dest.run(cmd)
        for line in text.splitlines():
            out(f"{job.host}: {line}")
        if code != 0:
            return HostResult(job.target, job.host, False,
                              f"postcmd {cmd!r} exited {code}", plan.changes)
    return HostResult(job.target, job.host, True, "ok", plan.changes)

