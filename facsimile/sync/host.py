"""Syncing one destination, in the mode asked for: ``sync_host`` plans it (from
the manifest, or for check and repair from digests and modes read at the
destination), then reports drift (check), prints the plan (dry run), or
carries it out and runs ``deploy.postcmd``. Before any of that, ``guard``
decides whether this sync may write there at all (owner, state lineage and
serial); a plan with puts or deletes is carried out under the destination's
lock, re-planned first if another sync changed the manifest meanwhile. Its
``HostResult`` (ok or failed,
changed, drift) is what the instance's summary counts. Also ``Job``, the unit
of work (a destination and its files), and ``Mode``, what the sync is asked to
do.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from . import lock
from .apply import apply_host, human_size
from .destinations.base import Destination
from .guard import StateStamp, refusal
from .manifest import Manifest, read_manifest_doc
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
    #: the state the build was made from; None: no owner or state checks
    stamp: StateStamp | None = None
    adopt_state: bool = False  # push even when the state's lineage or serial is refused


@dataclass
class HostResult:
    """How one destination went: ``ok``, a message, whether it changed, its drift."""

    target: str
    host: str
    ok: bool
    message: str
    changed: bool = False
    drift: list[str] = field(default_factory=list)
    worker: str | None = None  # the dask worker that synced it (engines); None: here


def sync_host(dest: Destination, job: Job, owned: list[str], exclude: list[re.Pattern[str]],
              postcmds: list[str], mode: Mode) -> HostResult:
    """Plan ``job`` at ``dest``, then check, print or carry out the plan as ``mode`` says."""
    label = f"{job.target}/{job.host}"

    def make_plan(doc: Manifest) -> tuple[HostPlan, list[str]]:
        """The plan against ``doc``, and the drift (check and repair)."""
        if not (mode.check or mode.repair):
            return plan_host(dest, job.files, owned, exclude, job.target, job.host,
                             job.url, doc=doc), []
        rels = sorted(set(job.files) | set(doc.files))
        actual = dest.digests(rels)
        modes = dest.modes(rels) if dest.has_modes else {}
        plan = plan_host(dest, job.files, owned, exclude, job.target, job.host, job.url,
                         actual, modes, doc=doc)
        return plan, find_drift(doc.files, actual, modes)

    plan, drift = make_plan(read_manifest_doc(dest))
    refused = _refusal(plan, job, mode)
    if refused:
        return HostResult(job.target, job.host, False, refused)
    if mode.check:
        return _report_drift(job, plan, drift, mode.out)
    if mode.dry_run:
        return _print_plan(job, plan, mode.out)
    if plan.changes:
        with lock.hold(dest):
            doc = read_manifest_doc(dest)  # another sync may have gone first
            if doc.raw != plan.raw:
                plan, _ = make_plan(doc)
                refused = _refusal(plan, job, mode)
                if refused:
                    return HostResult(job.target, job.host, False, refused)
            sent = apply_host(dest, plan, mode.out, _meta(plan, mode))
    else:
        sent = apply_host(dest, plan, mode.out, _meta(plan, mode))
    mode.out(f"  {label}: {len(plan.puts)} put, {len(plan.deletes)} deleted, "
             f"{plan.unchanged} unchanged, {human_size(sent)} sent")
    if postcmds and (plan.changes or mode.always):
        return _run_postcmds(dest, job, plan, postcmds, mode.out)
    return HostResult(job.target, job.host, True, "ok", plan.changes)


def _refusal(plan: HostPlan, job: Job, mode: Mode) -> str | None:
    """Why this sync must not write to the destination (see ``guard``), if it must not."""
    if mode.stamp is None:
        return None
    return refusal(plan.meta, mode.stamp, shown_url(job.url), mode.adopt_state)


def _meta(plan: HostPlan, mode: Mode) -> dict[str, object]:
    """What the new manifest records besides its files."""
    return dict(plan.meta) if mode.stamp is None else mode.stamp.meta()


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

