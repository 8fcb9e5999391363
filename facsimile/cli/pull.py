"""``facs publish`` and ``facs pull``: signed bundles written to a store, and
fetched by each host (see :mod:`facsimile.pull`).

``facs pull`` imports only the pull stage and facsimile's core: a host has no
definitions, templates or doit to run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

#: the version of ``facs publish --json`` and ``facs pull --json``'s shape
JSON_FORMAT = 1
EXITS_PUBLISH = ("exit codes: 0 published or nothing to do, 2 a dry run found changes, "
                 "1 error (refused, unreachable, a usage error)")
EXITS_PULL = ("exit codes: 0 done or nothing to do, 2 a dry run found changes, 1 error "
              "(refused, unreachable, a usage error)")


def add_commands(cmd: Callable[..., Any]) -> None:
    """Register ``publish`` and ``pull`` through ``cmd``, the parser's command maker."""
    sp = cmd("publish", cmd_publish, "build an instance and write it to a store as signed "
             "bundles (one manifest per target and per host) that hosts pull", EXITS_PUBLISH)
    sp.add_argument("instance", nargs="?", help="the instance to publish")
    sp.add_argument("--to", metavar="URL", help="where: file:///srv/bundles (or a path), "
                    "s3://bucket/prefix, sftp://user@host/path")
    sp.add_argument("--sign-key", metavar="FILE", help="the Ed25519 private key to sign "
                    "with (default: $FACSIMILE_SIGNING_KEY, a file or the key's text)")
    sp.add_argument("--keep", type=int, default=3, metavar="N", help="serials kept at the "
                    "store (default 3); blobs none of them uses are deleted")
    sp.add_argument("--no-build", action="store_true", help="publish BUILD/ as it is")
    sp.add_argument("--dry-run", action="store_true", help="print what would change, "
                    "manifest by manifest and file by file (exit 2 if anything), from "
                    "BUILD/ as it is (no build); write nothing to the store")
    sp.add_argument("--endpoint-url", metavar="URL", help="the S3 endpoint (an "
                    "S3-compatible server); default: deploy.s3 or $AWS_ENDPOINT_URL")
    sp.add_argument("--ssh-key", metavar="FILE", help="the key to log in to an sftp store "
                    "(default: deploy.ssh.key)")
    sp.add_argument("--known-hosts", metavar="FILE", help="known_hosts for an sftp store "
                    "(default: deploy.ssh.known_hosts, else ~/.ssh/known_hosts)")
    sp.add_argument("--json", action="store_true", help="print a JSON document (serial, "
                    'blobs sent, collected; {"format": 1, ...}); the summary goes to stderr')
    sp.add_argument("--keygen", metavar="FILE", help="write a new signing key to FILE "
                    "(0600) and FILE.pub, print the public key to give hosts, and stop")

    sp = cmd("pull", cmd_pull, "on a host: fetch, verify and apply its own files from a "
             "store that facs publish wrote", EXITS_PULL)
    sp.add_argument("--from", dest="url", metavar="URL", required=True,
                    help="the store (as given to facs publish --to)")
    sp.add_argument("--instance", required=True)
    sp.add_argument("--target", required=True)
    sp.add_argument("--host", metavar="NAME", help="this host's name in the target "
                    "(its own files too); without: the files every host of it gets")
    sp.add_argument("--key", action="append", default=[], metavar="PUB",
                    help="the publisher's public key: a .pub file or the ssh-ed25519 "
                    "line (repeat to accept several, e.g. while rotating)")
    sp.add_argument("--dest", default="/", metavar="DIR", help="where the files go "
                    "(default /)")
    sp.add_argument("--state-dir", metavar="DIR", help="where the pull keeps its record "
                    "(default DEST/.facsimile/pull; /var/lib/facsimile/pull for /)")
    sp.add_argument("--identity", action="append", default=[], metavar="FILE",
                    help="opens the secrets: the host's ssh key or an age identity "
                    "(default $FACSIMILE_IDENTITY, else /etc/ssh/ssh_host_ed25519_key)")
    sp.add_argument("--dry-run", action="store_true", help="print what would change "
                    "(exit 2 if anything); change nothing")
    sp.add_argument("--adopt-state", action="store_true", help="accept a manifest of "
                    "another state lineage (never an older serial)")
    sp.add_argument("--every", type=float, metavar="SECONDS", help="pull again every "
                    "SECONDS, for ever (a failed pull is reported and retried)")
    sp.add_argument("--splay", type=float, default=0.0, metavar="SECONDS",
                    help="with --every: wait a random 0 to SECONDS more before each "
                    "later pull, so that hosts started together do not reach the store "
                    "together (as chef-client's --splay, systemd's RandomizedDelaySec)")
    sp.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    sp.add_argument("--json", action="store_true", help="print a JSON document per pull "
                    '(one a line with --every: {"format": 1, "ok", "serial", "puts", ...}); '
                    "the lines for people go to stderr")
    sp.add_argument("--endpoint-url", metavar="URL", help="the S3 endpoint (default "
                    "$AWS_ENDPOINT_URL)")
    sp.add_argument("--ssh-key", metavar="FILE", help="the key to log in to an sftp store")
    sp.add_argument("--known-hosts", metavar="FILE", help="known_hosts for an sftp store")


def cmd_publish(args: argparse.Namespace) -> int:
    """Write the instance's build to the store (after building it, unless told not to)."""
    from ..errors import SyncError

    if args.keygen:
        from ..pull.sign import keygen

        line = keygen(args.keygen)
        print(f"signing key written to {args.keygen}; give hosts its public key "
              f"(facs pull --key, also in {args.keygen}.pub):", file=sys.stderr)
        print(line, flush=True)
        return 0
    if not args.instance or not args.to:
        raise SyncError("facs publish INSTANCE --to URL (or --keygen FILE)")
    key = args.sign_key or os.environ.get("FACSIMILE_SIGNING_KEY")
    if not key:
        raise SyncError("give --sign-key FILE or set FACSIMILE_SIGNING_KEY (make a key "
                        "with facs publish --keygen FILE)")
    from ..pull.publish import publish
    from .build import run_doit
    from .common import load_project, out

    project = load_project(args)
    name = project.instance(args.instance).name
    from ..build.checkouts import check_out

    check_out(project, [name], verify=True)  # a moved tag: refused, as facs sync does
    emit = _stderr if args.json else out
    if args.dry_run:  # as facs sync --dry-run: BUILD/ as it is
        from .sync import note_stale

        note_stale(project, name, emit)
    elif not args.no_build:
        code = run_doit(project, ["run", f"build:{name}"], sys.stderr if args.json else None)
        if code != 0:
            return code
    report: dict[str, Any] = {}
    code = publish(project, name, args.to, sign_key=key, keep=args.keep,
                   options={"endpoint_url": args.endpoint_url, "ssh_key": args.ssh_key,
                            "known_hosts": args.known_hosts},
                   out=emit, report=report, dry_run=args.dry_run)
    if args.json:
        print(json.dumps({"format": JSON_FORMAT, **report}, sort_keys=True), flush=True)
    return code


def cmd_pull(args: argparse.Namespace) -> int:
    """Pull once, or every ``--every`` seconds."""
    from ..errors import FacsimileError
    from ..pull.pull import Request, pull
    from ..pull.store import Store, store_options

    def say(text: str = "") -> None:
        print(text, flush=True)

    def once(store: Store | None) -> int:
        """One pull; with ``--json`` its document on stdout, an error in it too."""
        if not args.json:
            return pull(req, args.key, say, store=store)
        report: dict[str, Any] = {}
        try:
            code = pull(req, args.key, _stderr, store=store, report=report)
        except FacsimileError as exc:
            _document(req, report, 1, str(exc))
            raise
        _document(req, report, code, None)
        return code

    req = Request(args.url, args.instance, args.target, args.host, args.dest,
                  args.state_dir, tuple(args.identity), args.dry_run, args.adopt_state,
                  store_options(args.endpoint_url, args.ssh_key, args.known_hosts))
    if args.every is not None and args.every < 0:
        raise FacsimileError(f"--every {args.every:g}: give the seconds between pulls")
    if args.splay < 0 or (args.splay and not args.every):
        raise FacsimileError("--splay SECONDS: 0 or more, with --every")
    if not args.every:
        return once(None)
    done, store, rng = 0, None, random.SystemRandom()
    while True:
        try:  # one connection to the store for every round while it works
            store = store or Store(req.url, req.options, "pull")
            code = once(store)
        except Exception as exc:  # the loop outlives a store that is away for a while
            why = str(exc) if isinstance(exc, FacsimileError) else \
                f"{type(exc).__name__}: {exc}"
            print(f"facs: error: {why}", file=sys.stderr, flush=True)
            code = 1
            if store is not None:
                with contextlib.suppress(Exception):
                    store.close()
            store = None
        done += 1
        if args.count and done >= args.count:
            return code
        time.sleep(wait(args.every, args.splay, rng))


def wait(every: float, splay: float, rng: random.Random) -> float:
    """Seconds before the next pull of ``--every``: ``every``, plus a random share of
    ``splay``, drawn anew each time (hosts that drift apart stay apart)."""
    return every + rng.uniform(0.0, splay)


def _stderr(text: str = "") -> None:
    """With ``--json``, the lines meant for people go to stderr."""
    print(text, file=sys.stderr, flush=True)


def _document(req: Any, report: dict[str, Any], code: int, error: str | None) -> None:
    """Print one pull's JSON document."""
    doc = {"format": JSON_FORMAT, "ok": error is None, "exit": code,
           "instance": req.instance, "target": req.target, "host": req.host,
           "dry_run": req.dry_run, "errors": [error] if error else [], **report}
    print(json.dumps(doc, sort_keys=True), flush=True)
