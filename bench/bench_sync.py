"""Benchmark sync over a real sshd on 127.0.0.1 against rsync, in the same run.

Makes a build of N small files (default 10,000), starts OpenSSH's sshd with a
generated key, and times facsimile's first sync and no-op sync beside
``rsync -a --checksum --delete`` over the same sshd to another folder.

Facsimile runs in this process, a host's connection kept from one sync to
the next; with ``--processes`` each of its syncs is a process of its own, its
whole wall time counted, connecting anew as each rsync does.

With ``--safety``, what pushing safely costs: N hosts (default 20) of 30
files, a no-op sync with ``deploy.rollout`` (three waves and a health check)
against one without, and a one-file change keeping generations
(``deploy.keep``) against one keeping none, taken in turn round after round;
the figures are the medians of the rounds' ratios (goals 1.1x and 1.2x).

With ``--hosts``, a fleet instead: one instance of 30 files on each of N hosts
(folders on the one sshd), synced by facsimile at each ``--jobs`` value (in a
child process, whose max RSS is printed) beside one rsync per host through
``xargs -P 8``, first sync, no-op and one file changed on every host.

With ``--latency MS``, both tools reach the sshd through a TCP proxy on
127.0.0.1 (``latency_proxy.py``) that adds MS of round trip (half each way,
and one round trip per new connection), as a network between sites would;
on loopback alone the CPU decides, over a network the round trips do.

    python bench/bench_sync.py [--files 10000] [--latency 50] [--rounds 3] [--processes]
    python bench/bench_sync.py --hosts 10,100,1000 [--jobs 8,16,32] [--latency 50]
    python bench/bench_sync.py --safety [--files 20] [--rounds 7]

Everything (the build, sshd's keys, every destination) goes in a temporary
folder: ``TMPDIR=/dev/shm`` puts it on tmpfs, where a slow or shared disk
does not decide the figures (it can swing rsync's first sync from 0.9 to 5 s).
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
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers import SSHServer, free_port, start_sshd, stop, wait_port

from facsimile.build.digests import JsonCache
from facsimile.define.rollout import parse_rollout
from facsimile.sync import sync_instance
from facsimile.sync.generations import Stamp


def make_build(build: Path, n: int) -> None:
    for i in range(n):
        p = build / f"etc/d{i % 100}/f{i}.conf"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"key_{i} = {i * 7919}\n" * 4)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def with_latency(work: Path, server: SSHServer, rtt_ms: float,
                 procs: list[subprocess.Popen]) -> SSHServer:
    """``server`` as seen through a proxy adding ``rtt_ms`` of round trip (its
    process appended to ``procs``); ``server`` itself when ``rtt_ms`` is 0."""
    if not rtt_ms:
        return server
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("latency_proxy.py")),
                             str(port), str(server.port), str(rtt_ms)],
                            stdout=subprocess.DEVNULL)
    procs.append(proc)
    wait_port(port, proc)
    known = work / "known_hosts_proxy"
    key = server.known_hosts.read_text().split(None, 1)[1]
    known.write_text(f"[127.0.0.1]:{port} {key}")
    return SSHServer(port, server.key, known, server.user)


def where(rtt_ms: float) -> str:
    return f"on 127.0.0.1 with {rtt_ms:g} ms round trip" if rtt_ms else "on 127.0.0.1"


def numbers(text: str) -> list[int]:
    """``"10,100"`` -> ``[10, 100]`` (an argparse type)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 10,100: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers: {text!r}")
    return values


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--hosts", type=numbers, help="fleet mode: host counts, e.g. 10,100,1000")
    ap.add_argument("--jobs", type=numbers, default=[8, 16, 32],
                    help="fleet mode: deploy.jobs values to time (default 8,16,32)")
    ap.add_argument("--safety", action="store_true", help="the cost of deploy.rollout and "
                    "deploy.keep (--files is then the number of hosts, default 20)")
    ap.add_argument("--rounds", type=int, help="rounds, the medians shown (default 7 in "
                    "safety mode, else 1); one host: each round to fresh destinations")
    ap.add_argument("--processes", action="store_true", help="one host: each facsimile "
                    "sync in a process of its own (its whole wall time), as rsync runs; else "
                    "in this one, a host's connection kept from one sync to the next")
    ap.add_argument("--rsync-parallel", type=int, default=RSYNC_PARALLEL, metavar="N",
                    help=f"fleet mode: rsyncs at once through xargs -P (default {RSYNC_PARALLEL})")
    ap.add_argument("--latency", type=float, default=0.0, metavar="MS",
                    help="round trip (ms) added between the tools and the sshd by a TCP proxy")
    args = ap.parse_args()
    if args.safety:
        return safety_main(20 if args.files == 10_000 else args.files, args.rounds or 7)
    args.rounds = args.rounds or 1
    if not shutil.which("rsync"):
        raise SystemExit("rsync is not installed (apt-get install rsync)")
    if args.hosts:
        globals()["RSYNC_PARALLEL"] = args.rsync_parallel  # rsync_fleet's and the header's
        return fleet_main(args.hosts, args.jobs, args.latency)
    work = Path(tempfile.mkdtemp(prefix="facs-sync-bench-"))
    proc, server = start_sshd(work)
    procs = [proc]
    try:
        server = with_latency(work, server, args.latency, procs)
        build = work / "BUILD/dev"
        make_build(build, args.files)
        deploy = server.deploy(str(work / "facs-dest"))

        (work / ".facsimile").mkdir()
        key = os.urandom(32)

        def facs_sync(host: str) -> None:  # with the digest cache of BUILD/ that `facs sync` keeps
            if args.processes:  # a process of its own, connecting anew, as rsync does
                facs_child({"root": str(work), "build": str(build), "deploy": deploy,
                            "hosts": [host], "cache": str(work / ".facsimile/scan-dev.json"),
                            "key": key.hex()})
                return
            cache = JsonCache(work / ".facsimile/scan-dev.json", lambda: key)
            code = sync_instance(instance="dev", project="bench", root=work, build_dir=build,
                                 deploy=deploy, targets={"app": {"hosts": [host]}},
                                 out=lambda s: None, scan_cache=cache)
            assert code == 0

        ssh = (f"ssh -p {server.port} -i {server.key} -o UserKnownHostsFile={server.known_hosts}"
               " -o StrictHostKeyChecking=yes -o BatchMode=yes")

        def rsync(dest: Path) -> None:
            subprocess.run(["rsync", "-a", "--checksum", "--delete", "-e", ssh, f"{build}/",
                            f"{server.user}@127.0.0.1:{dest}/"], check=True)

        names = ["first sync", "no-op sync", "no-op, digests kept", "one file changed"]
        got: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
        for r in range(args.rounds):  # each round a fresh destination for each tool
            host, dest = f"h{r + 1}", work / f"rsync-dest{r + 1}"
            dest.mkdir()
            for name in names:
                if name == "one file changed":
                    one = build / "etc/d1/f1.conf"
                    one.write_text(f"key_1 = {r}\n" + one.read_text())
                # the no-op reads BUILD/ and keeps digests; the next finds them kept
                got[name].append((timed(partial(facs_sync, host)), timed(partial(rsync, dest))))
        print(f"\nsync benchmark: {args.files} files over sshd {where(args.latency)}"
              + (", a process per facsimile sync" if args.processes else "")
              + (f", median of {args.rounds} rounds (ratio min-max)" if args.rounds > 1 else ""))
        print(f"{'scenario':<20} {'facsimile':>10} {'rsync':>8} {'ratio':>6}")
        for name in names:
            pairs = got[name]
            ratios = [f / r for f, r in pairs]
            spread = f"  ({min(ratios):.2f}-{max(ratios):.2f})" if len(pairs) > 1 else ""
            print(f"{name:<20} {statistics.median(f for f, _ in pairs):>9.2f}s "
                  f"{statistics.median(r for _, r in pairs):>7.2f}s "
                  f"{statistics.median(ratios):>6.2f}{spread}")
        same = subprocess.run(["diff", "-r", str(build), str(work / f"facs-dest/h{args.rounds}")],
                              capture_output=True, text=True)
        extra = [line for line in same.stdout.splitlines() if ".facsimile" not in line]
        print("PASS  destination equals the build" if not extra else
              f"FAIL  destination differs: {extra[:3]}")
        return 0 if not extra else 1
    finally:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(work, ignore_errors=True)


FLEET_FILES = 30
RSYNC_PARALLEL = 8
#: the child that runs one facsimile sync: prints its seconds; its exit code is the sync's
CHILD = """
import json, sys, time
from pathlib import Path
from facsimile.sync import sync_instance
a = json.loads(sys.argv[1])
def failures(line):  # a failed host's line and the summary, on stderr; nothing else
    if "fail" in line.lower():
        print(line, file=sys.stderr)
start = time.perf_counter()
cache = None
if a.get("cache"):
    from facsimile.build.digests import JsonCache
    key = bytes.fromhex(a["key"])
    cache = JsonCache(Path(a["cache"]), lambda: key)
code = sync_instance(instance="dev", project="bench", root=Path(a["root"]),
                     build_dir=Path(a["build"]), deploy=a["deploy"],
                     targets={"app": {"hosts": a["hosts"]}}, out=failures,
                     scan_cache=cache)
print(time.perf_counter() - start)
sys.exit(code)
"""


#: a child's environment: Python's bytecode cache on, as on a user's machine (a
#: machine that sets ``PYTHONDONTWRITEBYTECODE`` would compile facsimile's modules
#: from source in every child: 0.1 s of each ``--processes`` sync)
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def facs_child(args: dict) -> tuple[float, int]:
    """One facsimile sync in a child process: its seconds and its max RSS in kB."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)],
                            stdout=subprocess.PIPE, text=True, env=CHILD_ENV)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"facsimile sync exited {proc.returncode}")
    return float(out.strip().splitlines()[-1]), usage.ru_maxrss


def rsync_fleet(build: Path, dest: Path, hosts: list[str], server) -> float:
    """One ``rsync -a --checksum --delete`` per host, ``RSYNC_PARALLEL`` at once (xargs)."""
    ssh = (f"ssh -p {server.port} -i {server.key} -o UserKnownHostsFile={server.known_hosts}"
           " -o StrictHostKeyChecking=yes -o BatchMode=yes")
    dest.mkdir(exist_ok=True)
    start = time.perf_counter()
    subprocess.run(["xargs", "-P", str(RSYNC_PARALLEL), "-I", "{}", "rsync", "-a",
                    "--checksum", "--delete", "-e", ssh, f"{build}/",
                    f"{server.user}@127.0.0.1:{dest}/{{}}/"],
                   input="\n".join(hosts) + "\n", text=True, check=True)
    return time.perf_counter() - start


def fleet_run(work: Path, server, n: int, jobs: list[int]) -> list[tuple[str, list[float]]]:
    """The three scenarios for ``n`` hosts: per row, facsimile at each jobs value
    then rsync (seconds); prints each jobs value's max RSS."""
    build = work / f"BUILD-{n}/dev"
    make_build(build, FLEET_FILES)
    hosts = [f"h{i:04d}" for i in range(n)]
    rss: dict[int, int] = {}

    def facs(j: int) -> float:
        deploy = server.deploy(str(work / f"facs-{n}-j{j}"), jobs=j)
        seconds, kb = facs_child({"root": str(work), "build": str(build),
                                  "deploy": deploy, "hosts": hosts})
        rss[j] = max(rss.get(j, 0), kb)
        return seconds

    def row() -> list[float]:
        return [*(facs(j) for j in jobs), rsync_fleet(build, work / f"rsync-{n}", hosts, server)]

    rows = [("first sync", row()), ("no-op sync", row())]
    one = build / "etc/d1/f1.conf"
    one.write_text(one.read_text().replace("7919", "7920"))
    rows.append(("one file changed", row()))
    for j in jobs:
        print(f"  {n} hosts, jobs {j}: max RSS {rss[j] / 1024:.0f} MB")
    for j in jobs:
        check = subprocess.run(["diff", "-r", "-x", ".facsimile", str(build),
                                str(work / f"facs-{n}-j{j}" / hosts[-1])],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise SystemExit(f"FAIL  jobs {j}: {hosts[-1]} differs from the build")
    return rows


def fleet_main(counts: list[int], jobs: list[int], rtt_ms: float = 0.0) -> int:
    """``--hosts``: the fleet table for each host count, ratios against rsync."""
    work = Path(tempfile.mkdtemp(prefix="facs-fleet-bench-"))
    proc, server = start_sshd(work)
    procs = [proc]
    try:
        server = with_latency(work, server, rtt_ms, procs)
        head = "".join(f" {'jobs ' + str(j):>14}" for j in jobs)
        for n in counts:
            rows = fleet_run(work, server, n, jobs)
            print(f"\nfleet: {n} hosts x {FLEET_FILES} files, one sshd {where(rtt_ms)},"
                  f" (facsimile s and ratio to rsync -P {RSYNC_PARALLEL})")
            print(f"{'scenario':<18}{head} {'rsync -P ' + str(RSYNC_PARALLEL):>12}")
            for name, times in rows:
                r = times[-1]
                cells = "".join(f" {t:>7.2f}s {t / r:>5.2f}x" for t in times[:-1])
                print(f"{name:<18}{cells} {r:>11.2f}s")
            best = min(range(len(jobs)), key=lambda i: sum(t[i] for _, t in rows))
            print(f"best jobs for {n} hosts: {jobs[best]}")
        return 0
    finally:
        for p in reversed(procs):
            stop(p)
        shutil.rmtree(work, ignore_errors=True)


def safety_main(n: int, rounds: int) -> int:
    """``--safety``: the no-op with a rollout and the change keeping generations,
    each against the same sync without, in turn, on two sets of ``n`` hosts."""
    import statistics

    work = Path(tempfile.mkdtemp(prefix="facs-safety-bench-"))
    proc, server = start_sshd(work)
    try:
        build = work / "BUILD/dev"
        make_build(build, FLEET_FILES)
        hosts = [f"h{i:03d}" for i in range(n)]
        rollout = parse_rollout({"waves": [1, "10%", "100%"], "check": ["true"]})

        def run(folder: str, *, keep: bool, staged: bool) -> float:
            deploy = server.deploy(str(work / folder))
            start = time.perf_counter()
            code = sync_instance(instance="dev", project="bench", root=work, build_dir=build,
                                 deploy=deploy, targets={"app": {"hosts": hosts}},
                                 out=lambda s: None, keep=Stamp(3) if keep else None,
                                 rollout=rollout if staged else None)
            assert code == 0
            return time.perf_counter() - start

        run("plain", keep=False, staged=False)
        run("safe", keep=True, staged=True)
        noop, change = [], []
        for i in range(rounds):
            pair = [run("plain", keep=True, staged=False), run("safe", keep=True, staged=True)]
            noop.append(pair[1] / pair[0])
            one = build / "etc/d1/f1.conf"
            one.write_text(f"round {i}\n")
            plain = run("plain", keep=False, staged=False)
            kept = run("safe", keep=True, staged=False)
            change.append(kept / plain)
        print(f"\npushing safely: {n} hosts x {FLEET_FILES} files over sshd on 127.0.0.1, "
              f"{rounds} rounds (median of the rounds' ratios, min-max)")
        for name, ratios, goal in (("no-op with rollout / without", noop, 1.1),
                                   ("one change keeping 3 generations / none", change, 1.2)):
            med = statistics.median(ratios)
            print(f"{name:<42} {med:>5.2f}x  ({min(ratios):.2f}-{max(ratios):.2f}) "
                  f"goal <= {goal}x: {'met' if med <= goal else 'NOT met'}")
        return 0
    finally:
        stop(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
