"""Shared test helpers: write a file tree from a dict, run facs and doit for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def write_tree(base: Path, tree: Mapping[str, Any]) -> None:
    """Write ``{"define/x.json": {...}, "tmpl/_ALL_/a.j2": "text"}`` below ``base``.

    Dicts and lists become JSON; strings are written as they are.
    """
    for rel, content in tree.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, (dict, list)):
            path.write_text(json.dumps(content, indent=2) + "\n")
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def run(cmd: list[str], cwd: Path, check: bool = False, env: Mapping[str, str] | None = None,
        **kw: Any) -> subprocess.CompletedProcess:
    """Run ``cmd`` in ``cwd``; ``env``: variables to set on top of this process's."""
    env = {**os.environ, **(env or {})}
    env.pop("DOIT_CONFIG", None)
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=300, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


def facs(root: Path, *args: str, check: bool = False) -> subprocess.CompletedProcess:
    """Run the real ``facs`` command in ``root``."""
    return run([sys.executable, "-m", "facsimile.cli", *args], cwd=root, check=check)


def doit(root: Path, *args: str, check: bool = False,
         env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real ``doit`` in ``root`` (which has the one-line dodo.py)."""
    return run([sys.executable, "-m", "doit", *args], cwd=root, check=check, env=env)


DODO = "from facsimile.dodo import *  # noqa: F403\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty facsimile root: a project file and the one-line dodo.py."""
    write_tree(tmp_path, {"define/facsimile.json": {"name": "demo"}, "dodo.py": DODO})
    return tmp_path


def mtimes(folder: Path) -> dict[str, int]:
    """``{relpath: mtime_ns}`` of every file below ``folder``."""
    return {
        p.relative_to(folder).as_posix(): p.stat().st_mtime_ns
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """``{relpath: (mtime_ns, bytes)}`` of every file below ``folder``."""
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }



#: The fixtures that start a server or a cluster (tests/servers.py, tests/daskcluster.py),
#: and the destination kinds a parametrized test takes them for by name
#: (``request.getfixturevalue``): a test that uses one is out of the quick subset.
SERVER_FIXTURES = frozenset({"sshd", "s3server", "dask_cluster"})
SERVER_KINDS = frozenset({"sftp", "sftp-tar", "s3"})


def uses_a_server(item: pytest.Item) -> bool:
    """Whether ``item`` asks for a server fixture, or is the parameter of a
    server-backed destination kind."""
    if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec else ()
    return any(isinstance(v, str) and v in SERVER_KINDS for v in params)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that uses a server: the quick subset (``-m "not
    slow"``) is every test that starts no sshd, S3 server or dask cluster and is
    not marked slow by hand."""
    for item in items:
        if uses_a_server(item):
            item.add_marker(pytest.mark.slow)

