"""``facs publish``: write an instance's build to a store as signed bundles.

Per target, one manifest of the files every host of it gets (the ``files``
patterns without ``{host}``, less ``deploy.exclude``, no ``{host}`` fan-out
output), and per named host one of what sync's placement gives that host
(:func:`facsimile.sync.placement.chosen`). A file whose build read a
generated secret (its record's mode decision, :mod:`facsimile.build.modes`),
or that only its owner may read, is stored as age ciphertext only: a shared
file to the target's ``recipients`` and every key of its ``host_keys``, a
host's own fan-out file to that host's key alone. An unchanged secret keeps
its ciphertext (found by its keyed ``mac``), so republishing sends nothing.

Order, so that a reader never sees a manifest whose blobs are missing: under
the store's lock, the new blobs, then the instance's ``refs.json`` with the
new serial added, then each manifest's kept copy and the manifest itself,
then ``refs.json`` pruned to ``keep`` serials, the older manifests removed,
and the blobs no instance's ``refs.json`` names collected.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import SyncError
from . import bundle as B
from . import refs as R
from .sign import envelope, load_private
from .store import Store

if TYPE_CHECKING:
    from ..define import Instance
    from ..project import Project
    from ..sync.scan import LocalFile


@dataclass
class Scope:
    """One manifest to write: a target's shared files, or one host's."""

    target: str
    host: str | None
    files: dict[str, LocalFile]
    #: rel -> the recipients its ciphertext is for (only the files stored encrypted)
    sealed: dict[str, list[str]] = field(default_factory=dict)

    @property
    def folder(self) -> str:
        return self.target + (f"/hosts/{self.host}" if self.host else "")


def scopes(instance: str, project: str, targets: Mapping[str, Mapping[str, Any]],
           deploy: Mapping[str, Any], files: Mapping[str, LocalFile],
           host_of: Mapping[str, str], secret: set[str]) -> list[Scope]:
    """Every manifest of the instance with its files and whom each secret is for."""
    from ..globs import glob_regex
    from ..sync.placement import chosen

    exclude = [glob_regex(p) for p in deploy.get("exclude", [])]
    out = []
    for tname, spec in sorted(targets.items()):
        spec = spec or {}
        _check_names(instance, tname, spec.get("hosts", []))
        patterns = list(spec.get("files") or ["**"])
        everyone = [p for p in patterns if "{host}" not in p]
        values = {"host": "", "instance": instance, "target": tname, "project": project}
        shared = chosen(tname, {"files": everyone}, files, exclude, values, host_of) \
            if everyone else {}
        keys = dict(spec.get("host_keys") or {})
        to_all = [*spec.get("recipients", []), *keys.values()]
        scope = Scope(tname, None, shared)
        _seal(scope, secret, to_all, to_all, host_of)
        out.append(scope)
        for h in spec.get("hosts", []):
            got = chosen(tname, spec, files, exclude, {**values, "host": h}, host_of)
            own = [keys[h]] if h in keys else list(spec.get("recipients", []))
            scope = Scope(tname, h, got)
            _seal(scope, secret, to_all, own, host_of)
            out.append(scope)
    return out


def _check_names(instance: str, target: str, hosts: list[str]) -> None:
    """A target and its hosts name folders of the store: one segment each."""
    from ..define.names import host_problem

    if not B.segment_ok(target):
        raise SyncError(f"instance {instance}: the target name {target!r} cannot name a "
                        "folder of the store (a '/', a leading '.', a control character)")
    for h in hosts:
        problem = host_problem(h)
        if problem:
            raise SyncError(f"instance {instance}, target {target}: {problem}")


def _seal(scope: Scope, secret: set[str], to_all: list[str], own: list[str],
          host_of: Mapping[str, str]) -> None:
    """Say whom each secret file of ``scope`` is encrypted to (a host's own fan-out
    file: ``own``; a shared one: ``to_all``); none is an error."""
    for rel in scope.files:
        if rel not in secret:
            continue
        to = own if rel in host_of else to_all
        if not to:
            raise SyncError(f"target {scope.target}: {rel} holds a generated secret and the "
                            "target has no key to encrypt it to: give the target "
                            "recipients (age or ssh public keys) or host_keys {host: "
                            "ssh host key}; a bundle never holds a secret in the clear")
        scope.sealed[rel] = to


def fanned_out(project: Project, inst: Instance) -> dict[str, str]:
    """``{rel: host}`` of the ``{host}`` fan-out outputs, by the host's own name."""
    from ..sync.run import host_outputs

    return host_outputs(project, inst)


def secret_outputs(project: Project, inst: Instance, files: Mapping[str, LocalFile]) -> set[str]:
    """The outputs stored encrypted: those whose build read a generated secret (the
    record's mode decision), and those only their owner may read."""
    from ..build.check import DB_FILE, VALUES, read_db
    from ..build.record import KEY_MODE

    db = read_db(project.root.base / DB_FILE)
    out = set()
    for rel, f in files.items():
        rec = (db.get(f"build:{inst.name}/{rel}") or {}).get(VALUES) or {}
        mode = rec.get(KEY_MODE)
        if (isinstance(mode, list) and len(mode) > 1 and mode[1]) or not f.mode & 0o077:
            out.add(rel)
    return out


def publish(project: Project, instance: str, url: str, *, sign_key: str, keep: int = 3,
            options: Mapping[str, Any] | None = None, out: Callable[[str], None] = print,
            report: dict[str, Any] | None = None, dry_run: bool = False) -> int:
    """Publish ``BUILD/<instance>`` to the store at ``url``; the exit code (0).
    ``report`` gets the serial and the counts the summary line gives (``--json``).
    ``dry_run``: print what a publish would change, file by file, and write nothing
    (no lock, no blob, no state); exit code 2 when something would change."""
    from ..sync.run import deploy_settings, state_stamp
    from ..sync.scan import scan_build
    from .store import store_options

    if keep < 1:
        raise SyncError("--keep must be 1 or more (the manifest hosts read is kept)")
    from ..build.validate import refuse_failed_checks

    key = load_private(sign_key)
    inst = project.instance(instance)
    refuse_failed_checks(project, inst.name)  # as a sync does: nothing leaves
    build_dir = project.root.build / inst.name
    if not build_dir.is_dir():
        raise SyncError(f"nothing to publish: {build_dir} does not exist (build it first)")
    files = scan_build(build_dir)
    deploy = deploy_settings(project, inst)
    found = scopes(inst.name, project.name, inst.targets, deploy, files,
                   fanned_out(project, inst), secret_outputs(project, inst, files))
    if not found:
        raise SyncError(f"instance {inst.name} has no targets to publish")
    stamp = state_stamp(project, inst, write=not dry_run)
    mac_key = project.store.digest_key(write=not dry_run)
    base = {"format": B.FORMAT, "project": project.name, "instance": inst.name,
            "family": inst.family, "lineage": stamp.lineage, "state_serial": stamp.serial,
            "postcmd": [str(c) for c in deploy.get("postcmd", [])]}
    rollout = deploy.get("rollout")
    if isinstance(rollout, Mapping) and rollout.get("check"):  # sync's health check
        base["check"] = [str(c) for c in rollout["check"]]
        base["check_timeout"] = float(rollout.get("check_timeout") or 30)
    store = Store(url, store_options(deploy=deploy, **(options or {})), "publish")
    try:
        if dry_run:  # reads only: a publish running meanwhile may show half of its change
            return _dry_run(store, inst.name, found, base, key, mac_key, out,
                            {} if report is None else report)
        with store.locked():
            return _publish(store, inst.name, found, base, key, keep, mac_key, out,
                            {} if report is None else report)
    finally:
        store.close()


def _publish(store: Store, instance: str, found: list[Scope], base: dict[str, Any],
             key: Any, keep: int, mac_key: bytes, out: Callable[[str], None],
             report: dict[str, Any]) -> int:
    """Everything a publish writes, in the order the module's docstring gives."""
    got = _prepare(store, instance, found, base, key, mac_key, report)
    serial, payloads, blobs = got.serial, got.payloads, got.blobs
    if payloads is None:
        out(f"publish {instance}: nothing changed since serial {serial - 1} "
            f"({store.shown})")
        return 0
    sent = 0
    for sha, data in blobs.items():  # only what the store lacks
        store.write(B.blob(sha), data)
        sent += len(data)
    new = len(blobs)
    used: set[str] = set().union(*(B.referenced(p) for p in payloads.values()))
    unchanged = len(used) - new
    refs = R.read(store, instance)
    refs[str(serial)] = sorted(used)
    R.write(store, instance, refs)
    for folder, payload in payloads.items():
        data = envelope(payload, key)
        store.write(B.history(f"{instance}/{folder}", serial), data)
        store.write(f"{instance}/{folder}/{B.MANIFEST}", data)
    kept = sorted((int(s) for s in refs), reverse=True)[:keep]
    refs = {str(s): refs[str(s)] for s in kept}
    R.write(store, instance, refs)
    live = {f"{instance}/{folder}" for folder in payloads}
    store.delete([rel for rel in got.existing if _stale(rel, live, kept)])
    collected = R.collect(store, got.have | {B.blob(sha) for sha in blobs}, out)
    report.update(serial=serial, changed=True, new_blobs=new, sent=sent,
                  unchanged_blobs=unchanged, collected=collected, kept=kept)
    out(f"publish {instance}: serial {serial}, {len(payloads)} manifest(s), {new} new "
        f"blob(s) ({_size(sent)}), {unchanged} unchanged, {collected} collected; "
        f"{len(kept)} serial(s) kept ({store.shown})")
    return 0


class _Prepared(NamedTuple):
    """What the store holds of an instance and what a publish would write."""

    existing: list[str]  # the store's files of the instance
    old: dict[str, dict[str, Any]]  # the current payloads, by manifest path
    serial: int  # the next serial
    payloads: dict[str, dict[str, Any]] | None  # by folder; None: nothing changed
    blobs: dict[str, bytes]  # the blobs the store lacks (new ciphertexts too)
    have: set[str]  # the blobs the store has


def _prepare(store: Store, instance: str, found: list[Scope], base: dict[str, Any],
             key: Any, mac_key: bytes, report: dict[str, Any]) -> _Prepared:
    """What the store holds and what a publish would write (:class:`_Prepared`); a
    dry run encrypts as a publish does, and keeps the new ciphertexts in memory only."""
    existing = store.find(instance)
    old, signed = _current(store, existing, key)
    serial = 1 + max([p.get("serial", 0) for p in old.values()]
                     + [_serial_of(rel) for rel in existing], default=0)
    # ciphertexts are kept only from manifests this key signed: one slipped into the
    # store by someone else is never signed anew
    reuse = {(e.get("mac"), frozenset(e.get("recipients", []))): e
             for rel in signed for e in old[rel].get("files", {}).values()
             if isinstance(e, dict) and e.get("encrypted") and B.is_sha(e.get("sha256"))}
    have = set(store.find(B.BLOBS))
    blobs: dict[str, bytes] = {}
    now = datetime.now(UTC).isoformat(timespec="seconds")
    payloads = {}
    for scope in found:
        entries = {}
        for rel, f in scope.files.items():
            entries[rel] = _entry(f, scope.sealed.get(rel), mac_key, reuse, blobs, have)
        payloads[scope.folder] = {**base, "target": scope.target, "host": scope.host,
                                  "serial": serial, "published_at": now, "files": entries}
    report.update(instance=instance, url=store.shown, manifests=len(payloads))
    if set(old) == signed and _same(old, payloads, instance):
        report.update(serial=serial - 1, changed=False)
        return _Prepared(existing, old, serial, None, blobs, have)
    return _Prepared(existing, old, serial, payloads, blobs, have)


def _dry_run(store: Store, instance: str, found: list[Scope], base: dict[str, Any],
             key: Any, mac_key: bytes, out: Callable[[str], None],
             report: dict[str, Any]) -> int:
    """Print what :func:`_publish` would change, manifest by manifest and file by file
    (as ``facs sync --dry-run`` does); write nothing. Exit code 2 when it would."""
    got = _prepare(store, instance, found, base, key, mac_key, report)
    old, serial, payloads, blobs = got.old, got.serial, got.payloads, got.blobs
    report["dry_run"] = True
    if payloads is None:
        out(f"dry run publish {instance}: nothing changed since serial {serial - 1} "
            f"({store.shown})")
        return 0
    changes: dict[str, list[dict[str, str]]] = {}
    for folder, payload in payloads.items():
        was = old.get(f"{instance}/{folder}/{B.MANIFEST}")
        shown = f"{instance}/{payload['target']}" + \
            (f" ({payload['host']})" if payload["host"] else "")
        lines = changes.setdefault(folder, [])
        for what, rel, why in _file_changes(was, payload):
            lines.append({"do": what, "path": rel, "why": why})
            out(f"  {shown}: {what} {rel}" + (f" ({why})" if why else ""))
        if was is not None and not lines:
            settings = sorted(k for k in {*was, *payload} - {"serial", "published_at", "files"}
                              if was.get(k) != payload.get(k))
            if settings:
                lines.append({"do": "settings", "path": "", "why": ", ".join(settings)})
                out(f"  {shown}: its {', '.join(settings)} change")
    folders = (rel[len(instance) + 1: -len(B.MANIFEST) - 1] for rel in old)
    gone = sorted(f for f in folders if f not in payloads)
    for folder in gone:
        out(f"  {instance}/{folder}: manifest removed (its target or host is gone)")
    size = sum(len(b) for b in blobs.values())
    touched = sum(1 for folder in payloads if changes[folder]
                  or old.get(f"{instance}/{folder}/{B.MANIFEST}") is None)
    report.update(serial=serial, changed=True, new_blobs=len(blobs), sent=size,
                  changes={f: c for f, c in changes.items() if c}, removed=gone)
    out(f"dry run publish {instance}: serial {serial} would change {touched} of "
        f"{len(payloads)} manifest(s)" + (f" and remove {len(gone)}" if gone else "")
        + f", {len(blobs)} new blob(s) ({_size(size)}); nothing was written "
        f"({store.shown})")
    return 2


def _file_changes(was: Mapping[str, Any] | None,
                  now: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(``put``/``drop``, rel, why) of each file a manifest changes, by path."""
    before = (was or {}).get("files") or {}
    before = before if isinstance(before, dict) else {}
    out = []
    for rel, e in sorted(now["files"].items()):
        b = before.get(rel)
        if not isinstance(b, dict):
            out.append(("put", rel, "new"))
        elif e.get("encrypted") != b.get("encrypted"):
            out.append(("put", rel, "now encrypted" if e.get("encrypted") else "now in clear"))
        elif (e.get("mac") != b.get("mac")) if e.get("encrypted") else \
                (e.get("sha256") != b.get("sha256")):
            out.append(("put", rel, "changed"))
        elif e.get("recipients") != b.get("recipients"):
            out.append(("put", rel, "encrypted to other recipients"))
        elif e.get("mode") != b.get("mode"):
            out.append(("put", rel, f"mode {_mode(b.get('mode'))} -> {_mode(e.get('mode'))}"))
    out.extend(("drop", rel, "") for rel in sorted(before) if rel not in now["files"])
    return out


def _mode(mode: Any) -> str:
    return f"{mode:04o}" if isinstance(mode, int) else "?"


def _same(old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]],
          instance: str) -> bool:
    """Whether the new manifests say what the current ones do (serial and time aside)."""
    def bare(p: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in p.items() if k not in ("serial", "published_at")}

    new = {f"{instance}/{folder}/{B.MANIFEST}": p for folder, p in new.items()}
    return set(old) == set(new) and all(bare(old[k]) == bare(new[k]) for k in new)


def _stale(rel: str, live: set[str], kept: list[int]) -> bool:
    """Whether ``rel``, a file of the instance's folder, goes: a manifest of a target
    or host that is gone, or a kept one beyond the serials kept."""
    if rel.endswith("/" + B.MANIFEST):
        return rel[: -len(B.MANIFEST) - 1] not in live
    serial = _serial_of(rel)
    if serial:
        folder = rel.rsplit("/", 2)[0]
        return folder not in live or serial not in kept
    return False


def _entry(f: LocalFile, to: list[str] | None, mac_key: bytes,
           reuse: dict[tuple[Any, frozenset[str]], dict[str, Any]],
           blobs: dict[str, bytes], have: set[str]) -> dict[str, Any]:
    """A file's manifest entry; its blob (plain or a new ciphertext) into ``blobs``
    (an unchanged secret whose ciphertext is in the store keeps it: none)."""
    if to is None:
        if B.blob(f.digest) not in have:
            with open(f.path, "rb") as fh:
                blobs[f.digest] = fh.read()
        return {"sha256": f.digest, "size": f.size, "mode": f.mode, "encrypted": False}
    with open(f.path, "rb") as fh:
        data = fh.read()
    from ..state.crypt import parse_recipients, seal_bytes

    mac = hmac.new(mac_key, data, hashlib.sha256).hexdigest()
    whom = frozenset(" ".join(r.split()[:2]) for r in to)
    known = reuse.get((mac, whom))
    if known is not None and (known["sha256"] in blobs or B.blob(known["sha256"]) in have):
        return {**known, "mode": f.mode}
    cipher = seal_bytes(data, parse_recipients(to)).encode("ascii")
    sha = hashlib.sha256(cipher).hexdigest()
    blobs[sha] = cipher
    entry = {"sha256": sha, "size": len(cipher), "mode": f.mode, "encrypted": True,
             "recipients": sorted(whom), "mac": mac}
    reuse[(mac, whom)] = entry
    return entry


def _current(store: Store, existing: list[str],
             key: Any) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """The payloads of the instance's current manifests, and which of them verify
    with ``key`` (only those may keep a ciphertext or make a publish needless; the
    others give their serials)."""
    from .sign import opened

    out, signed = {}, set()
    for rel in existing:
        if rel.endswith("/" + B.MANIFEST):
            data = store.read(rel) or b""
            try:
                payload = json.loads(data)["payload"]
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(payload, dict):
                out[rel] = payload
                with contextlib.suppress(SyncError):
                    opened(data, [key.public_key()], rel)
                    signed.add(rel)
    return out, signed


def _serial_of(rel: str) -> int:
    """The serial of a kept manifest's path (``.../manifests/7.json``), else 0."""
    head, _, name = rel.rpartition("/")
    if head.endswith("/" + B.HISTORY) and name.endswith(".json") and name[:-5].isdigit():
        return int(name[:-5])
    return 0


def _size(n: int) -> str:
    from ..sync.apply import human_size

    return human_size(n)
