"""``facs pull``, on the host: fetch its own files from a store, as signed.

One pull: read the manifest (one GET), check its signature against the keys
the host was given, refuse another lineage or an older serial than the host
has (a rollback), plan against the host's record (:mod:`.local`), fetch only
the blobs that differ, check each one's sha256, decrypt the secrets with the
host's identity (its ssh host key, or an age identity), stage every file,
rename them in, delete the files this pull wrote before and the manifest no
longer has, write the record, and run the manifest's ``postcmd`` and health
check when something changed (a failed check puts the host back: :mod:`.health`).
Any failure before the renames changes nothing.

This module needs only facsimile's core: no definitions, no templates, no
doit (``tests/test_pull.py`` runs it with those modules unimportable).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FacsimileError, SyncError
from . import bundle as B
from . import health as H
from . import local as L
from .sign import canonical, load_public, opened
from .store import Store

#: the identity tried when none is given: the host's own ssh key (as agenix does)
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"


@dataclass
class Plan:
    """What one pull does: files to fetch (with why), modes to fix, deletes."""

    fetch: dict[str, str] = field(default_factory=dict)  # rel -> new, changed
    chmod: list[str] = field(default_factory=list)
    adopt: list[str] = field(default_factory=list)  # already there with the right content
    deletes: list[str] = field(default_factory=list)
    unchanged_list: list[str] = field(default_factory=list)

    @property
    def unchanged(self) -> int:
        return len(self.unchanged_list)

    @property
    def changes(self) -> bool:
        return bool(self.fetch or self.chmod or self.deletes)


@dataclass(frozen=True)
class Request:
    """What a host asks for and where it puts it."""

    url: str
    instance: str
    target: str
    host: str | None = None
    dest: str = "/"
    state_dir: str | None = None
    identities: tuple[str, ...] = ()
    dry_run: bool = False
    adopt_state: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.instance}/{self.target}" + (f" ({self.host})" if self.host else "")


def state_dir_of(dest: str) -> str:
    """Where a pull into ``dest`` keeps its record by default: ``/var/lib/facsimile/pull``
    for ``/``, else ``DEST/.facsimile/pull``."""
    if dest.rstrip(os.sep) == "":
        return "/var/lib/facsimile/pull"
    return os.path.join(dest, ".facsimile", "pull")


def pull(req: Request, keys: Sequence[str], out: Callable[[str], None] = print,
         store: Store | None = None, report: dict[str, Any] | None = None) -> int:
    """One pull (see the module's docstring); 0 done or nothing to do, 2 a dry run
    found changes; an error is raised (``SyncError``: one line). ``report`` gets
    the serial and the files put, mode-fixed, deleted and unchanged (``--json``)."""
    if not keys:
        raise SyncError("give --key (the publisher's public key): a pull verifies "
                        "every manifest it applies")
    for what, name in (("instance", req.instance), ("target", req.target),
                       ("host", req.host)):
        if name is not None and not B.segment_ok(name):
            raise SyncError(f"--{what} {name!r} is not a name (a '/', a leading '.')")
    public = [load_public(k) for k in keys]
    dest = os.path.abspath(req.dest)
    state_dir = Path(req.state_dir or state_dir_of(dest))
    rec_path = L.record_path(state_dir, req.instance, req.target)
    own = store is None
    store = store or Store(req.url, req.options, "pull")
    try:
        # a dry run writes nothing, not even the lock
        with contextlib.nullcontext() if req.dry_run else L.locked(rec_path.with_suffix(".lock")):
            return _pull(req, public, store, dest, state_dir, rec_path, out,
                         {} if report is None else report)
    finally:
        if own:
            store.close()


def _pull(req: Request, public: list[Any], store: Store, dest: str, state_dir: Path,
          rec_path: Path, out: Callable[[str], None], report: dict[str, Any]) -> int:
    rel = B.manifest(req.instance, req.target, req.host)
    where = store.where(rel)
    data = store.read(rel)
    if data is None:
        raise SyncError(f"no manifest at {where}: publish it first (facs publish "
                        f"{req.instance} --to URL)" + (
                            f", or check that {req.host} is a host of target {req.target}"
                            if req.host else ""))
    payload = opened(data, public, where)
    files = B.check_payload(payload, where)
    _check_scope(payload, req, where)
    record = L.read_record(rec_path)
    digest = hashlib.sha256(canonical(payload)).hexdigest()
    failed = record.get("failed") or {}
    if failed.get("digest") == digest:
        raise SyncError(f"serial {payload['serial']} failed here before ({failed.get('reason')}"
                        f"); the host keeps serial {record.get('serial')} until a newer one "
                        "is published")
    _check_history(payload, record, digest, req, where)
    plan = _plan(files, record, dest)
    taken = L.others(state_dir, rec_path) if plan.fetch else {}
    clash = sorted(r for r in plan.fetch if r in taken)
    if clash:
        raise SyncError(f"{clash[0]} at {dest} is written by the pull of {taken[clash[0]]}: "
                        "two pulls must not write one file; nothing was changed")
    serial = payload["serial"]
    report.update(serial=serial, puts=list(plan.fetch), modes=list(plan.chmod),
                  deletes=list(plan.deletes), unchanged=plan.unchanged)
    if req.dry_run:
        for r, why in plan.fetch.items():
            out(f"  {req.label}: put {r} ({why})")
        for r in plan.chmod:
            out(f"  {req.label}: mode {r} ({files[r]['mode']:04o})")
        for r in plan.deletes:
            out(f"  {req.label}: delete {r}")
        out(f"pull {req.label}: serial {serial}: would put {len(plan.fetch)}, fix mode "
            f"{len(plan.chmod)}, delete {len(plan.deletes)}, {plan.unchanged} unchanged")
        return 2 if plan.changes else 0
    pending = bool(record.get("postcmd_pending"))
    if not plan.changes and not plan.adopt and record.get("digest") == digest and not pending:
        out(f"pull {req.label}: serial {serial}: up to date ({plan.unchanged} file(s))")
        return 0
    return _apply(req, store, payload, files, plan, record, rec_path, dest, digest, out)


def _apply(req: Request, store: Store, payload: Mapping[str, Any],
           files: Mapping[str, dict[str, Any]], plan: Plan, record: dict[str, Any],
           rec_path: Path, dest: str, digest: str, out: Callable[[str], None]) -> int:
    """Carry the plan out, write the record, run postcmd and the health check; a
    failed check puts the host back (see :mod:`.health`)."""
    checks = [str(c) for c in payload.get("check") or []]
    undo = H.Undo() if checks else None
    plain = {r: e.get("plain") for r, e in record["files"].items()}
    got = _fetch(store, files, plan, dest, req, plain, undo)
    for r in plan.chmod:
        if undo is not None:
            undo.keep_mode(os.path.join(dest, r))
        os.chmod(os.path.join(dest, r), files[r]["mode"])
    for r in plan.deletes:
        if undo is not None and os.path.lexists(os.path.join(dest, r)):
            undo.keep(os.path.join(dest, r))
        L.remove(os.path.join(dest, r), dest)
    kept = {r: record["files"][r] for r in files if r in record["files"] and r not in got
            and r not in plan.chmod and r not in plan.adopt}
    kept.update(_stats(dest, files, [*got, *plan.chmod, *plan.adopt], plain))
    changed = plan.changes or bool(record.get("postcmd_pending"))
    serial = payload["serial"]
    new = {"instance": req.instance, "target": req.target, "host": req.host,
           "lineage": payload.get("lineage"), "serial": serial, "digest": digest,
           "published_at": payload.get("published_at"), "files": kept,
           "postcmd_pending": bool(changed and (payload.get("postcmd") or checks))}
    L.write_record(rec_path, new)
    out(f"pull {req.label}: serial {serial}: {len(got)} put, {len(plan.chmod)} mode fixed, "
        f"{len(plan.deletes)} deleted, {plan.unchanged} unchanged")
    if not new["postcmd_pending"]:
        return 0
    try:
        _postcmds(payload.get("postcmd") or [], dest, out)
        values = {"host": req.host or socket.gethostname(), "target": req.target,
                  "path": dest}
        failed = H.run_checks(checks, float(payload.get("check_timeout") or 30), values, out)
    except SyncError as exc:
        if undo is None:
            raise
        failed = str(exc)
    if failed is not None and undo is not None:
        undo.restore()
        with contextlib.suppress(SyncError):  # services read the old files again
            _postcmds(payload.get("postcmd") or [], dest, out)
        was = record.get("serial")
        L.write_record(rec_path, {**record, "failed": {"digest": digest, "serial": serial,
                                                      "reason": failed}})
        raise SyncError(f"{failed}: serial {serial} was taken back, the host keeps "
                        + (f"serial {was}" if was else "what it had")
                        + " (a newer publish is tried again)")
    if undo is not None:
        undo.drop()
    L.write_record(rec_path, {**new, "postcmd_pending": False})
    return 0


def _check_scope(payload: Mapping[str, Any], req: Request, where: str) -> None:
    """The manifest is the one asked for (one copied from another path is refused)."""
    got = (payload.get("instance"), payload.get("target"), payload.get("host"))
    if got != (req.instance, req.target, req.host):
        shown = f"{got[0]}/{got[1]}" + (f" host {got[2]}" if got[2] else "")
        raise SyncError(f"{where} is the manifest of {shown}, not of {req.label}: refused, "
                        "nothing was changed")


def _check_history(payload: Mapping[str, Any], record: Mapping[str, Any], digest: str,
                   req: Request, where: str) -> None:
    """Refuse another lineage (unless ``adopt_state``) and an older serial (always)."""
    had, lineage = record.get("serial"), record.get("lineage")
    if had is None:
        return
    serial = payload["serial"]
    if lineage and payload.get("lineage") != lineage and not req.adopt_state:
        raise SyncError(f"{where} is from state lineage {str(payload.get('lineage'))[:8]}, "
                        f"this host has lineage {str(lineage)[:8]}: the state was made again "
                        "or comes from another clone; refused, nothing was changed "
                        "(--adopt-state takes it knowingly)")
    if serial < had:
        raise SyncError(f"manifest serial {serial} is older than the {had} this host has: "
                        f"refused (a rollback?), nothing was changed ({where})")
    if serial == had and digest != record.get("digest"):
        raise SyncError(f"manifest serial {serial} differs from the serial {had} this host "
                        f"has: refused, nothing was changed ({where})")


def _plan(files: Mapping[str, dict[str, Any]], record: Mapping[str, Any], dest: str) -> Plan:
    """Compare the manifest with the record and the files on disk."""
    plan = Plan()
    had_files = record.get("files", {})
    for rel, e in files.items():
        path = os.path.join(dest, rel)
        had = had_files.get(rel)
        same = bool(had) and had.get("sha256") == e["sha256"]
        if same and L.intact(path, had):
            (plan.chmod if had.get("mode") != e["mode"] else plan.unchanged_list).append(rel)
        elif (same and L.sha256_of(path) == had.get("plain")) or (
                not e["encrypted"] and L.sha256_of(path) == e["sha256"]):
            # the content is right (a chmod or a touch since): no fetch
            (plan.chmod if os.lstat(path).st_mode & 0o7777 != e["mode"] else plan.adopt) \
                .append(rel)
        else:
            plan.fetch[rel] = "changed" if os.path.lexists(path) else "new"
    plan.deletes = sorted(r for r in had_files if r not in files)
    return plan


def _fetch(store: Store, files: Mapping[str, dict[str, Any]], plan: Plan, dest: str,
           req: Request, plain: dict[str, Any], undo: H.Undo | None = None) -> list[str]:
    """Fetch, check, decrypt and stage every file to put, then rename them in;
    ``plain`` gets the sha256 of each one's clear content."""
    staged = L.Staged()
    identities: list[Any] | None = None
    try:
        for rel in plan.fetch:
            e = files[rel]
            at = B.blob(e["sha256"])
            data = store.read(at)
            if data is None:
                raise SyncError(f"the blob of {rel} is missing at {store.where(at)}: nothing "
                                "was changed (publish again; the next pull repairs)")
            sha = hashlib.sha256(data).hexdigest()
            if sha != e["sha256"] or len(data) != e["size"]:
                raise SyncError(f"the blob of {rel} is damaged ({len(data)} of {e['size']} "
                                f"bytes, sha256 {sha[:12]} not {e['sha256'][:12]}): nothing "
                                "was changed (the next pull fetches it again)")
            if e["encrypted"]:
                if identities is None:
                    identities = _identities(req, rel)
                data = _decrypt(data, identities, rel, e, req)
            staged.add(os.path.join(dest, rel), data, e["mode"])
            plain[rel] = hashlib.sha256(data).hexdigest()
        staged.commit(undo)
    except BaseException:
        staged.discard()
        raise
    return list(plan.fetch)


def _identities(req: Request, rel: str) -> list[Any]:
    """The identities secrets are opened with: ``--identity``, else
    ``$FACSIMILE_IDENTITY``, else the host's ssh key."""
    from ..state.crypt import load_identities

    paths = list(req.identities) or [os.environ.get("FACSIMILE_IDENTITY") or HOST_KEY]
    found: list[Any] = []
    for p in paths:
        try:
            found.extend(load_identities(p))
        except FacsimileError as exc:
            raise SyncError(f"{exc}: nothing was changed") from None
    if not found:
        raise SyncError(f"{rel} is encrypted and there is no identity to open it "
                        f"({', '.join(paths)} not found): give --identity (the host's ssh "
                        "key or an age identity); nothing was changed")
    return found


def _decrypt(data: bytes, identities: list[Any], rel: str, e: Mapping[str, Any],
             req: Request) -> bytes:
    """The clear content of an encrypted blob; one line when no identity opens it."""
    from ..state.crypt import open_bytes, short

    try:
        return open_bytes(data.decode("ascii", "replace"), identities, rel)
    except FacsimileError as exc:
        to = ", ".join(short(r) for r in e.get("recipients", []))
        why = "none of the identities given opens it" if "none of your" in exc.message \
            else exc.message
        raise SyncError(f"{rel} is encrypted to {to or 'other keys'}: {why} "
                        f"({', '.join(req.identities) or 'the default identity'}); "
                        "nothing was changed") from None


def _stats(dest: str, files: Mapping[str, dict[str, Any]], rels: list[str],
           plain: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The record entries of files now in place: blob, sha256 of the clear content,
    mode, size, mtime."""
    out = {}
    for rel in rels:
        st = os.lstat(os.path.join(dest, rel))
        e = files[rel]
        out[rel] = {"sha256": e["sha256"], "plain": e["sha256"] if not e["encrypted"]
                    else plain.get(rel), "mode": st.st_mode & 0o7777, "size": st.st_size,
                    "mtime_ns": st.st_mtime_ns}
    return out


def _postcmds(commands: list[str], dest: str, out: Callable[[str], None]) -> None:
    """Run each post-command in ``dest``; the first that fails stops (the record
    keeps it pending, so the next pull runs it again)."""
    for cmd in commands:
        proc = subprocess.run(cmd, shell=True, cwd=dest, capture_output=True, text=True,
                              check=False)
        for line in (proc.stdout + proc.stderr).splitlines():
            out(f"  postcmd: {line}")
        if proc.returncode != 0:
            raise SyncError(f"postcmd {cmd!r} exited {proc.returncode} (the files are in "
                            "place; the next pull runs it again)")
