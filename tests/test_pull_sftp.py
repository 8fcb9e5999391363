"""facs publish to an sftp:// store on a real OpenSSH sshd (127.0.0.1), and a host's
facs pull from it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pullworld import World, tree
from servers import sshd  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


def test_publish_to_sftp_and_pull_from_it(tmp_path: Path, sshd) -> None:  # noqa: F811
    world = World(tmp_path)  # published to a folder first: the same build
    url = f"sftp://{sshd.user}@127.0.0.1:{sshd.port}{tmp_path}/sftp-store"
    ssh = ("--ssh-key", str(sshd.key), "--known-hosts", str(sshd.known_hosts))
    out = world.publish("--no-build", *ssh, store=url)  # type: ignore[arg-type]
    assert "publish prod: serial 1, 3 manifest(s)" in out
    store = tmp_path / "sftp-store"
    assert json.loads((store / "prod/app/manifest.json").read_text())["signature"]
    assert not list(store.rglob("*.facsimile-tmp")) and not (store / ".facsimile/lock").exists()
    proc = subprocess.run(
        [sys.executable, "-m", "facsimile.cli", "pull", "--from", url, *ssh,
         "--instance", "prod", "--target", "app", "--host", "a2", "--key", world.public,
         "--dest", str(tmp_path / "a2"), "--identity", str(world.a2_key)],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "pull prod/app (a2): serial 1: 4 put" in proc.stdout
    assert tree(tmp_path / "a2")["hosts/a2/node.conf"] == f"a2 {world.secret()}\n".encode()
