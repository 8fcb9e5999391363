"""What every ``facs`` command shares: loading the project that ``--root``
names (or that is found above the working directory), and printing a line
flushed at once (output interleaves with doit's and the hosts')."""

from __future__ import annotations

import argparse

from ..project import Project


def load_project(args: argparse.Namespace) -> Project:
    """The project of ``--root``, or the nearest root above the working directory."""
    return Project.load(args.root)


def out(text: str = "") -> None:
    """Print one line to stdout, flushed."""
    print(text, flush=True)
