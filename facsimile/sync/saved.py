"""Saved plans: what ``facs sync --dry-run --out plan.json`` writes and ``facs
sync --plan plan.json`` applies exactly (as Terraform's saved plan).

Per host, ``host_doc`` records every put (path, the digest and mode in
``BUILD/``, the digest and size/mtime seen at the host) and every delete, the
digest of the manifest read there and one digest of all the host's files in
``BUILD/``. Applying a saved plan plans each host again and ``mismatch``
compares: another build digest means ``BUILD/`` changed since; any other
difference (another manifest, a file edited, added or removed at the host)
means the host changed; either refuses the host before any put. No content
and no secret is in a plan: paths, digests, modes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SyncError
from .urls import shown_url

if TYPE_CHECKING:
    from .planner import HostPlan

FORMAT = 1
KIND = "facsimile-sync-plan"


def host_doc(plan: HostPlan) -> dict[str, Any]:
    """One host's part of a saved plan (and of ``facs sync --json``)."""
    puts = []
    for p in plan.puts:
        rel = p.file.rel
        e = plan.seen.get(rel)
        host_digest = plan.digests.get(rel) if rel in plan.digests else (
            (plan.manifest.get(rel) or {}).get("digest") if e is not None else None)
        puts.append({"path": rel, "digest": p.file.digest, "mode": p.file.mode,
                     "reason": p.reason, "host_digest": host_digest,
                     "host_seen": None if e is None else [e.size, e.mtime]})
    return {
        "target": plan.target, "host": plan.host, "url": shown_url(plan.url),
        "build": build_digest(plan),
        "manifest": hashlib.sha256(plan.raw).hexdigest() if plan.raw is not None else None,
        "puts": puts,
        "deletes": [{"path": rel, "ours": rel not in plan.foreign} for rel in plan.deletes],
        "unchanged": plan.unchanged,
    }


def build_digest(plan: HostPlan) -> str:
    """One digest of every file of the build this host gets (path, digest, mode)."""
    h = hashlib.sha256()
    for rel, f in sorted(plan.files.items()):
        h.update(f"{rel}\0{f.digest}\0{f.mode}\n".encode())
    return h.hexdigest()


def mismatch(expected: Mapping[str, Any] | None, plan: HostPlan) -> str | None:
    """Why ``plan`` (made now) is not the saved ``expected`` one; None when it is."""
    label = f"{plan.target}/{plan.host}"
    todo = "make a new plan (facs sync --dry-run --out) and look at it again"
    if expected is None:
        return f"{label}: refused: the saved plan has no such host; {todo}"
    now = host_doc(plan)
    if now["build"] != expected.get("build"):
        return f"{label}: refused: BUILD/ changed since the plan; {todo}"
    if any(now[k] != expected.get(k) for k in ("manifest", "puts", "deletes")):
        return f"{label}: refused: the host changed since the plan; {todo}"
    return None


def write_plan(path: Path, instances: Mapping[str, list[dict[str, Any]]]) -> None:
    """Write a saved plan: each instance's host documents."""
    doc = {"format": FORMAT, "kind": KIND, "instances": dict(instances)}
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def read_plan(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """A saved plan: ``{instance: {"target/host": host document}}``."""
    try:
        doc = json.loads(path.read_text())
        assert doc.get("kind") == KIND and doc.get("format") == FORMAT
        return {name: {f"{h['target']}/{h['host']}": h for h in hosts}
                for name, hosts in doc["instances"].items()}
    except (OSError, ValueError, AssertionError, KeyError, TypeError, AttributeError):
        raise SyncError(f"{path} is not a saved sync plan (facs sync --dry-run --out "
                        f"{path.name} writes one)") from None
