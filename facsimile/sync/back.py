"""``facs rollback`` and ``facs history`` for a loaded project: the destinations
of an instance (as a sync places them, without reading ``BUILD/``), each
restored to a kept generation, or its generations listed. See ``generations``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from .destinations import open_destination
from .engines import ThreadEngine
from .generations import describe
from .host import Job
from .jobs import DEFAULT_JOBS, failed, restorer_for
from .manifest import read_manifest_doc
from .placement import jobs_of, place
from .run import check_sync_args, deploy_settings
from .urls import shown_url

if TYPE_CHECKING:
    from ..project import Project


def instance_jobs(project: Project, instance: str, target: str | None,
                  hosts: Iterable[str] = ()) -> tuple[list[Job], dict[str, Any]]:
    """The destinations of ``instance`` (only ``target``'s, only ``hosts`` when
    given) and its deploy settings."""
    inst = project.instance(instance)
    hosts = list(hosts)
    for h in hosts or [None]:
        check_sync_args(project, inst, target, h)
    deploy = deploy_settings(project, inst)
    placed = place(instance=inst.name, project=project.name, root=project.root.base,
                   deploy=deploy, targets=inst.targets, files={})
    jobs = [j for j in jobs_of(placed, target, None)
            if not hosts or any(h in hosts for h in _hosts_of(placed, j))]
    return jobs, deploy


def _hosts_of(placed: list[Any], job: Job) -> list[str]:
    """Every host name that fills to the job's destination."""
    return next((p.hosts for p in placed if p.url == job.url), [job.host])


def run_rollback(project: Project, instance: str, *, to: int | None = None,
                 hosts: Iterable[str] = (), target: str | None = None,
                 out: Callable[[str], None] = print) -> int:
    """Restore every destination of ``instance`` (or of ``hosts``) to generation
    ``to`` (None: the one before each host's current); 0 when every host is
    there, 1 when one failed (each named with why; run it again to retry)."""
    jobs, deploy = instance_jobs(project, instance, target, hosts)
    if not jobs:
        out(f"rollback {instance}: no hosts")
        return 0
    factory = partial(restorer_for, deploy, {f"{j.target}/{j.host}": to for j in jobs}, False)
    engine = ThreadEngine(int(deploy.get("jobs") or DEFAULT_JOBS))
    order = {(j.target, j.host): i for i, j in enumerate(jobs)}
    done = sorted(engine.run(jobs, factory, out), key=lambda r: order[r.target, r.host])
    failed = [r for r in done if not r.ok]
    for r in done:
        if r.ok:
            out(f"  {r.label}: {r.message} ({len(r.puts)} restored, "
                f"{len(r.deletes)} deleted)")
        else:
            out(f"  {r.label}: FAILED: {r.message}")
    out(f"rollback {instance}: {len(done) - len(failed)} host(s) ok, {len(failed)} failed"
        + ("; run it again to retry the failed ones" if failed else ""))
    return 1 if failed else 0


def host_history(project: Project, instance: str, *, hosts: Iterable[str] = (),
                 target: str | None = None) -> list[dict[str, Any]]:
    """Each destination of ``instance`` with its kept generations, newest first
    (``error`` when it could not be read)."""
    jobs, deploy = instance_jobs(project, instance, target, hosts)

    def one(job: Job) -> dict[str, Any]:
        doc: dict[str, Any] = {"target": job.target, "host": job.host,
                               "url": shown_url(job.url)}
        try:
            dest = open_destination(job.url, deploy, f"{job.target}/{job.host}")
            try:
                meta = read_manifest_doc(dest).meta
            finally:
                dest.close()
        except Exception as exc:  # one host's failure never stops the others
            doc["error"] = failed(job, exc).message
            return doc
        doc["generation"] = int(meta.get("generation") or 0)
        doc["generations"] = describe(meta)
        return doc

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), DEFAULT_JOBS))) as pool:
        return list(pool.map(one, jobs))
