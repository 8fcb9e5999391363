"""``facs rollback`` and ``facs history``: the generations each host keeps (see
:mod:`facsimile.sync.generations`), restored or listed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from .common import load_project, out

#: the version of ``facs history --json``'s shape
HISTORY_FORMAT = 1
EXITS_BACK = ("exit codes: 0 every host restored (or already there), 1 a host failed "
              "(named with why; run it again to retry) or a usage error")


def add_commands(cmd: Callable[..., Any]) -> None:
    """Register ``rollback`` and ``history`` with the parser's ``cmd`` helper."""
    sp = cmd("rollback", cmd_rollback, "restore an instance's hosts to a generation they "
             "kept (default: the one before their current), byte for byte", EXITS_BACK)
    sp.add_argument("instance")
    sp.add_argument("--to", type=int, metavar="GEN", help="the generation to go back to "
                    "(facs history lists them; default: each host's previous)")
    sp.add_argument("--host", action="append", default=[], metavar="H",
                    help="only this host (repeat for several)")
    sp.add_argument("--target", metavar="T", help="only this target")

    sp = cmd("history", cmd_history, "list each host's kept generations: when, by whom, "
             "the commit, the state serial, files put and deleted")
    sp.add_argument("instance")
    sp.add_argument("--host", action="append", default=[], metavar="H",
                    help="only this host (repeat for several)")
    sp.add_argument("--target", metavar="T", help="only this target")
    sp.add_argument("--json", action="store_true", help="print them as JSON "
                    '({"format": 1, "hosts": [...]})')


def cmd_rollback(args: argparse.Namespace) -> int:
    """Restore the hosts; 1 when one could not be."""
    from ..sync.back import run_rollback

    project = load_project(args)
    return run_rollback(project, args.instance, to=args.to, hosts=args.host,
                        target=args.target, out=out)


def cmd_history(args: argparse.Namespace) -> int:
    """Print the generations of each host (1 when a host could not be read)."""
    from ..sync.back import host_history
    from ..sync.generations import short_commit

    project = load_project(args)
    hosts = host_history(project, args.instance, hosts=args.host, target=args.target)
    code = 1 if any("error" in h for h in hosts) else 0
    if args.json:
        out(json.dumps({"format": HISTORY_FORMAT, "instance": args.instance, "exit": code,
                        "hosts": hosts}, indent=2, sort_keys=True))
        return code
    for h in hosts:
        label = f"{h['target']}/{h['host']}"
        if "error" in h:
            out(f"{label}: FAILED: {h['error']}")
            continue
        gens = h["generations"]
        out(f"{label}: generation {h['generation']}"
            + ("" if gens else " (no generations kept)"))
        for g in gens:
            out(f"  {'*' if g['current'] else ' '} {g['generation']:>3}  {g.get('when') or '-'}"
                f"  {g.get('by') or '-'}  commit {short_commit(g.get('commit'))}"
                f"  serial {g.get('serial', '-')}  put {g.get('put', 0)},"
                f" deleted {g.get('deleted', 0)}")
    return code
