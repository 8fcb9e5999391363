"""The ``facs`` command line itself: a command group given no action."""

from __future__ import annotations

from pathlib import Path

from conftest import facs


def test_state_without_an_action_prints_its_own_usage(tmp_path: Path) -> None:
    proc = facs(tmp_path, "state")
    assert proc.returncode == 1
    assert proc.stdout.startswith("usage: facs state ")
    assert "rotate" in proc.stdout and "facs init" not in proc.stdout


def test_facs_without_a_command_prints_the_usage(tmp_path: Path) -> None:
    proc = facs(tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.startswith("usage: facs ") and "COMMAND" in proc.stdout
