"""``facs``: inspect definitions and state, build, plan and sync.

Argument parsing and printing only: ``main`` and the parser live here, one
module per command group (``show``, ``state``, ``build``, ``sync``, and
``meta`` for schema and completion) holds the commands, and they call the
stages for anything to decide or compute. Errors are one line on stderr
(``--debug`` shows the traceback).
"""

from __future__ import annotations

import sys

from .. import noop

if noop.is_facs(sys.argv):
    noop.answer_facs(sys.argv[1:])  # a no-op the record answers ends the process here

import argparse
import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ..errors import FacsimileError
from .build import cmd_build, cmd_checkout, cmd_init, cmd_plan
from .meta import SHELLS, cmd_completion, cmd_schema
from .pull import add_commands as add_pull_commands
from .rollback import add_commands as add_rollback_commands
from .show import cmd_list, cmd_show
from .state import cmd_state_rotate, cmd_state_show

EPILOG = """\
The root is the nearest folder above the working directory with
define/facsimile.json (or config/facsimile.json); --root overrides.
Exit codes (every command): 0 done or nothing to do, 2 a dry run, plan or
check found changes, 1 any error (a usage error too)."""

#: the exit codes a command's --help lists
EXITS = "exit codes: 0 done, 1 error (a usage error too)"
EXITS_LOOK = ("exit codes: 0 done or nothing to do, 2 changes found (a dry run, plan or "
              "check), 1 error (a usage error too)")


class Parser(argparse.ArgumentParser):
    """argparse with facsimile's exit code for a usage error: 1, after the
    usage of the (sub)command it is about."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``facs`` command."""
    parser = make_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # the usage of the command they were given to, not the top level's
        getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except FacsimileError as exc:
        if args.debug:
            raise
        print(f"facs: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("facs: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`facs plan --diff | head -1`): not an error, stop quietly.
        # stdout now points at devnull so the interpreter's final flush cannot fail
        # again; exit 141 (128 + SIGPIPE), what a shell shows for a command that a
        # broken pipe ended, so `set -o pipefail` still sees the output was cut short.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def cmd_sync(args: argparse.Namespace) -> int:
    """``facs sync``, its module imported only when it runs (the sync stack and
    its ssh and S3 backends cost every other command 40 ms)."""
    from .sync import cmd_sync as run

    return run(args)


def _usage(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """A command function that prints ``parser``'s help and fails (a group
    given no action)."""
    def func(args: argparse.Namespace) -> int:
        parser.print_help()
        return 1

    return func


def _common() -> argparse.ArgumentParser:
    """--root and --debug, accepted after the command too (facs sync dev --root X)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", metavar="DIR", default=argparse.SUPPRESS,
                        help="the facsimile root (default: found by walking up)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks of errors")
    return common


def make_parser() -> argparse.ArgumentParser:
    """The ``facs`` argument parser, every command with its options."""
    from .. import __version__

    p = Parser(
        prog="facs",
        description="Build exact copies of an environment's configuration for every "
        "instance, and push them to the hosts.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--root", metavar="DIR", help="the facsimile root (default: found by "
                   "walking up from the working directory)")
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    p.add_argument("--version", action="version", version=f"facs {__version__}")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")
    common = _common()

    def cmd(name: str, func: Callable[[argparse.Namespace], int] | None, help_: str,
            exits: str = EXITS) -> Any:
        sp = sub.add_parser(name, help=help_, description=help_, parents=[common],
                            epilog=exits)
        sp.set_defaults(func=func or _usage(sp), parser=sp)
        return sp

    sp = cmd("list", cmd_list, "list instances and subinstances with their targets, hosts "
             "and regions")
    sp.add_argument("--json", action="store_true", help="print them as JSON "
                    '({"format": 1, ...}, see docs/pages/console.md)')

    sp = cmd("show", cmd_show, "print an instance's resolved definition (secrets masked)")
    sp.add_argument("instance", help="instance or subinstance name, e.g. prod.ch1")
    sp.add_argument("--json", action="store_true", help="print only the JSON document")
    sp.add_argument("--explain", metavar="KEY", help="print one value (a.b.c) and the "
                    "definition file(s) that set it")
    sp.add_argument("--reveal", action="store_true", help="show secret values unmasked")

    _add_state(cmd("state", None, "show or rotate generated state"), common)

    sp = cmd("build", cmd_build, "build instances into BUILD/ (all when none is named); "
             "the same as running doit")
    sp.add_argument("instances", nargs="*", metavar="INSTANCE")
    sp.add_argument("-n", "--process", type=int, default=0, metavar="N",
                    help="run N tasks in parallel (doit -n N -P process)")
    sp.add_argument("-q", "--quiet", action="store_const", const=0, dest="verbosity",
                    help="print only errors and the summary (doit -v 0)")
    sp.add_argument("-v", "--verbosity", type=int, nargs="?", const=2, default=None,
                    choices=(0, 1, 2), metavar="N", help="-v: every output made, with "
                    "the reason (doit -v 2); -v N: doit verbosity N (0 quiet, 1 default)")
    sp.add_argument("--json", action="store_true", help="print only a JSON summary on stdout "
                    "(outputs made, failed with the reason; doit's lines go to stderr)")

    sp = cmd("plan", cmd_plan, "list stale outputs with the reason, changing nothing",
             EXITS_LOOK)
    sp.add_argument("instances", nargs="*", metavar="INSTANCE")
    sp.add_argument("--diff", action="store_true", help="show a unified diff of each stale "
                    "output (state values masked)")
    sp.add_argument("--json", action="store_true", help="print the plan as JSON")

    sp = cmd("checkout", cmd_checkout, "clone the source checkouts (modules with a repo "
             "and a version) into SRC/; a build asks no remote")
    sp.add_argument("instances", nargs="*", metavar="INSTANCE",
                    help="only the checkouts these instances use (default: all)")
    sp.add_argument("--verify", action="store_true", help="also ask each remote whether "
                    "the tag still points at the checkout's commit (error: the tag moved "
                    "or is gone); facs sync does this first")

    _add_sync(cmd("sync", cmd_sync, "push an instance's build to every host of its targets "
                  "(several instances: one total)",
                  EXITS_LOOK))

    add_pull_commands(cmd)  # publish, pull
    add_rollback_commands(cmd)  # rollback, history

    sp = cmd("init", cmd_init, "create a new facsimile root with a small example")
    sp.add_argument("dir", type=Path)

    cmd("schema", cmd_schema, "print a JSON Schema (draft 2020-12) of definition files, "
        "for editors")
    sp = cmd("completion", cmd_completion, "print the shell completion script of facs "
             "(needs facsimile[completion])")
    sp.add_argument("shell", choices=SHELLS)
    return p


def _add_state(sp: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """The actions of ``facs state``."""
    from .state import cmd_state_keygen, cmd_state_recipients, cmd_state_unlock

    ssub = sp.add_subparsers(title="state commands", metavar="ACTION")
    real_add = ssub.add_parser

    def add_parser(name: str, **kw: Any) -> argparse.ArgumentParser:
        sub = real_add(name, epilog=EXITS, **kw)
        sub.set_defaults(parser=sub)
        return sub

    ssub.add_parser = add_parser  # type: ignore[method-assign]
    s1 = ssub.add_parser("show", help="generated values of an instance family (masked)",
                         parents=[common],
                         description="Generated values of an instance's family (made now "
                         "if missing). Secrets are masked unless --reveal.")
    s1.add_argument("instance")
    s1.add_argument("--reveal", action="store_true", help="show secret values unmasked")
    s1.add_argument("--json", action="store_true", help="print them as JSON "
                    '({"format": 1, "location": ..., "values": [...]}, see docs/pages/console.md)')
    s1.set_defaults(func=cmd_state_show)
    s2 = ssub.add_parser("rotate", help="give a generated value a new one", parents=[common],
                         description="Give NAME a new value: a generate entry, or a module "
                         "name (its password). The next build rewrites exactly its users.")
    s2.add_argument("instance")
    s2.add_argument("name", help="a generate entry or a module name")
    s2.set_defaults(func=cmd_state_rotate)
    s3 = ssub.add_parser("recipients", help="list, add or remove the keys state is sealed to",
                         parents=[common],
                         description="Without an action: the recipients of "
                         "define/facsimile.json and whom each family file is sealed to. "
                         "add/remove KEY: change the list and seal every family and the "
                         "digest key again (values unchanged: nothing is rebuilt).")
    s3.set_defaults(func=cmd_state_recipients, action=None)
    rsub = s3.add_subparsers(title="recipients actions", metavar="ACTION", dest="action")
    for action, text in (("add", "add an age (age1...) or ssh public key"),
                         ("remove", "remove a key (it opens none of the new files)")):
        r = rsub.add_parser(action, help=text, parents=[common])
        r.add_argument("key", help="the public key (quote an ssh key)")
        r.set_defaults(func=cmd_state_recipients)
    s4 = ssub.add_parser("keygen", help="write a new age identity and print its public key",
                         parents=[common],
                         description="Write a new age identity (0600, never over one) to "
                         "PATH, else $FACSIMILE_IDENTITY, else "
                         "~/.config/facsimile/identity.txt.")
    s4.add_argument("path", nargs="?", type=Path, default=None)
    s4.set_defaults(func=cmd_state_keygen)
    s5 = ssub.add_parser("unlock", help="remove a stale remote state lock", parents=[common],
                         description="Remove the lock ID of remote state (a run that is "
                         "gone left it; the lock error names the ID).")
    s5.add_argument("id")
    s5.set_defaults(func=cmd_state_unlock)


def _add_sync(sp: argparse.ArgumentParser) -> None:
    """The options of ``facs sync``."""
    sp.add_argument("instances", nargs="*", metavar="INSTANCE",
                    help="the instances to sync (one total at the end)")
    sp.add_argument("--all", action="store_true", help="every instance with hosts")
    sp.add_argument("--dry-run", action="store_true", help="print every put and delete this "
                    "sync would make (exit 2 if any); change nothing")
    sp.add_argument("--check", action="store_true", help="report drift at the destinations "
                    "(exit 2) without fixing it")
    sp.add_argument("--target", metavar="T", help="only this target")
    sp.add_argument("--host", metavar="H", help="only this host")
    sp.add_argument("--checksum", action="store_true", help="compare every file's content "
                    "at the host, not only its size and mtime")
    sp.add_argument("--repair", action="store_true", help="the same as --checksum")
    sp.add_argument("--always", action="store_true", help="run deploy.postcmd even when "
                    "nothing changed")
    sp.add_argument("--no-build", action="store_true", help="push BUILD/ as it is, "
                    "without building first")
    sp.add_argument("--adopt-state", action="store_true", help="push even to hosts last "
                    "synced from another state lineage (state made again, another clone) "
                    "or a newer serial (rotated since), which are refused otherwise; "
                    "their manifests then record this state")
    sp.add_argument("--diff", action="store_true", help="with --dry-run: a unified diff per "
                    "host of each put (generated values masked, binary files named)")
    sp.add_argument("--out", metavar="FILE", help="with --dry-run: save the plan (paths, "
                    "digests, modes; no content) for --plan")
    sp.add_argument("--plan", metavar="FILE", help="apply exactly this saved plan; refuse a "
                    "host where BUILD/ or the host changed since")
    sp.add_argument("--yes", action="store_true", help="answer yes to deploy.confirm "
                    "(without a terminal a sync that asks is refused otherwise)")
    sp.add_argument("--json", action="store_true", help="print a JSON document per host "
                    '(puts, deletes, errors; {"format": 1, ...}, see docs/pages/console.md)')
    sp.add_argument("--wave", type=int, metavar="N", help="only wave N of deploy.rollout "
                    "(1 is the first), with its health check and rollback")
    sp.add_argument("--no-rollout", action="store_true", help="every host at once, without "
                    "deploy.rollout's waves and health check")
    _add_fleet(sp)


def _slice_arg(text: str) -> object:
    """``--slice I/N`` parsed; a bad one is a usage error naming the form."""
    from ..sync.slices import parse_slice

    try:
        return parse_slice(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_fleet(sp: argparse.ArgumentParser) -> None:
    """The options of ``facs sync`` for a fleet: slices and the engine."""
    sp.add_argument("--slice", metavar="I/N", type=_slice_arg, default=None,
                    help="only the I-th of N disjoint parts of the hosts (by a hash of "
                    "the host name), e.g. one per CI runner: 1/5 ... 5/5")
    sp.add_argument("--engine", choices=["threads", "dask"], default="threads",
                    help="who syncs the hosts: threads of this process (default) or "
                    "the workers of a dask cluster (facsimile[dask], --scheduler)")
    sp.add_argument("--scheduler", metavar="ADDRESS", help="the dask scheduler, "
                    "e.g. tcp://10.0.0.5:8786 (with --engine dask)")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
