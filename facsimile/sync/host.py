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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..commands import check_failure, fill, run_shell
from . import killpoints, lock
from .apply import apply_host, human_size
from .destinations.base import Destination
from .generations import Stamp, mark_checked, unchecked
from .guard import StateStamp, refusal
from .manifest import MANIFEST, Manifest, parse_record
from .planner import HostPlan, plan_host
from .saved import host_doc, mismatch
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
    checksum: bool = False  # read back every file's content, not only size and mtime
    #: a saved plan's hosts by label: apply exactly that, refuse a host that differs
    expect: Mapping[str, Mapping[str, Any]] | None = None
    quiet: bool = False  # plan only, print nothing per file (the confirm gate's first pass)
    #: dry run: print a diff of each put, every generated value masked by this function
    diff: Callable[[str], str] | None = None
    #: who makes the generations a change keeps, and how many (None: none kept)
    keep: Stamp | None = None
    #: the health check: commands run for each host that changed, after its postcmd
    checks: tuple[str, ...] = ()
    check_timeout: float = 30.0
    #: a dry run's or check's results carry the host's part of a saved plan (a digest
    #: of every file it gets); False where they are thrown away (a rollout's first look)
    saved: bool = True


@dataclass
class HostResult:
    """How one destination went: ``ok``, a message, whether it changed, its drift,
    and what was (or, in a dry run, would be) put and deleted."""

    target: str
    host: str
    ok: bool
    message: str
    changed: bool = False
    drift: list[str] = field(default_factory=list)
    puts: list[str] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    #: the host's part of a saved plan (see ``saved.host_doc``)
    plan: dict[str, Any] | None = None
    worker: str | None = None  # the dask worker that synced it (engines); None: here
    #: the generation the destination was at before this sync (see ``generations``);
    #: None when the sync failed before it knew
    before: int | None = None

    @property
    def label(self) -> str:
        """``target/host``, as every line about it starts."""
        return f"{self.target}/{self.host}"


def sync_host(dest: Destination, job: Job, owned: list[str], exclude: list[re.Pattern[str]],
              postcmds: list[str], mode: Mode) -> HostResult:
    """Plan ``job`` at ``dest``, then check, print or carry out the plan as ``mode`` says."""
    label = f"{job.target}/{job.host}"

    def make_plan(doc: Manifest | None) -> HostPlan:
        return plan_host(dest, job.files, owned, exclude, job.target, job.host, job.url,
                         doc=doc, checksum=mode.checksum or mode.repair)

    plan = make_plan(None)  # one survey: the manifest, the pending record, the listing
    refused = _refusal(plan, job, mode) or _differs(plan, mode)
    if refused:
        return HostResult(job.target, job.host, False, refused)
    if mode.check:
        return _report_drift(job, plan, mode)
    if mode.dry_run:
        if mode.diff is not None and not mode.quiet:
            _print_diffs(dest, job, plan, mode.diff, mode.out)
        shown = _print_plan(job, plan, mode)
        shown.changed = shown.changed or (bool(mode.checks) and unchecked(plan.meta))
        return shown
    if plan.changes:
        with lock.hold(dest):
            raw = dest.read(MANIFEST)  # another sync may have gone first
            if raw != plan.raw:  # (the same bytes: the plan holds, nothing to parse)
                plan = make_plan(parse_record(dest, MANIFEST, raw))
                refused = _refusal(plan, job, mode) or _differs(plan, mode)
                if refused:
                    return HostResult(job.target, job.host, False, refused)
            sent = apply_host(dest, plan, mode.out, _meta(plan, mode), mode.keep)
    else:
        if plan.locked:  # left by a sync killed after its manifest: nothing else to do
            lock.clear_dead(dest)
        sent = apply_host(dest, plan, mode.out, _meta(plan, mode), mode.keep)
    _print_deletes(label, plan, mode.out, "deleted")
    mode.out(f"  {label}: {len(plan.puts)} put, {len(plan.deletes)} deleted, "
             f"{plan.unchanged} unchanged, {human_size(sent)} sent")
    result = _result(job, plan, "ok", doc=False)  # a saved plan is made by dry runs only
    if postcmds and (plan.changes or mode.always):
        result = run_postcmds(dest, job, result, postcmds, mode.out)
    waiting = bool(mode.checks) and not plan.changes and unchecked(plan.meta)
    if waiting:  # its sync was killed before the check: check it now, restore it if it fails
        mode.out(f"  {label}: generation {result.before} was never checked: checking it now")
        result.changed, result.before = True, (result.before or 1) - 1
    if result.ok and mode.checks and (plan.changes or mode.always or waiting):
        result = run_checks(dest, job, result, mode)
        if result.ok and mode.keep is not None and mode.keep.keep:
            mark_checked(dest)
    return result


def _result(job: Job, plan: HostPlan, message: str, doc: bool = True) -> HostResult:
    """The ``HostResult`` of a host whose plan went (or would go) as ``plan`` says;
    ``doc``: with the host's part of a saved plan (a digest of every file it gets:
    0.03 s at 10,000 files, so only where a plan may be saved or compared)."""
    return HostResult(job.target, job.host, True, message, plan.changes, plan.drift,
                      [p.file.rel for p in plan.puts], list(plan.deletes),
                      host_doc(plan) if doc else None,
                      before=int(plan.meta.get("generation") or 0))


def _differs(plan: HostPlan, mode: Mode) -> str | None:
    """Why a saved plan (``mode.expect``) no longer holds for this host, if it does not."""
    if mode.expect is None:
        return None
    return mismatch(mode.expect.get(f"{plan.target}/{plan.host}"), plan)


def _print_deletes(label: str, plan: HostPlan, out: Callable[[str], None], verb: str) -> None:
    """One line per deleted path; a file facsimile never wrote says so."""
    for rel in plan.deletes:
        why = " (not ours: in an owned folder, never written by facsimile)" \
            if rel in plan.foreign else ""
        out(f"  {label}: {verb} {rel}{why}")


def _refusal(plan: HostPlan, job: Job, mode: Mode) -> str | None:
    """Why this sync must not write to the destination (see ``guard``), if it must not."""
    if mode.stamp is None:
        return None
    return refusal(plan.meta, mode.stamp, shown_url(job.url), mode.adopt_state)


def _meta(plan: HostPlan, mode: Mode) -> dict[str, object]:
    """What the new manifest records besides its files."""
    return dict(plan.meta) if mode.stamp is None else mode.stamp.meta()


def _report_drift(job: Job, plan: HostPlan, mode: Mode) -> HostResult:
    """``--check``: print the drift and how much is to sync; change nothing."""
    label = f"{job.target}/{job.host}"
    for line in plan.drift:
        mode.out(f"  {label}: drift: {line}")
    pending = len(plan.puts) + len(plan.deletes)
    mode.out(f"  {label}: {len(plan.drift)} drifted, {pending} to sync")
    return _result(job, plan, "checked", doc=mode.saved)


def _print_plan(job: Job, plan: HostPlan, mode: Mode) -> HostResult:
    """``--dry-run``: every put and delete this sync would make, and the totals."""
    label = f"{job.target}/{job.host}"
    if not mode.quiet:
        for p in plan.puts:
            mode.out(f"  {label}: put {p.file.rel} ({p.reason}, {human_size(p.file.size)})")
        _print_deletes(label, plan, mode.out, "delete")
        mode.out(f"  {label}: would put {len(plan.puts)}, delete {len(plan.deletes)}, "
                 f"{plan.unchanged} unchanged ({shown_url(job.url)})")
    return _result(job, plan, "dry run", doc=mode.saved)


def _print_diffs(dest: Destination, job: Job, plan: HostPlan, masked: Callable[[str], str],
                 out: Callable[[str], None]) -> None:
    """``--dry-run --diff``: a unified diff per put of what the host holds against
    what would be put, through ``masked`` (generated values hidden); a binary file
    is only named."""
    import difflib

    label = f"{job.target}/{job.host}"
    for p in plan.puts:
        old = dest.read(p.file.rel) if p.reason != "new" or p.file.rel in plan.seen else None
        with open(p.file.path, "rb") as fh:
            new = fh.read()
        texts = [_text(b) for b in (old or b"", new)]
        if texts[0] is None or texts[1] is None:
            out(f"  {label}: binary file {p.file.rel} differs")
            continue
        lines = difflib.unified_diff(
            masked(texts[0]).splitlines(keepends=True), masked(texts[1]).splitlines(keepends=True),
            f"{label}:{p.file.rel}" if old is not None else "/dev/null",
            f"BUILD/{p.file.rel}")
        text = "".join(lines).rstrip("\n")
        if text:
            out(text)
        elif p.reason.startswith("mode") or "mode" in p.reason:
            out(f"  {label}: {p.file.rel}: only its mode differs")


def _text(data: bytes) -> str | None:
    """``data`` as text, None when it is binary (a NUL, or not UTF-8)."""
    if b"\0" in data:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def run_postcmds(dest: Destination, job: Job, result: HostResult, postcmds: list[str],
                 out: Callable[[str], None]) -> HostResult:
    """Run each post-command at the destination, its output prefixed by the host;
    the first that fails fails the host."""
    if not dest.runs_commands:
        out(f"  {job.target}/{job.host}: postcmd skipped: not an ssh destination")
        return result
    for cmd in postcmds:
        code, text = dest.run(cmd)
        for line in text.splitlines():
            out(f"{job.host}: {line}")
        if code != 0:
            result.ok = False
            result.message = f"postcmd {cmd!r} exited {code}"
            return result
    return result


def run_checks(dest: Destination, job: Job, result: HostResult, mode: Mode) -> HostResult:
    """The health check (``deploy.rollout.check``): each command on the host (ssh),
    or here for a folder or S3 destination, with ``{host}``, ``{target}`` and
    ``{path}`` (the destination's folder, or its URL on S3) filled in; the first
    that fails or runs past ``check_timeout`` fails the host."""
    values = {"host": job.host, "target": job.target,
              "path": dest.base if dest.has_modes else job.url}
    killpoints.reached("check")
    for template in mode.checks:
        cmd = fill(template, values)
        if dest.runs_commands:
            code, text = dest.run(cmd, timeout=mode.check_timeout)
        else:
            try:
                ran = run_shell(cmd, mode.check_timeout)
                code, text = ran.code, ran.output
            except OSError as exc:
                code, text = 127, str(exc)
        for line in text.splitlines():
            mode.out(f"{job.host}: check: {line}")
        failed = check_failure(template, code, text)
        if failed:
            result.ok, result.message = False, failed
            return result
    mode.out(f"  {job.target}/{job.host}: health check passed")
    return result
