"""Time a build scenario with this checkout's facsimile against another revision's,
in alternating pairs.

A change on the build's path is judged before and after, but this machine (and
a CI runner) drifts by a fifth within minutes: two benches run one after the
other mostly measure the drift. Here each round runs the scenario once with
each revision, their order swapped every round, and the figure is the median
of the rounds' ratios (after / before), so that a drift falls on both alike.

The other revision is checked out with ``git worktree add --detach`` into a
temporary folder (removed at the end) and put first on ``PYTHONPATH`` for its
runs; this checkout's runs get this checkout's folder there. Both use the same
synthetic root (``bench_build.generate``) and the same interpreter.

Scenarios (``--scenario``, any of them, default all):

    full      a full build from scratch (BUILD/, .doit.db, state/, .facsimile/ removed)
    value     a build after one value changed (one output made again)
    template  a build after one template changed (one output per instance)
    noop      a no-op build, the record of the last good run kept

    python bench/bench_pairs.py --base HEAD~1                 # every scenario, 8 rounds
    python bench/bench_pairs.py --base main --scenario value --rounds 12

Exit status 1 when a run did not rebuild what its scenario must (the counts are
checked from doit's output line), or the other revision cannot be checked out.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_build import (
    EDIT_TEMPLATE,
    VALUE_INSTANCE,
    VALUE_TEMPLATE,
    edit_json,
    from_scratch,
    generate,
    run,
)

HERE = Path(__file__).resolve().parent.parent
SCENARIOS = ("full", "value", "template", "noop")
SETTLE = 0.25  # seconds after a build before the next: a record younger than this is not kept


def build(root: Path, tree: Path) -> tuple[float, str]:
    """Wall time and output of ``python -m doit`` in ``root`` with ``tree``'s facsimile
    first on the path."""
    elapsed, proc = run(root, "doit", env={"PYTHONPATH": str(tree)})
    return elapsed, proc.stdout


class Scenario:
    """Prepares ``root`` for one timed run and says what that run must have built."""

    def __init__(self, root: Path, n: int, m: int) -> None:
        self.root, self.n, self.m = root, n, m
        self.counter = itertools.count(1)

    def settle(self, tree: Path) -> None:
        """Two builds with ``tree``: the root up to date and its no-op record written."""
        build(self.root, tree)
        time.sleep(SETTLE)
        build(self.root, tree)

    def prepare(self, name: str, tree: Path) -> int:
        """Set up ``name`` for ``tree``; how many outputs its build must make."""
        if name == "full":
            from_scratch(self.root)
            return self.n * self.m
        self.settle(tree)
        k = next(self.counter)
        if name == "value":
            edit_json(self.root / f"define/i{VALUE_INSTANCE}.json", f"t{VALUE_TEMPLATE}",
                      "value", 10**6 + k)
            return 1
        if name == "template":
            path = self.root / f"tmpl/_ALL_/conf/t{EDIT_TEMPLATE}.conf.j2"
            text = path.read_text().split("\n# edit ")[0]
            path.write_text(f"{text}\n# edit {k}\n")
            return self.n
        return 0


def pairs(scenario: Scenario, name: str, trees: dict[str, Path],
          rounds: int) -> dict[str, list[float]]:
    """``rounds`` runs of ``name`` per tree, the order swapped every round."""
    times: dict[str, list[float]] = {label: [] for label in trees}
    order = list(trees)
    for k in range(rounds):
        for label in order if k % 2 == 0 else order[::-1]:
            want = scenario.prepare(name, trees[label])
            t, out = build(scenario.root, trees[label])
            if not re.search(rf"(?<!\d){want} built", out):
                raise SystemExit(f"{name} with {label}: expected {want} built, doit said:\n"
                                 f"{out[-1000:]}")
            times[label].append(t)
    return times


def worktree(rev: str, into: Path) -> Callable[[], None]:
    """Check ``rev`` out into ``into``; returns what removes it again."""
    proc = subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", "-q",
                           str(into), rev], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"cannot check out {rev!r}: {proc.stderr.strip()}")

    def remove() -> None:
        subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(into)],
                       capture_output=True)

    return remove


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="HEAD~1",
                    help="the revision to compare this checkout with (default HEAD~1)")
    ap.add_argument("--scenario", action="append", choices=SCENARIOS,
                    help="one of %(choices)s, again for more (default: all)")
    ap.add_argument("--rounds", type=int, default=8, help="pairs per scenario (default 8)")
    ap.add_argument("--instances", type=int, default=500, help="N (default 500)")
    ap.add_argument("--templates", type=int, default=20, help="M per instance (default 20)")
    ap.add_argument("--dir", type=Path,
                    help="work here (the synthetic root is made once and kept), not in a temp dir")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    work = args.dir or Path(tempfile.mkdtemp(prefix="facsimile-pairs-"))
    root = work / "root"
    if not (root / "dodo.py").exists():
        generate(root, args.instances, args.templates)
    remove = worktree(args.base, work / "base")
    try:
        trees = {args.base: work / "base", "this checkout": HERE}
        scenario = Scenario(root, args.instances, args.templates)
        for tree in trees.values():  # each revision's bytecode compiled before any timing
            from_scratch(root)
            build(root, tree)
        print(f"{args.instances * args.templates} outputs; {args.rounds} alternating pairs "
              f"per scenario; ratio: this checkout / {args.base}")
        for name in args.scenario or SCENARIOS:
            times = pairs(scenario, name, trees, args.rounds)
            before, after = times[args.base], times["this checkout"]
            ratios = [a / b for a, b in zip(after, before, strict=True)]
            print(f"{name:9} {statistics.median(ratios):.3f}x  (pairs "
                  f"{min(ratios):.2f}-{max(ratios):.2f}; medians {statistics.median(after):.3f} s"
                  f" against {statistics.median(before):.3f} s)")
    finally:
        remove()
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.exit(main())
