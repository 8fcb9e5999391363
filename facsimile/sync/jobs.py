"""Syncing an instance: ``jobs_for`` decides which destination gets which files
(each target's ``files`` patterns less ``deploy.exclude``, one job per filled
``deploy.url``), and ``sync_instance`` scans the build, keeps the jobs of the
slice asked for (``slices``), runs one ``sync_host`` per job on an engine
(``engines``: a thread pool of ``deploy.jobs``, default 8, or a dask cluster),
and prints the summary and returns the exit code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..define.names import host_problem
from ..errors import SyncError
from ..globs import check_pattern, glob_regex, matches
from .destinations import open_destination
from .engines import Engine, ThreadEngine
from .guard import StateStamp
from .host import HostResult, Job, Mode, sync_host
from .scan import LocalFile, scan_build
from .slices import Slice, slice_jobs
from .urls import DEFAULT_URL, fill

DEFAULT_JOBS = 8


def _chosen(tname: str, spec: Mapping[str, Any], files: Mapping[str, LocalFile],
            exclude: list[re.Pattern[str]]) -> dict[str, LocalFile]:
    """The files of the build that target ``tname`` gets."""
    patterns = list((spec or {}).get("files") or ["**"])
    for p in patterns:
        check_pattern(p, f"targets.{tname}.files pattern")
    regexes = [glob_regex(p) for p in patterns]
    return {rel: f for rel, f in files.items()
            if matches(rel, regexes) and not matches(rel, exclude)}


def jobs_for(
    *, instance: str, project: str, root: Path, deploy: Mapping[str, Any],
    targets: Mapping[str, Mapping[str, Any]], files: Mapping[str, LocalFile],
    target: str | None, host: str | None,
) -> list[Job]:
    """One job per destination. Targets whose hosts fill ``url`` to the same
    destination (two targets on one host) share one job with the union of their
    files, so that neither deletes what the other put there, even when
    ``--target`` names only one of them."""
    exclude = [glob_regex(p) for p in deploy.get("exclude", [])]
    by_url: dict[str, tuple[list[str], list[str], dict[str, LocalFile]]] = {}
    for tname, spec in sorted(targets.items()):
        chosen = _chosen(tname, spec, files, exclude)
        for h in (spec or {}).get("hosts", []):
            problem = host_problem(h)
            if problem:
                raise SyncError(f"instance {instance}, target {tname}: {problem}")
            url = fill(str(deploy.get("url") or DEFAULT_URL), {
                "host": h, "instance": instance, "target": tname,
                "project": project, "root": quote(str(root), safe="/"),
            })
            names, hosts, union = by_url.setdefault(url, ([], [], {}))
            if tname not in names:
                names.append(tname)
            if h not in hosts:
                hosts.append(h)
            union.update(chosen)
    jobs = []
    for url, (names, hosts, union) in by_url.items():
        if (target is None or target in names) and (host is None or host in hosts):
            jobs.append(Job("+".join(names), hosts[0] if host is None else host, url,
                            dict(sorted(union.items()))))
    return jobs


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
    part: Slice | None = None,
    engine: Engine | None = None,
) -> int:
    """Push ``build_dir`` to every host. Exit code: 0 ok, 1 a host failed (or was
    refused: see ``guard``; ``stamp`` is the build's state, None skips those
    checks), 2 drift (check). ``part``: only that slice of the hosts (see
    ``slices``); ``engine``: who runs the hosts' jobs (see ``engines``; None: a
    thread pool of ``deploy.jobs``)."""
    if not build_dir.is_dir():
        raise SyncError(f"nothing to sync: {build_dir} does not exist (build it first)")
    files = scan_build(build_dir)
    jobs = jobs_for(instance=instance, project=project, root=root, deploy=deploy,
                    targets=targets, files=files, target=target, host=host)
    if part is not None:
        total, jobs = len(jobs), slice_jobs(jobs, part)
        out(f"slice {part}: {len(jobs)} of {total} host(s)")
    if not jobs:
        out(f"sync {instance}: no hosts to sync (no targets with hosts"
            + (" matching the filter)" if target or host or part else ")"))
        return 0
    mode = Mode(dry_run=dry_run, check=check, repair=repair, always=always, out=out,
                stamp=stamp, adopt_state=adopt_state)
    verb = "check" if check else ("dry run" if dry_run else "sync")
    out(f"{verb} {instance}: {len(files)} files to {len(jobs)} host(s)")
    make_one = partial(_runner_for, deploy,
                       {"project": project, "instance": instance, "root": str(root)}, mode)
    engine = engine or ThreadEngine(int(deploy.get("jobs") or DEFAULT_JOBS))
    order = {(j.target, j.host): i for i, j in enumerate(jobs)}
    results = sorted(engine.run(jobs, make_one, out), key=lambda r: order[r.target, r.host])
    return _summary(verb, instance, results, check, out)


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
            reason = str(exc) if isinstance(exc, SyncError) else f"{type(exc).__name__}: {exc}"
            return HostResult(job.target, job.host, False, reason)

    return one


def _summary(verb: str, instance: str, results: list[HostResult], check: bool,
             out: Callable[[str], None]) -> int:
    """Print the failures and the summary line; the exit code."""
    failed = [r for r in results if not r.ok]
    for r in failed:
        out(f"  {r.target}/{r.host}: FAILED: {r.message}")
    drift = [r for r in results if r.drift]
    out(f"{verb} {instance}: {len(results) - len(failed)} host(s) ok, {len(failed)} failed"
        + (f", drift on {len(drift)}" if check else ""))
    if failed:
        return 1
    return 2 if drift else 0
