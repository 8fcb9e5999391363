"""The sync stage's entry point for a loaded project: ``run_sync`` checks the
``--target`` and ``--host`` filters and every host name against the instance
(``check_sync_args``), completes its deploy settings (``deploy_settings``),
reads the lineage and serial of the family's state (``state_stamp``), and
pushes ``BUILD/<instance>`` with ``sync_instance``. The ``facs sync``
command and the build's ``sync:<instance>`` task both call it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..build.digests import JsonCache
from ..build.validate import refuse_failed_checks
from ..define.names import host_problem
from ..errors import DefinitionError, SyncError
from .fleet import Fleet
from .generations import keep_setting, stamp_now
from .guard import StateStamp
from .host import HostResult
from .jobs import sync_instance
from .rollout import rollout_of

if TYPE_CHECKING:
    from ..define import Instance
    from ..project import Project


def _print(text: str = "") -> None:
    print(text, flush=True)


def run_sync(
    project: Project,
    instance: str,
    *,
    dry_run: bool = False,
    check: bool = False,
    repair: bool = False,
    target: str | None = None,
    host: str | None = None,
    always: bool = False,
    adopt_state: bool = False,
    out: Callable[[str], None] = _print,
    checksum: bool = False,
    expect: Mapping[str, Mapping[str, Any]] | None = None,
    quiet: bool = False,
    results: list[HostResult] | None = None,
    diff: bool = False,
    fleet: Fleet | None = None,
    wave: int | None = None,
    rollout: bool = True,
) -> int:
    """Push ``BUILD/<instance>`` to its hosts (see :func:`sync_instance`, which
    takes ``checksum``, ``expect``, ``quiet`` and ``results`` as they are); the
    exit code. ``diff``: a dry run prints a diff of each put, every generated
    value of the instance's state masked. A host whose manifest names another
    owner, another state lineage or a newer serial is refused (``adopt_state``:
    push this state anyway). ``fleet``: the slice of hosts and the engine to
    sync them with. ``deploy.rollout`` takes the hosts in waves (``wave``: only
    that one; ``rollout=False``: all at once, no health check); a change keeps
    ``deploy.keep`` generations at each host (see ``generations``)."""
    inst = project.instance(instance)
    check_sync_args(project, inst, target, host)
    if not (dry_run or check):
        refuse_failed_checks(project, inst.name)  # before anything moves
    stamp = state_stamp(project, inst, write=not (dry_run or check))
    deploy = deploy_settings(project, inst)
    part, engine = (fleet or Fleet()).resolve(inst, deploy)
    staged = rollout_of(deploy) if rollout else None
    if wave is not None and staged is None:
        raise SyncError(f"--wave {wave}: instance {inst.name} has no deploy.rollout"
                        + ("" if rollout else " (and --no-rollout was given)"))
    looking = dry_run or check
    return sync_instance(
        instance=inst.name,
        project=project.name,
        root=project.root.base,
        build_dir=project.root.build / inst.name,
        deploy=deploy,
        targets=inst.targets,
        dry_run=dry_run,
        check=check,
        repair=repair,
        target=target,
        host=host,
        always=always,
        stamp=stamp,
        adopt_state=adopt_state,
        out=out,
        host_of=host_outputs(project, inst),
        checksum=checksum,
        expect=expect,
        quiet=quiet,
        results=results,
        diff=masker(project, inst) if diff else None,
        part=part,
        scan_cache=JsonCache(project.root.cache / f"scan-{inst.name}.json",
                             lambda: project.store.digest_key(write=False)),
        engine=engine,
        keep=None if looking else stamp_now(project.root.base, keep_setting(deploy)),
        rollout=staged,
        wave=wave,
    )


def unplaced(project: Project, inst: Instance, rels: list[str]) -> list[str]:
    """The outputs ``rels`` of ``inst`` that no host of its targets receives (what
    ``facs plan`` and a sync warn about); none when it has no hosts at all."""
    from .placement import place, uncovered

    if not any(h for h, _ in inst.hosts):
        return []
    deploy = deploy_settings(project, inst)
    placed = place(instance=inst.name, project=project.name, root=project.root.base,
                   deploy=deploy, targets=inst.targets, files={r: r for r in rels},
                   host_of=host_outputs(project, inst))
    return uncovered(placed, rels, deploy.get("exclude", []))


def masker(project: Project, inst: Instance) -> Callable[[str], str]:
    """A function that masks every value of the instance's state in a text
    (current and previous values, as ``facs plan --diff`` does)."""
    from functools import partial

    from ..mask import mask_text, state_values

    return partial(mask_text, values=state_values(project.state(inst, write=False)))


def host_outputs(project: Project, inst: Instance) -> dict[str, str]:
    """``{rel: host}`` of the outputs a ``{host}`` fan-out template made (the
    build's ``Output.this`` is ``hosts.<host>``, the host's name a recorded path
    segment: ``app1\\.prod`` for ``app1.prod``): each goes to its host only."""
    from ..build import Build
    from ..render.tracking import segment

    names = {segment(h): h for h, _ in inst.hosts}
    outputs = Build(project).outputs(inst)
    return {rel: names.get(seg, seg) for rel, o in outputs.items()
            if o.this and o.this.startswith("hosts.")
            for seg in [o.this.removeprefix("hosts.")]}


def state_stamp(project: Project, inst: Instance, *, write: bool) -> StateStamp:
    """The lineage and serial of the state the instance's build was made from.

    ``write``: a state file written before lineages existed is given its lineage
    now (``ensure_lineage``, under the state's lock), so that the destination
    records one; a dry run or check only reads it (``Project.state``), and a
    state without a lineage yet counts as none.
    """
    from ..state import ensure_lineage

    if write:
        lineage, serial = ensure_lineage(project.store, inst.family,
                                         shown_root=project.root.base)
        return StateStamp(inst.name, inst.family, lineage or None, serial)
    state = project.state(inst, write=False)
    return StateStamp(inst.name, inst.family, state.lineage, state.serial)


def check_sync_args(project: Project, inst: Instance, target: str | None,
                    host: str | None) -> None:
    """``--target`` and ``--host`` name ones the instance has; every host name is
    one (a '/', '..', '?' or '#' in it would mix up destinations)."""
    if target is not None and target not in inst.targets:
        raise DefinitionError(f"instance {inst.name} has no target {target!r} "
                              f"(targets: {', '.join(inst.targets) or 'none'})")
    for tname, spec in inst.targets.items():
        for i, h in enumerate((spec or {}).get("hosts", [])):
            problem = host_problem(h)
            if problem:
                raise _host_error(project, inst, tname, i, problem)
    if host is not None:
        known = list(dict.fromkeys(h for h, t in inst.hosts if target is None or t == target))
        if host not in known:
            where = f"target {target} of instance {inst.name}" if target else \
                f"instance {inst.name}"
            raise DefinitionError(f"{where} has no host {host!r} "
                                  f"(hosts: {', '.join(known) or 'none'})")


def _host_error(project: Project, inst: Instance, tname: str, i: int,
                problem: str) -> DefinitionError:
    """The error for the ``i``-th host of target ``tname``, naming the file that set it."""
    from ..define import provenance

    prov = provenance(project.defs, inst)
    files = (prov.get(f"targets.{tname}.hosts") or prov.get(f"targets.{tname}")
             or inst.files[-1:])
    return DefinitionError(f"instance {inst.name}, target {tname}: {problem}",
                           file=files[-1] if files else None,
                           pointer=f"/targets/{tname}/hosts/{i}")


def deploy_settings(project: Project, inst: Instance) -> dict[str, Any]:
    """``deploy`` with the default owned folders: the project's and each subproject's."""
    deploy = dict(inst.data.get("deploy", {}))
    if "delete" not in deploy:
        deploy["delete"] = ["{project}", *project.subprojects()]
    return deploy
