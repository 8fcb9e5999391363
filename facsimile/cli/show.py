"""``facs list`` and ``facs show``: print the instances with their targets, and
one instance's resolved definition (what is shown, and where a value comes
from, is decided in :mod:`facsimile.lookup`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import DefinitionError
from ..lookup import explain, shown_document
from ..project import Project
from ..suggest import did_you_mean_path
from .common import load_project, out

#: the version of ``facs list --json``'s shape (docs/pages/console.md, "Machine-readable output")
LIST_FORMAT = 1


def list_document(project: Project) -> dict[str, Any]:
    """``facs list --json``: the project, and each instance with its regions and
    targets (hosts, files, regions), sorted by name."""
    instances = []
    for name, inst in sorted(project.instances.items()):
        targets = {t: {"hosts": list(spec.get("hosts", [])),
                       "files": list(spec.get("files", [])),
                       "regions": list(spec.get("regions") or [])}
                   for t, spec in inst.targets.items()}
        instances.append({"name": name, "family": inst.family,
                          "parent": name.rpartition(".")[0] or None,
                          "regions": list(inst.regions), "files": list(inst.files),
                          "targets": targets})
    return {"format": LIST_FORMAT, "project": project.name,
            "project_file": project.root.rel(project.root.project_file),
            "instances": instances}


def cmd_list(args: argparse.Namespace) -> int:
    """Print every instance and subinstance with its regions, targets and hosts."""
    project = load_project(args)
    if getattr(args, "json", False):
        out(json.dumps(list_document(project), indent=2, sort_keys=True))
        return 0
    out(f"project {project.name} ({project.root.rel(project.root.project_file)})")
    if not project.instances:
        out("  no instances: add define/<instance>.json")
    for name, inst in sorted(project.instances.items()):
        indent = "  " * (1 + name.count("."))
        regions = f"  regions: {', '.join(inst.regions)}" if inst.regions else ""
        out(f"{indent}{name}{regions}")
        for tname, spec in inst.targets.items():
            hosts = ", ".join(spec.get("hosts", [])) or "no hosts"
            tregions = spec.get("regions") or []
            extra = f"  regions: {', '.join(tregions)}" if tregions else ""
            out(f"{indent}  target {tname}: {hosts}{extra}")
    return 0


def _explain(project: Project, inst: Any, doc: dict[str, Any], key: str) -> list[str]:
    """``--explain KEY``'s lines; a key that is not set suggests the closest one set."""
    try:
        return explain(project, inst, doc, key)
    except DefinitionError as exc:
        if "did you mean" in exc.message or "is not set" not in exc.message:
            raise
        path = key if key.startswith(("instance.", "module.", "state.")) else f"instance.{key}"
        close = did_you_mean_path(doc, path)
        if close is None:
            raise
        if not key.startswith(("instance.", "module.", "state.")):
            close = close.removeprefix("instance.")
        raise DefinitionError(f"{exc.message}; did you mean {close}?") from None


def cmd_show(args: argparse.Namespace) -> int:
    """Print an instance's resolved document, or with ``--explain`` one value and
    its source."""
    project = load_project(args)
    inst = project.instance(args.instance)
    doc = shown_document(project, inst, args.reveal)
    if args.explain is not None:
        for line in _explain(project, inst, doc, args.explain):
            out(line)
        return 0
    if args.json:
        out(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    out(f"# {inst.name}: " + " -> ".join(inst.files))
    pending = project.state(inst, write=False).generated
    if pending:
        out("# not generated yet (a build makes them): " + ", ".join(w.path for w in pending))
    out(json.dumps(doc, indent=2, sort_keys=True))
    return 0
