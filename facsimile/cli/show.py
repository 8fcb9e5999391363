"""``facs list`` and ``facs show``: print the instances with their targets, and
one instance's resolved definition (what is shown, and where a value comes
from, is decided in :mod:`facsimile.lookup`)."""

from __future__ import annotations

import argparse
import json

from ..lookup import explain, shown_document
from .common import load_project, out


def cmd_list(args: argparse.Namespace) -> int:
    """Print every instance and subinstance with its regions, targets and hosts."""
    project = load_project(args)
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


def cmd_show(args: argparse.Namespace) -> int:
    """Print an instance's resolved document, or with ``--explain`` one value and
    its source."""
    project = load_project(args)
    inst = project.instance(args.instance)
    doc = shown_document(project, inst, args.reveal)
    if args.explain is not None:
        for line in explain(project, inst, doc, args.explain):
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
