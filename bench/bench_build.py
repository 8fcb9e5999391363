"""Benchmark the incremental build against a plain Jinja2 loop, in the same run.

Generates a synthetic root (N instances x M templates, each template reading
its own key plus shared ones, instances inheriting a region), then times real
``doit`` runs in it: full build, no-op, one value changed, one template
changed, and ``facs plan`` on a no-op. Each figure is printed as wall seconds
and as a ratio to the plain loop (one Environment, plain dict contexts,
render and write every output once): the floor for a full build.

    python bench/bench_build.py                  # 500 x 20 = 10,000 outputs
    python bench/bench_build.py --instances 2500 # 50,000 outputs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REGIONS = 5


def generate(root: Path, n: int, m: int, body: int = 0) -> None:
    """A synthetic facsimile root; ``body`` more lines per template, from a loop."""
    (root / "define/regions").mkdir(parents=True)
    (root / "define/facsimile.json").write_text(json.dumps(
        {"name": "bench", "shared": {"a": 1, "b": "x", "items": [f"i{k}" for k in range(body)]},
         "unread": {"x": 1}}))
    (root / "define/modules.json").write_text(json.dumps([{"name": "app"}]))
    for r in range(REGIONS):
        (root / f"define/regions/r{r}.json").write_text(json.dumps({"region": {"name": f"r{r}"}}))
    for i in range(n):
        data = {"inherit": [f"regions/r{i % REGIONS}"]}
        data.update({f"t{j}": {"value": i * j} for j in range(m)})
        (root / f"define/i{i}.json").write_text(json.dumps(data))
    (root / "tmpl/_ALL_/conf").mkdir(parents=True)
    (root / "tmpl/_lib").mkdir()
    (root / "tmpl/_lib/header.inc").write_text("# {{ project.name }} {{ instance.name }}\n")
    for j in range(m):
        (root / f"tmpl/_ALL_/conf/t{j}.conf.j2").write_text(
            '{% include "header.inc" %}'
            f"value = {{{{ instance.t{j}.value }}}}\n"
            "a = {{ instance.shared.a }}\nb = {{ instance.shared.b }}\n"
            "region = {{ instance.region.name }}\n"
            + ("{% for it in instance.shared['items'] %}item = {{ it }} {{ loop.index }}\n"
               "{% endfor %}" if body else "")
        )
    (root / "dodo.py").write_text("from facsimile.dodo import *\n")


def plain_loop(root: Path, out: Path, n: int) -> float:
    """Render every output once with plain dicts: the floor for a full build."""
    import jinja2

    start = time.perf_counter()
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(
        [str(root / "tmpl/_ALL_"), str(root / "tmpl/_lib")]), keep_trailing_newline=True)
    project = json.loads((root / "define/facsimile.json").read_text())
    regions = {p.stem: json.loads(p.read_text()) for p in (root / "define/regions").iterdir()}
    names = sorted(p.relative_to(root / "tmpl/_ALL_").as_posix()
                   for p in (root / "tmpl/_ALL_").rglob("*.j2"))
    for i in range(n):
        data = json.loads((root / f"define/i{i}.json").read_text())
        region = regions[data["inherit"][0].split("/")[1]]
        inst = {**project, **region, **data, "name": f"i{i}"}
        ctx = {"instance": inst, "project": {"name": project["name"]}}
        for name in names:
            path = out / f"i{i}" / name[:-3]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(env.get_template(name).render(ctx))
    return time.perf_counter() - start


FLOOR_DODO = """
import gc
N = {n}


def noop(i):
    return None


def task_floor():
    gc.disable()
    for i in range(N):
        yield {{"name": str(i), "actions": [(noop, (i,))], "targets": [f"out/{{i}}"],
               "uptodate": [True], "verbosity": 1}}
    gc.freeze()
    gc.enable()


DOIT_CONFIG = {{"backend": "json", "dep_file": ".floor.db", "reporter": "executed-only"}}
"""


def doit_floor(work: Path, count: int) -> tuple[float, float]:
    """doit alone: ``count`` tasks whose action does nothing (run all, then a no-op)."""
    folder = work / "floor"
    (folder / "out").mkdir(parents=True)
    (folder / "dodo.py").write_text(FLOOR_DODO.format(n=count))
    full, _ = run(folder, "doit", "-f", "dodo.py", "--always-execute")
    for i in range(count):
        (folder / "out" / str(i)).touch()
    noop, _ = run(folder, "doit", "-f", "dodo.py")
    shutil.rmtree(folder)
    return full, noop


def run(root: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", *args], cwd=root, capture_output=True,
                          text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 2):
        raise SystemExit(f"{args} failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed, proc


def mtimes(folder: Path) -> dict[str, int]:
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(dirpath, f)
            out[p] = os.stat(p).st_mtime_ns
    return out


def changed(before: dict[str, int], after: dict[str, int]) -> int:
    return sum(1 for k, v in after.items() if before.get(k) != v) + len(set(before) - set(after))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--instances", type=int, default=500)
    ap.add_argument("--templates", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3, help="no-op runs (median)")
    ap.add_argument("--body", type=int, default=0,
                    help="lines each template renders from a loop (heavier templates)")
    ap.add_argument("--dir", type=Path, help="work here instead of a temp folder")
    ap.add_argument("--profile", action="store_true", help="profile a no-op (top 30)")
    args = ap.parse_args()
    n, m = args.instances, args.templates
    work = args.dir or Path(tempfile.mkdtemp(prefix="facs-bench-"))
    root = work / "root"
    if root.exists():
        shutil.rmtree(root)
    generate(root, n, m, args.body)
    base = plain_loop(root, work / "plain", n)
    shutil.rmtree(work / "plain")
    floor_full, floor_noop = doit_floor(work, n * m)
    rows: list[tuple[str, float, int, str]] = []
    checks: list[tuple[str, bool]] = []

    t, _ = run(root, "doit")
    build = root / "BUILD"
    rows.append(("full build (cold)", t, len(mtimes(build)), "resolves, makes state"))
    checks.append(("full build makes every output", len(mtimes(build)) == n * m))
    shutil.rmtree(build)
    (root / ".doit.db").unlink()
    t, _ = run(root, "doit")
    rows.append(("full build (warm)", t, len(mtimes(build)), "model cached, state kept"))

    noops = []
    for _ in range(args.repeat):
        before = mtimes(build)
        t, _ = run(root, "doit")
        noops.append(t)
        checks.append(("no-op rebuilds nothing", changed(before, mtimes(build)) == 0))
    noop = statistics.median(noops)
    rows.append(("no-op (median)", noop, 0, ""))

    before = mtimes(build)
    data = json.loads((root / "define/i7.json").read_text())
    data["t3"]["value"] = -1
    (root / "define/i7.json").write_text(json.dumps(data))
    t, _ = run(root, "doit")
    c = changed(before, mtimes(build))
    rows.append(("one value changed", t, c, f"no-op + {t - noop:.2f} s"))
    checks.append(("one value rebuilds one output", c == 1))

    before = mtimes(build)
    data = json.loads((root / "define/facsimile.json").read_text())
    data["unread"]["x"] = 2
    (root / "define/facsimile.json").write_text(json.dumps(data))
    t, _ = run(root, "doit")
    c = changed(before, mtimes(build))
    rows.append(("unread value changed", t, c, ""))
    checks.append(("an unread value rebuilds nothing", c == 0))

    before = mtimes(build)
    path = root / "tmpl/_ALL_/conf/t5.conf.j2"
    path.write_text(path.read_text() + "changed = 1\n")
    t, _ = run(root, "doit")
    c = changed(before, mtimes(build))
    rows.append(("one template changed", t, c, f"no-op + {t - noop:.2f} s"))
    checks.append((f"one template rebuilds its {n} outputs", c == n))

    before = mtimes(build)
    t, _ = run(root, "doit")
    rows.append(("no-op again", t, changed(before, mtimes(build)), ""))

    t, proc = run(root, "facsimile.cli", "plan")
    rows.append(("facs plan (nothing stale)", t, 0, f"{t / noop:.2f}x the no-op build"))
    checks.append(("plan agrees: nothing stale", proc.returncode == 0))
    t, _ = run(root, "doit", "list", "--all", "--status")
    rows.append(("doit list --all --status", t, 0, ""))

    print(f"\nfacsimile build benchmark: {n} instances x {m} templates = {n * m} outputs"
          f" of {5 + args.body} lines,"
          f" {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(f"plain Jinja2 loop (render + write all once): {base:.2f} s")
    print(f"doit alone, {n * m} tasks doing nothing: run all {floor_full:.2f} s "
          f"({floor_full / base:.2f}x), no-op {floor_noop:.2f} s ({floor_noop / base:.2f}x)\n")
    print(f"{'scenario':<28} {'seconds':>8} {'x loop':>7} {'rebuilt':>8}  note")
    for name, secs, rebuilt, note in rows:
        print(f"{name:<28} {secs:>8.2f} {secs / base:>7.2f} {rebuilt:>8}  {note}")
    print()
    for name, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    if args.profile:
        prof = work / "noop.prof"
        subprocess.run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "doit"],
                       cwd=root, capture_output=True, check=True)
        import pstats

        pstats.Stats(str(prof)).sort_stats("tottime").print_stats(30)
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
