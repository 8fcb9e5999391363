"""Running a user's shell command with a timeout: an output check
(``validate``), a host's health check run here (``deploy.rollout.check`` for a
folder or S3 destination, and on a host that pulls). Standard library only:
a pulling host imports it too."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

TIMED_OUT = 124  # the status a timed-out command is given (as timeout(1) gives it)


@dataclass(frozen=True)
class Ran:
    """How a command ended: its exit status (negative: killed by that signal;
    ``TIMED_OUT`` past its timeout), what it printed (stdout and stderr
    together), and whether it ran past its timeout."""

    code: int
    output: str
    timed_out: bool = False


def run_shell(cmd: str, timeout: float, cwd: str | Path | None = None) -> Ran:
    """Run ``cmd`` through the shell with no input; past ``timeout`` seconds its
    whole process group is killed. An ``OSError`` when it cannot start."""
    proc = subprocess.Popen(cmd, shell=True, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        return Ran(TIMED_OUT, _kill(proc).decode("utf-8", "replace"), True)
    except BaseException:
        _kill(proc)
        raise
    return Ran(proc.returncode, (out or b"").decode("utf-8", "replace"))


def _kill(proc: subprocess.Popen[bytes]) -> bytes:
    """Kill a command's whole process group; what it printed by then."""
    with contextlib.suppress(OSError):
        if os.name == "nt":
            proc.kill()
        else:
            os.killpg(proc.pid, signal.SIGKILL)
    try:
        out, _ = proc.communicate(timeout=2)
    except subprocess.TimeoutExpired:  # a child left the group and holds the pipe
        if proc.stdout is not None:
            proc.stdout.close()
        proc.wait()
        out = b""
    return out or b""


def fill(template: str, values: dict[str, str]) -> str:
    """``template`` with each ``{key}`` of ``values`` replaced (other braces kept,
    for the shell's ``${VAR}`` and awk's ``{print}``)."""
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def check_failure(template: str, code: int, output: str) -> str | None:
    """Why a health check ``template`` that ended with ``code`` failed (its last
    line of output), None when it passed."""
    if code == 0:
        return None
    lines = output.splitlines()
    why = "ran past its timeout" if code == TIMED_OUT else f"exited {code}"
    return f"health check {template!r} {why}" + (f": {lines[-1].strip()}" if lines else "")
