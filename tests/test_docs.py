"""The docs cannot lie: every ``console`` block of the README and docs/pages runs for real.

A fenced block whose info string is ``console`` is a scenario step: a line starting with
``$ `` is a command (run by bash in a fresh copy of the worked example, ``facs`` and ``doit``
on PATH), the lines after it until the next ``$ `` are what it prints (stdout and stderr
together). ``...`` on a line of its own stands for any number of lines, ``<ANY>`` in a line
for any characters (a random key, a temporary path); no lines after a command means its
output is not compared. A command ends with ``# exit N`` (or ``# exit N: why``) when it is
meant to exit N; otherwise it must exit 0. The blocks of one file run in page order in one
copy. ``python tests/test_docs.py FILE`` prints what each command of FILE prints now.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: what a fresh copy of the worked example is made of
EXAMPLE = ("define", "tmpl", "extra", "bench", "dodo.py")
EXIT = re.compile(r"#\s*exit\s+(\d+)(?::[^#]*)?$")
ELLIPSIS = "..."
ANY = "<ANY>"
#: a page of more commands than this is marked slow (each costs ~0.15 s of CPU, mostly
#: Python starting facs or doit)
QUICK_COMMANDS = 20


@dataclass
class Command:
    """One ``$ `` line of a console block, with the output the page shows for it."""

    line: int  # 1-based line of the command in its file
    text: str
    exit: int = 0
    expected: list[str] = field(default_factory=list)


def commands(text: str) -> list[Command]:
    """Every command of every ``console`` block of ``text``, in page order."""
    found: list[Command] = []
    inside = False
    first = 0  # index in ``found`` of the current block's first command
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not inside:
            inside, first = line.strip() == "```console", len(found)
            continue
        if line.strip().startswith("```"):
            inside = False
        elif line.startswith("$ "):
            code = EXIT.search(line)
            found.append(Command(number, line[2:], int(code.group(1)) if code else 0))
        elif len(found) > first:
            found[-1].expected.append(line)
        else:
            raise ValueError(f"line {number}: output before the block's first command")
    return found


def same_line(want: str, got: str) -> bool:
    """Whether ``got`` is ``want``, each ``<ANY>`` in ``want`` matching any characters."""
    if ANY not in want:
        return want == got
    return re.fullmatch(".*".join(map(re.escape, want.split(ANY))), got) is not None


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether ``actual`` is ``expected``, each ``...`` line matching any run of lines."""
    def trim(lines: list[str]) -> list[str]:
        lines = [x.rstrip() for x in lines]
        while lines and not lines[-1]:
            lines.pop()
        return lines

    want, got = trim(expected), trim(actual)
    # classic glob matching over lines, '...' as '*'
    w = g = 0
    star, mark = -1, 0
    while g < len(got):
        if w < len(want) and want[w] == ELLIPSIS:
            star, mark, w = w, g, w + 1
        elif w < len(want) and same_line(want[w], got[g]):
            w, g = w + 1, g + 1
        elif star >= 0:
            w, mark = star + 1, mark + 1
            g = mark
        else:
            return False
    return all(x == ELLIPSIS for x in want[w:])


def fresh_example(dest: Path) -> Path:
    """A copy of the repository's worked example in ``dest``, never built."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in EXAMPLE:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def environment(home: Path) -> dict[str, str]:
    """This Python's scripts first on PATH, unbuffered output, no user settings (an empty
    ``HOME``; the user's site-packages still found, for a ``pip install --user``)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FACSIMILE_", "DOIT_"))
           and k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
    scripts = [str(Path(sys.executable).parent), sysconfig.get_path("scripts"),
               os.path.join(site.getuserbase(), "bin")]
    env.update(PATH=os.pathsep.join([*scripts, env.get("PATH", "")]), PYTHONUNBUFFERED="1",
               PYTHONUSERBASE=site.getuserbase(), HOME=str(home), LC_ALL="C.UTF-8",
               COLUMNS="100", NO_COLOR="1")
    return env


def run(cmd: Command, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run one command with bash, stdout and stderr in one stream as a terminal shows them."""
    return subprocess.run(["bash", "-c", cmd.text], cwd=cwd, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)


def pages() -> list[Path]:
    """The README and every docs page that has a console block."""
    files = [REPO / "README.md", *sorted((REPO / "docs" / "pages").glob("*.md"))]
    return [p for p in files if "```console" in p.read_text()]


def check(page: Path, where: Path) -> None:
    """Run every command of ``page`` in a fresh copy below ``where``; fail on the first lie."""
    root = fresh_example(where / "root")
    env = environment(where / "home")
    rel = page.relative_to(REPO)
    for cmd in commands(page.read_text()):
        proc = run(cmd, root, env)
        got = proc.stdout.splitlines()
        if proc.returncode != cmd.exit:
            pytest.fail(f"{rel}:{cmd.line}: `{cmd.text}` exited {proc.returncode}, "
                        f"the page says {cmd.exit}; it printed:\n{proc.stdout}", pytrace=False)
        if cmd.expected and not matches(cmd.expected, got):
            pytest.fail(f"{rel}:{cmd.line}: `{cmd.text}` printed something else.\n"
                        "--- the page shows:\n" + "\n".join(cmd.expected) +
                        "\n--- it printed:\n" + proc.stdout, pytrace=False)


def scenarios() -> list:
    """Each page a test; a page of more than :data:`QUICK_COMMANDS` commands is marked
    slow (CI runs it; the quick subset keeps the README's walk and the shorter pages)."""
    return [pytest.param(page, id=page.relative_to(REPO).as_posix(),
                         marks=[pytest.mark.slow]
                         if len(commands(page.read_text())) > QUICK_COMMANDS else [])
            for page in pages()]


@pytest.mark.parametrize("page", scenarios())
def test_every_console_block_runs_and_prints_what_the_page_shows(page: Path,
                                                                  tmp_path: Path) -> None:
    check(page, tmp_path)


def test_there_is_a_runnable_walk_and_twenty_commands_in_all() -> None:
    walk = commands((REPO / "README.md").read_text())
    assert len(walk) >= 10
    assert sum(len(commands(p.read_text())) for p in pages()) >= 20


def test_the_matcher_takes_ellipsis_for_any_lines_and_nothing_else() -> None:
    assert matches(["a", "...", "d"], ["a", "b", "c", "d"])
    assert matches(["a", "...", "b"], ["a", "b"])
    assert matches(["...", "x"], ["x", "y", "x"])
    assert not matches(["a", "d"], ["a", "b", "d"])
    assert not matches(["a", "...", "d"], ["a", "b", "c"])
    assert not matches(["a b"], ["a  b"])
    assert matches(["key: <ANY> (sealed)"], ["key: age1xyz (sealed)"])
    assert not matches(["key: <ANY> (sealed)"], ["key: age1xyz (plain)"])
    cmds = commands("```console\n$ facs plan  # exit 2\nx\n...\n$ doit\n```\n```sh\n$ no\n```\n"
                    "```console\n$ a # exit 1: it fails\n$ b # exit 3 # no\n```\n")
    assert [(c.text, c.exit, c.expected) for c in cmds] == [
        ("facs plan  # exit 2", 2, ["x", "..."]), ("doit", 0, []),
        ("a # exit 1: it fails", 1, []), ("b # exit 3 # no", 0, [])]


def main(argv: list[str]) -> int:
    """Print the transcript of a page as it runs now, to write its blocks from."""
    import tempfile
    for name in argv:
        page = Path(name).resolve()
        with tempfile.TemporaryDirectory() as tmp:
            root = fresh_example(Path(tmp) / "root")
            env = environment(Path(tmp) / "home")
            for cmd in commands(page.read_text()):
                proc = run(cmd, root, env)
                note = "" if proc.returncode == cmd.exit else f"   <-- exit {proc.returncode}"
                print(f"$ {cmd.text}{note}\n{proc.stdout}", end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
