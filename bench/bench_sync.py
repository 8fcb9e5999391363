"""Benchmark sync over a real sshd on 127.0.0.1 against rsync, in the same run.

Makes a build of N small files (default 10,000), starts OpenSSH's sshd with a
generated key, and times facsimile's first sync and no-op sync beside
``rsync -a --checksum --delete`` over the same sshd to another folder.

    python bench/bench_sync.py [--files 10000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers import start_sshd, stop

from facsimile.sync import sync_instance


def make_build(build: Path, n: int) -> None:
    for i in range(n):
        p = build / f"etc/d{i % 100}/f{i}.conf"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"key_{i} = {i * 7919}\n" * 4)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=10_000)
    args = ap.parse_args()
    if not shutil.which("rsync"):
        raise SystemExit("rsync is not installed (apt-get install rsync)")
    work = Path(tempfile.mkdtemp(prefix="facs-sync-bench-"))
    proc, server = start_sshd(work)
    try:
        build = work / "BUILD/dev"
        make_build(build, args.files)
        deploy = server.deploy(str(work / "facs-dest"))

        def facs_sync() -> None:
            code = sync_instance(instance="dev", project="bench", root=work, build_dir=build,
                                 deploy=deploy, targets={"app": {"hosts": ["h1"]}},
                                 out=lambda s: None)
            assert code == 0

        ssh = (f"ssh -p {server.port} -i {server.key} -o UserKnownHostsFile={server.known_hosts}"
               " -o StrictHostKeyChecking=yes -o BatchMode=yes")
        (work / "rsync-dest").mkdir()

        def rsync() -> None:
            subprocess.run(["rsync", "-a", "--checksum", "--delete", "-e", ssh, f"{build}/",
                            f"{server.user}@127.0.0.1:{work / 'rsync-dest'}/"], check=True)

        rows = [
            ("first sync", timed(facs_sync), timed(rsync)),
            ("no-op sync", timed(facs_sync), timed(rsync)),
        ]
        one = build / "etc/d1/f1.conf"
        one.write_text(one.read_text().replace("7919", "7920"))
        rows.append(("one file changed", timed(facs_sync), timed(rsync)))
        print(f"\nsync benchmark: {args.files} files over sshd on 127.0.0.1")
        print(f"{'scenario':<20} {'facsimile':>10} {'rsync':>8} {'ratio':>6}")
        for name, f, r in rows:
            print(f"{name:<20} {f:>9.2f}s {r:>7.2f}s {f / r:>6.2f}")
        same = subprocess.run(["diff", "-r", str(build), str(work / "facs-dest/h1")],
                              capture_output=True, text=True)
        extra = [line for line in same.stdout.splitlines() if ".facsimile" not in line]
        print("PASS  destination equals the build" if not extra else
              f"FAIL  destination differs: {extra[:3]}")
        return 0 if not extra else 1
    finally:
        stop(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
