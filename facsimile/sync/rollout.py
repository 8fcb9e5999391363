"""A staged rollout (``deploy.rollout``): the hosts of a sync in waves, each
host health-checked after its files and postcmd, the next wave started only
while the failures stay within ``max_failed``.

```json
"rollout": {"waves": [1, "10%", "100%"], "check": ["curl -fsS http://{host}/health"],
            "check_timeout": 30, "max_failed": "5%", "pause": 0}
```

- ``waves``: the size of each wave, a number of hosts or a percentage of the
  hosts of the sync; the last size repeats until every host had its turn (as
  Ansible's ``serial``). Hosts are taken in a stable order (by host, then
  target), the same on every run, so wave 1 is always the same canary.
- ``max_failed``: how many hosts of the whole sync may fail (a sync error or
  a failed check) before it stops: a number, or a percentage of its hosts
  (``"5%"`` of 40 allows 2). A host that fails is restored to the generation
  it had (see ``generations``), within the budget or not.
- Over the budget, every host of the failing wave is restored, later waves are
  never touched, and the sync exits 1 naming each host and its reason.
- ``pause``: seconds to wait between waves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..define.rollout import Rollout, parse_rollout
from ..errors import DefinitionError, SyncError
from .host import HostResult, Job


def rollout_of(deploy: Mapping[str, Any]) -> Rollout | None:
    """The instance's ``deploy.rollout``, checked; None when it has none."""
    spec = deploy.get("rollout")
    if spec is None:
        return None
    try:
        return parse_rollout(spec)
    except DefinitionError as exc:
        raise SyncError(exc.message) from None


def order(jobs: list[Job]) -> list[Job]:
    """The hosts in the rollout's stable order: by host, then target."""
    return sorted(jobs, key=lambda j: (j.host, j.target, j.url))


def waves(jobs: list[Job], rollout: Rollout) -> list[list[Job]]:
    """The jobs in waves (see the module's docstring)."""
    ordered = order(jobs)
    out, start = [], 0
    for size in rollout.sizes(len(ordered)):
        out.append(ordered[start:start + size])
        start += size
    return out


Run = Callable[[list[Job]], Iterator[HostResult]]
#: restores the jobs, each to the generation its label maps to (None: only undo a
#: sync that stopped half way there)
Restore = Callable[[list[Job], Mapping[str, int | None]], Iterator[HostResult]]


def run_waves(jobs: list[Job], rollout: Rollout, sync: Run, restore: Restore,
              out: Callable[[str], None], only: int | None = None,
              todo: Callable[[Job], bool] = lambda job: True) -> list[HostResult]:
    """Sync ``jobs`` wave by wave with ``sync``; ``restore`` takes hosts back. The
    results, the restored hosts' marked failed with why. ``only``: just that wave
    (1 is the first). ``todo``: whether a host has something to do; the waves are
    made of every job (a host is in the same wave on every run) and a wave syncs
    only its hosts with something to do."""
    every = waves(jobs, rollout)
    if only is not None and not 1 <= only <= len(every):
        raise SyncError(f"--wave {only}: this rollout has {len(every)} wave(s) of "
                        f"{len(jobs)} host(s)")
    allowed = rollout.allowed(len(jobs))
    results: list[HostResult] = []
    failed = 0
    for number, whole in enumerate(every, 1):
        wave = [j for j in whole if todo(j)]
        if (only is not None and number != only) or not wave:
            continue
        if results and rollout.pause:
            time.sleep(rollout.pause)
        out(f"wave {number} of {len(every)}: {len(wave)} host(s): "
            + ", ".join(j.host for j in wave[:8]) + (" ..." if len(wave) > 8 else ""))
        done = list(sync(wave))
        bad = [r for r in done if not r.ok]
        failed += len(bad)
        over = failed > allowed
        back = [r for r in done if (over and r.changed) or not r.ok]
        if back:
            _take_back(back, wave, restore, out, over)
        results += done
        if over:
            out(f"wave {number}: {failed} host(s) failed, more than the {allowed} "
                f"deploy.rollout.max_failed allows: wave {number} restored, later waves "
                "not started")
            break
    return results


def _take_back(back: list[HostResult], wave: list[Job], restore: Restore,
               out: Callable[[str], None], over: bool) -> None:
    """Restore the hosts of ``back`` to the generation each had before the wave."""
    by_label = {r.label: r for r in back}
    jobs = [j for j in wave if f"{j.target}/{j.host}" in by_label]
    for r in restore(jobs, {label: r.before for label, r in by_label.items()}):
        first = by_label[r.label]
        if not first.ok:
            first.message += "; " + (r.message if r.ok else f"NOT restored: {r.message}")
        else:  # synced and checked fine, but its wave went over the budget
            first.ok = False
            first.message = "its wave failed: " + (r.message if r.ok
                                                   else f"NOT restored: {r.message}")
        if over or not first.ok:
            out(f"  {r.label}: " + (r.message if r.ok else f"restore FAILED: {r.message}"))
