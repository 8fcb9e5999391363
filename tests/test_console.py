"""What a build prints for its operator, under a pseudo-terminal and without one:
the progress line, -q and -v, the true summary, a repeated failure once, Ctrl-C,
and ``doit info`` in words."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DODO, doit, facs, write_tree

SLOW = '''
import time

import facsimile


class Slow(facsimile.Project):
    def extra_context(self, inst):
        return {"nap": lambda: time.sleep(0.05) or ""}
'''


def tree(instances: int, templates: int = 2, slow: bool = False) -> dict[str, object]:
    project: dict[str, object] = {"name": "console"}
    t: dict[str, object] = {"dodo.py": DODO}
    if slow:
        project["class"] = "slow:Slow"
        t["slow.py"] = SLOW
    t["define/facsimile.json"] = project
    for i in range(instances):
        t[f"define/i{i:03}.json"] = {"n": i}
    for j in range(templates):
        nap = "{{ nap() }}" if slow else ""
        t[f"tmpl/_ALL_/t{j}.conf.j2"] = f"t{j} {{{{ instance.n }}}}{nap}\n"
    return t


def under_pty(cmd: list[str], cwd: Path, env: dict[str, str] | None = None,
              interrupt_after: float | None = None,
              answer: tuple[bytes, bytes] | None = None,
              interrupt_on: bytes | None = None) -> tuple[int, str]:
    """Run ``cmd`` with stdin, stdout and stderr on a pseudo-terminal; returns its exit
    code and everything it printed. ``interrupt_after``: SIGINT to its process group
    then. ``answer``: (question, reply): type the reply once the question is printed.
    ``interrupt_on``: a pattern; SIGINT to the process group once the output matches it."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, cwd=cwd, stdin=slave, stdout=slave, stderr=slave,
                            env={**os.environ, **(env or {})}, start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    start = time.monotonic()
    sent = False
    while True:
        due = interrupt_after is not None and time.monotonic() - start > interrupt_after
        seen = interrupt_on is not None and re.search(interrupt_on, b"".join(chunks))
        if not sent and (due or seen):
            os.killpg(proc.pid, signal.SIGINT)
            sent = True
        ready, _, _ = select.select([master], [], [], 0.05)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                data = b""
            if not data:
                break
            chunks.append(data)
            if answer is not None and answer[0] in b"".join(chunks):
                os.write(master, answer[1] + b"\n")
                answer = None
        elif proc.poll() is not None:
            break
        if time.monotonic() - start > 240:
            proc.kill()
            break
    code = proc.wait()
    os.close(master)
    return code, b"".join(chunks).decode(errors="replace")


def doit_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "doit", *args]


@pytest.mark.slow
def test_a_long_build_on_a_terminal_shows_one_live_line(tmp_path: Path) -> None:
    write_tree(tmp_path, tree(20, slow=True))
    code, text = under_pty(doit_cmd(), tmp_path, env={"FACSIMILE_JOBS": "1"})
    assert code == 0, text
    assert re.search(r"\rfacsimile: \d+/40 outputs, \d+/s", text)
    assert ".  build:" not in text  # on a terminal, the live line instead of 40 lines
    assert "facsimile: 40 built, 0 up to date" in text


@pytest.mark.slow
def test_off_a_terminal_a_line_per_output_and_no_progress(tmp_path: Path) -> None:
    write_tree(tmp_path, tree(20, slow=True))
    proc = doit(tmp_path, check=True, env={"FACSIMILE_JOBS": "1"})
    assert proc.stdout.count(".  build:") == 40
    assert "\r" not in proc.stdout + proc.stderr and "outputs," not in proc.stderr


def test_quiet_and_verbose(tmp_path: Path) -> None:
    write_tree(tmp_path, tree(3))
    proc = facs(tmp_path, "build", "-q", check=True)
    assert proc.stdout == "facsimile: 6 built, 0 up to date\n"
    (tmp_path / "tmpl/_ALL_/t1.conf.j2").write_text("changed {{ instance.n }}\n")
    proc = facs(tmp_path, "build", "-v", check=True)
    assert ".  build:i000/t1.conf  (template changed: tmpl/_ALL_/t1.conf.j2)" in proc.stdout
    assert "facsimile: 3 built, 3 up to date" in proc.stdout
    (tmp_path / "tmpl/_ALL_/t1.conf.j2").write_text("again {{ instance.n }}\n")
    proc = doit(tmp_path, "-v", "0", check=True)
    assert proc.stdout == "facsimile: 3 built, 3 up to date\n"


def test_the_summary_counts_deleted_and_failed(tmp_path: Path) -> None:
    write_tree(tmp_path, tree(3))
    doit(tmp_path, check=True)
    (tmp_path / "tmpl/_ALL_/t0.conf.j2").unlink()  # 3 orphans
    write_tree(tmp_path, {"tmpl/_ALL_/t1.conf.j2": "{{ instance.nope }}\n",
                          "tmpl/_ALL_/t2.conf.j2": "new\n"})
    proc = doit(tmp_path)
    assert proc.returncode == 1
    assert "facsimile: 3 built, 3 deleted, 3 failed, 0 up to date" in proc.stdout


def test_a_shared_template_error_is_printed_once(tmp_path: Path) -> None:
    write_tree(tmp_path, tree(30))
    doit(tmp_path, check=True)
    write_tree(tmp_path, {"tmpl/_ALL_/t1.conf.j2": "x\n{{ instance.nope }}\n"})
    proc = doit(tmp_path)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert text.count("instance.nope") == 1, text
    assert "build:i000/t1.conf: tmpl/_ALL_/t1.conf.j2:2" in text
    assert "and 29 more outputs in 29 instances (-v lists them)" in text
    assert "TaskFailed" not in text and "<stdout>" not in text and "####" not in text
    assert ".  build:" not in text
    assert "facsimile: 0 built, 30 failed, 30 up to date" in text
    proc = facs(tmp_path, "build", "-v")
    assert proc.returncode == 1 and "    build:i029/t1.conf" in proc.stdout


@pytest.mark.slow
def test_ctrl_c_saves_what_was_made(tmp_path: Path) -> None:
    write_tree(tmp_path, tree(40, slow=True))
    # interrupted once the live line says some outputs are made (not after a fixed
    # time: on a loaded machine the first output may come later than that)
    code, text = under_pty(doit_cmd(), tmp_path, interrupt_on=rb"facsimile: [1-9]\d*/80 outputs")
    assert code == 130, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    m = re.search(r"facsimile: interrupted: (\d+) built.*\(saved\); (\d+) not made yet", text)
    assert m, text
    built, left = int(m[1]), int(m[2])
    assert built > 0 and built + left == 80
    assert not [p for p in tmp_path.rglob("*.tmp")]
    plan = facs(tmp_path, "plan")
    assert plan.returncode == 2
    stale = {line.split()[0] for line in plan.stdout.splitlines() if "/t" in line}
    assert len(stale) == left, plan.stdout
    proc = doit(tmp_path, check=True)
    assert f"facsimile: {left} built, {built} up to date" in proc.stdout


def test_doit_info_in_words(tmp_path: Path) -> None:
    write_tree(tmp_path, tree(1))
    write_tree(tmp_path, {"define/modules.json": [{"name": "app"}],
                          "tmpl/_lib/head.inc": "# {{ instance.name }}\n",
                          "tmpl/_ALL_/t0.conf.j2":
                          "{% include 'head.inc' %}{{ instance.n }} "
                          "{{ module.app.password }}\n"})
    doit(tmp_path, check=True)
    (tmp_path / "tmpl/_ALL_/t0.conf.j2").write_text(
        "{% include 'head.inc' %}{{ instance.n }} {{ module.app.password }}!\n")
    out = doit(tmp_path, "info", "build:i000/t0.conf").stdout
    assert "stale: template changed: tmpl/_ALL_/t0.conf.j2" in out
    assert "<function" not in out
    assert "made from tmpl/_ALL_/t0.conf.j2" in out and "'tmpl/_lib/head.inc'" in out
    assert re.search(r"'values read': \[[^]]*'instance.n'", out), out
    assert re.search(r"'state entries read \(names only\)': \[\s*'module.app.password'", out)
    password = (tmp_path / "BUILD/i000/t0.conf").read_text().split()[-1]
    assert password not in out
