"""Importing the SSH stack prints nothing on stderr (facsimile.sshlib)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("sshfs")


def _stderr(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=True).stderr


def test_the_ssh_stack_imports_without_dsa_warnings() -> None:
    if "DSA is deprecated" not in _stderr("import sshfs"):
        pytest.skip("this cryptography does not warn about asyncssh's DSA names")
    assert _stderr("from facsimile.sshlib import ssh_filesystem; ssh_filesystem()") == ""


def test_other_warnings_still_show() -> None:
    err = _stderr("from facsimile.sshlib import ssh_filesystem; ssh_filesystem()\n"
                  "import warnings; warnings.warn('something else')")
    assert "UserWarning: something else" in err
