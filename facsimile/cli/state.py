"""``facs state show`` and ``facs state rotate``: print an instance family's
generated values, and give one a new value."""

from __future__ import annotations

import argparse
import json

from .. import state as S
from ..lookup import state_rows, want_named
from .common import load_project, out

#: the version of ``facs state show --json``'s shape (docs/pages/console.md,
#: "Machine-readable output")
STATE_FORMAT = 1


def cmd_state_show(args: argparse.Namespace) -> int:
    """Print the family's generated values (made now if missing), secrets masked;
    where they are kept: a path below the root, or the remote state's URL."""
    project = load_project(args)
    inst = project.instance(args.instance)
    state = project.state(inst, write=True)
    where = project.store.backend.shown(inst.family)
    rows = state_rows(state, args.reveal)
    if args.json:
        out(json.dumps({"format": STATE_FORMAT, "instance": inst.name, "family": inst.family,
                        "location": where, "values": [
                            {"path": path, "kind": kind, "value": value}
                            for path, kind, value in rows]}, indent=2, sort_keys=True))
        return 0
    out(f"# {where} (family {inst.family})")
    for path, kind, shown in rows:
        out(f"{path}  {kind}  {shown}")
    return 0


def cmd_state_rotate(args: argparse.Namespace) -> int:
    """Give the generated value ``args.name`` stands for a new value."""
    project = load_project(args)
    inst = project.instance(args.instance)
    want, wants = want_named(project, inst, args.name)
    S.rotate(project.store, inst.family, wants, {want.path},
             shown_root=project.root.base, generators=project.generators())
    out(f"rotated {want.path} of family {inst.family}; the next build rewrites its users")
    return 0


def cmd_state_recipients(args: argparse.Namespace) -> int:
    """List the recipients, or add or remove one and seal every family to the new list."""
    from ..state import crypt, team

    project = load_project(args)
    config = dict(project.defs.project.data.get("state") or {})
    recipients = [str(r) for r in config.get("recipients") or []]
    action = getattr(args, "action", None)
    if action is None:
        out(f"# recipients in {project.root.rel(project.root.project_file)}"
            + ("" if recipients else ": none (state is plain)"))
        for r in recipients:
            out(r)
        for row in team.report(project.store):
            sealed = ("plain" if row.sealed_to is None
                      else "sealed to " + ", ".join(map(crypt.short, row.sealed_to)))
            out(f"{row.file}  {sealed}")
        return 0
    new = team.changed(recipients, add=args.key if action == "add" else None,
                       remove=args.key if action == "remove" else None)
    done = team.set_recipients(project.root.project_file, config, project.root.state,
                               project.root.base, new)
    verb = "added" if action == "add" else "removed"
    out(f"{verb} {crypt.short(' '.join(args.key.split()))}; sealed {len(done)} "
        f"{'family' if len(done) == 1 else 'families'} and the digest key to "
        f"{len(new)} recipient{'s' if len(new) != 1 else ''} (values unchanged)")
    if action == "remove":
        out("the removed key may still open older copies: rotate what it must not know")
    return 0


def cmd_state_keygen(args: argparse.Namespace) -> int:
    """Write a new age identity and print where and its public key."""
    from ..state import crypt

    path = args.path or crypt.identity_path()
    public = crypt.keygen(path)
    out(f"identity: {path}")
    out(f"public key: {public}")
    out("ask a recipient to run: facs state recipients add " + public)
    return 0


def cmd_state_unlock(args: argparse.Namespace) -> int:
    """Remove a remote state lock that a gone run left."""
    from ..state import team

    project = load_project(args)
    family = team.unlock(project.store, args.id)
    out(f"removed lock {args.id} of family {family}")
    return 0
