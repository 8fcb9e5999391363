"""Syncing an instance: ``jobs_for`` decides which destination gets which files
(:mod:`.placement`: each target's ``files`` patterns less ``deploy.exclude``,
``{host}`` fan-out outputs to their host only, one job per filled
``deploy.url``), and ``sync_instance`` scans the build, keeps the jobs of the
slice asked for (``slices``), runs one ``sync_host`` per job on an engine
(``engines``: a thread pool of ``deploy.jobs``, default 32, or a dask cluster),
and prints the summary and returns the exit code.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from ..build.digests import JsonCache
from ..errors import SyncError
from ..globs import check_pattern, glob_regex
from .destinations import open_destination
from .engines import Engine, ThreadEngine
from .generations import Stamp, restore
from .guard import StateStamp
from .host import HostResult, Job, Mode, run_postcmds, sync_host
from .placement import destinations, jobs_of, place, uncovered
from .rollout import Rollout, run_waves
from .scan import LocalFile, scan_build
from .slices import Slice, slice_jobs
from .urls import fill

#: the better of 16 and 32 at 100 hosts on loopback and over 50 ms of round trip
#: (bench/bench_sync.py --hosts 100 --jobs 16,32 [--latency 50]): a host's sync
#: mostly waits on the network, and 32 threads cost 5 MB more than 16
DEFAULT_JOBS = 32


def jobs_for(
    *, instance: str, project: str, root: Path, deploy: Mapping[str, Any],
    targets: Mapping[str, Mapping[str, Any]], files: Mapping[str, LocalFile],
    target: str | None, host: str | None, host_of: Mapping[str, str] | None = None,
) -> list[Job]:
    """One job per destination (see :mod:`.placement`). Targets whose hosts fill
    ``url`` to the same destination (two targets on one host) share one job with
    the union of their files, so that neither deletes what the other put there,
    even when ``--target`` names only one of them. ``host_of``: the outputs a
    ``{host}`` fan-out made, each for its host only."""
    placed = place(instance=instance, project=project, root=root, deploy=deploy,
                   targets=targets, files=files, host_of=host_of)
    return jobs_of(placed, target, host)


def owned_folders(templates: list[str], values: Mapping[str, str]) -> list[str]:
    """The ``deploy.delete`` folders of one destination, filled and checked."""
    owned = []
    for t in templates:
        folder = fill(t, values).strip("/")
        check_pattern(folder, "deploy.delete folder")
        if folder:
            owned.append(folder)
    return owned


def sync_instance(
    *,
    instance: str,
    project: str,
    root: Path,
    build_dir: Path,
    deploy: Mapping[str, Any],
    targets: Mapping[str, Mapping[str, Any]],
    dry_run: bool = False,
    check: bool = False,
    repair: bool = False,
    target: str | None = None,
    host: str | None = None,
    always: bool = False,
    stamp: StateStamp | None = None,
    adopt_state: bool = False,
    out: Callable[[str], None] = print,
    host_of: Mapping[str, str] | None = None,
    checksum: bool = False,
    expect: Mapping[str, Mapping[str, Any]] | None = None,
    quiet: bool = False,
    results: list[HostResult] | None = None,
    diff: Callable[[str], str] | None = None,
    part: Slice | None = None,
    engine: Engine | None = None,
    scan_cache: JsonCache | None = None,
    keep: Stamp | None = None,
    rollout: Rollout | None = None,
    wave: int | None = None,
) -> int:
    """Push ``build_dir`` to every host. Exit code: 0 done or nothing to do, 1 a
    host failed (or was refused: see ``guard``; ``stamp`` is the build's state,
    None skips those checks), 2 a dry run or check found something to do.

    ``host_of``: outputs of a ``{host}`` fan-out, each for its host only;
    ``checksum``: compare contents, not size and mtime; ``expect``: a saved
    plan's hosts, applied exactly or refused; ``quiet``: print nothing per host
    (a dry run made to ask before a sync); ``results``: gets each host's result;
    ``diff``: a dry run prints a diff of each put, masked by this function;
    ``part``: only that slice of the hosts (see ``slices``); ``engine``: who runs
    the hosts' jobs (see ``engines``; None: a thread pool of ``deploy.jobs``);
    ``scan_cache``: the digests of the build's files kept between runs (see ``scan``);
    ``keep``: who makes the generations a change keeps (see ``generations``);
    ``rollout``: the hosts in waves with health checks (see ``rollout``; a dry run
    or check takes them all at once), ``wave``: only that wave."""
    if not build_dir.is_dir():
        raise SyncError(f"nothing to sync: {build_dir} does not exist (build it first)")
    workers = int(deploy.get("jobs") or DEFAULT_JOBS)
    if engine is None and part is None and scan_cache:  # the hosts synced first, warmed
        ahead = [(u, t, h) for u, t, h in destinations(instance=instance, project=project,
                                                       root=root, deploy=deploy, targets=targets)
                 if (target is None or t == target) and (host is None or h == host)]
        warm_up(ahead, deploy, len(scan_cache), checksum or repair, workers)
    files = scan_build(build_dir, scan_cache)
    # the digests kept for the next run are written while the hosts are read
    saving = threading.Thread(target=scan_cache.save, name="facsimile-scan-cache") \
        if scan_cache is not None else None
    if saving is not None:
        saving.start()
    try:
        placed = place(instance=instance, project=project, root=root, deploy=deploy,
                       targets=targets, files=files, host_of=host_of)
        jobs = jobs_of(placed, target, host)
        verb = "check" if check else ("dry run" if dry_run else "sync")
        if not quiet:
            warn_uncovered(instance, uncovered(placed, files, deploy.get("exclude", [])), out)
        if part is not None:
            total, jobs = len(jobs), slice_jobs(jobs, part)
            out(f"slice {part}: {len(jobs)} of {total} host(s)")
        if not jobs:
            out(f"{verb} {instance}: no hosts to sync (no targets with hosts"
                + (" matching the filter)" if target or host or part else ")"))
            return 0
        if dry_run or check:
            rollout = None
        if keep is not None and rollout is not None and rollout.check:
            keep = replace(keep, checks=True)
        mode = Mode(dry_run=dry_run, check=check, repair=repair, always=always, out=out,
                    stamp=stamp, adopt_state=adopt_state, checksum=checksum, expect=expect,
                    quiet=quiet, diff=diff, keep=keep, checks=rollout.check if rollout else (),
                    check_timeout=rollout.check_timeout if rollout else 30.0)
        if not quiet:
            out(f"{verb} {instance}: {len(jobs)} host(s), "
                f"{sum(len(j.files) for j in jobs)} file(s) placed")
        values = {"project": project, "instance": instance, "root": str(root)}
        make_one = partial(_runner_for, deploy, values, mode)
        engine = engine or ThreadEngine(workers)
        order = {(j.target, j.host): i for i, j in enumerate(jobs)}
        if rollout is None:
            got = list(engine.run(jobs, make_one, out))
        else:
            got = _staged(jobs, rollout, engine, deploy, values, mode, out, wave)
        done = sorted(got, key=lambda r: order[r.target, r.host])
        if results is not None:
            results.extend(done)
        return _summary(verb, instance, done, mode)
    finally:
        if saving is not None:
            saving.join()


def warm_up(ahead: list[tuple[str, str, str]], deploy: Mapping[str, Any], expected: int,
            digests: bool, workers: int) -> None:
    """Open the destinations of the first ``workers`` of ``ahead`` (``(url, target,
    host)``, the order the jobs run in) and warm each (``Destination.warm``: a
    host's shell started for its survey of some ``expected`` files), each in a
    thread of its own, while the caller scans the build. Never an error here: a
    destination that cannot be opened fails in its job, as before (an ssh host's
    job gets the warm-up's failure at once, not after a second timeout)."""
    urls: dict[str, str] = {}
    for url, target, host in ahead:
        if len(urls) >= workers:
            break
        urls.setdefault(url, f"{target}/{host}")

    def warm(url: str, label: str) -> None:
        with contextlib.suppress(Exception):
            dest = open_destination(url, deploy, label, ahead=True)
            try:
                dest.warm(expected, digests)
            finally:
                dest.close()

    for url, label in urls.items():
        threading.Thread(target=warm, args=(url, label), daemon=True,
                         name="facsimile-warm").start()


def warn_uncovered(instance: str, rels: list[str], out: Callable[[str], None]) -> None:
    """One warning line per output of ``instance`` that no host receives."""
    for rel in rels:
        out(f"warning: BUILD/{instance}/{rel}: no host receives it "
            "(no target's files selects it)")


def _runner_for(deploy: Mapping[str, Any], values: Mapping[str, str], mode: Mode,
                out: Callable[[str], None]) -> Callable[[Job], HostResult]:
    """``_host_runner`` with the hosts' progress going to ``out`` (an engine's
    ``RunnerFactory`` once the first three arguments are bound)."""
    return _host_runner(deploy, values, replace(mode, out=out))


def _host_runner(deploy: Mapping[str, Any], values: Mapping[str, str],
                 mode: Mode) -> Callable[[Job], HostResult]:
    """The function the pool runs for each job: open, sync, close one destination;
    any failure becomes a failed ``HostResult`` and never stops the other hosts."""
    templates = [str(d) for d in deploy.get("delete", ["{project}"])]
    exclude = [glob_regex(p) for p in deploy.get("exclude", [])]
    postcmds = list(deploy.get("postcmd", []))

    def one(job: Job) -> HostResult:
        label = f"{job.target}/{job.host}"
        try:
            owned = owned_folders(templates, {**values, "host": job.host, "target": job.target})
            dest = open_destination(job.url, deploy, label)
            try:
                return sync_host(dest, job, owned, exclude, postcmds, mode)
            finally:
                dest.close()
        except Exception as exc:  # one host's failure never stops the others
            return failed(job, exc)

    return one


def _staged(jobs: list[Job], rollout: Rollout, engine: Engine, deploy: Mapping[str, Any],
            values: Mapping[str, str], mode: Mode, out: Callable[[str], None],
            wave: int | None) -> list[HostResult]:
    """A sync in waves (see ``rollout``): first every host planned at once (no
    change made), then the waves over the hosts with something to do (or a
    health check owed, or a failure), the engine running each wave; a host with
    nothing to do is done after that one look, as in a sync without waves."""
    look = replace(mode, dry_run=True, quiet=True, saved=False)  # its plans are not kept
    first = {r.label: r for r in engine.run(jobs, partial(_runner_for, deploy, values, look),
                                            out)}
    def todo(j: Job) -> bool:
        r = first[f"{j.target}/{j.host}"]
        return r.changed or not r.ok

    settled = [replace(first[f"{j.target}/{j.host}"], message="ok", plan=None)
               for j in jobs if not todo(j)]
    if settled and not mode.quiet:
        out(f"{len(settled)} host(s) up to date")
    make_one = partial(_runner_for, deploy, values, mode)
    return settled + run_waves(
        jobs, rollout, lambda js: engine.run(js, make_one, out),
        lambda js, to: engine.run(js, partial(restorer_for, deploy, to, True), out),
        out, only=wave, todo=todo)


def restorer_for(deploy: Mapping[str, Any], to: Mapping[str, int | None], pending_only: bool,
                 out: Callable[[str], None]) -> Callable[[Job], HostResult]:
    """The function an engine runs to restore each job to the generation ``to``
    maps its label to (None: the one before its current, or with ``pending_only``
    only undo a sync that stopped half way); its postcmd runs again when
    something was restored (an engine's ``RunnerFactory`` once bound)."""
    postcmds = list(deploy.get("postcmd", []))

    def one(job: Job) -> HostResult:
        label = f"{job.target}/{job.host}"
        try:
            dest = open_destination(job.url, deploy, label)
            try:
                back = restore(dest, to.get(label), dest.has_modes,
                               only_pending=pending_only and to.get(label) is None)
                result = HostResult(job.target, job.host, True,
                                    f"restored to generation {back.generation}",
                                    bool(back.restored or back.deleted), puts=back.restored,
                                    deletes=back.deleted, before=back.generation)
                if postcmds and result.changed:
                    result = run_postcmds(dest, job, result, postcmds, out)
                return result
            finally:
                dest.close()
        except Exception as exc:  # one host's failure never stops the others
            return failed(job, exc)

    return one


def failed(job: Job, exc: Exception) -> HostResult:
    """The failed ``HostResult`` of a job that raised ``exc`` (its own words for
    facsimile's errors, the exception's type too for any other)."""
    reason = str(exc) if isinstance(exc, SyncError) else f"{type(exc).__name__}: {exc}"
    return HostResult(job.target, job.host, False, reason)


def _summary(verb: str, instance: str, results: list[HostResult], mode: Mode) -> int:
    """Print the failures and the summary line (the totals done, or that a dry
    run would do); the exit code."""
    failed = [r for r in results if not r.ok]
    for r in failed:
        mode.out(f"  {r.label}: FAILED: {r.message}")
    if mode.quiet:
        return 1 if failed else (2 if any(r.changed for r in results) else 0)
    puts = sum(len(r.puts) for r in results if r.ok)
    deletes = sum(len(r.deletes) for r in results if r.ok)
    drift = [r for r in results if r.drift]
    would = "would put" if mode.dry_run or mode.check else "put"
    mode.out(f"{verb} {instance}: {len(results) - len(failed)} host(s) ok, {len(failed)} failed"
             f"; {would} {puts}, {'would delete' if would != 'put' else 'deleted'} {deletes}"
             + (f", drift on {len(drift)}" if mode.check else ""))
    if failed:
        return 1
    if mode.dry_run or mode.check:
        return 2 if any(r.changed or r.drift for r in results) else 0
    return 0
