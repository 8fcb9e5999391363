"""Orphans: files in ``BUILD/`` that no output makes (an output whose template
was removed or renamed, an instance that was removed), and their removal."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..project import Project
from ..render import walk
from .outputs import Outputs


def orphans(project: Project, outputs: Outputs, instance: str | None) -> list[Path]:
    """Files in ``BUILD/<instance>/`` (or of removed instances) that no output makes."""
    build = project.root.build
    if instance is None:
        if not build.is_dir():
            return []
        gone = [p for p in build.iterdir() if p.name not in project.instances]
        return sorted(f for p in gone
                      for f in (_files_under(p) if _real_dir(p) else [p]))
    keep = set(outputs.outputs(project.instances[instance]))
    base = build / instance
    if base.is_symlink():  # a link where the instance's folder goes: removed as a link
        return [base]
    return sorted(base / rel for rel, _ in walk(base) if rel not in keep)


def remove_output(path: str, build_dir: str) -> None:
    """Remove a file of BUILD/ and the folders it leaves empty (orphans, ``doit clean``)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    parent = os.path.dirname(path)
    while parent.startswith(build_dir + os.sep) and parent != build_dir:
        try:
            os.rmdir(parent)  # only when empty
        except OSError:
            break
        parent = os.path.dirname(parent)


def _real_dir(path: Path) -> bool:
    """A folder, not a link to one (a link is never followed in BUILD/)."""
    return path.is_dir() and not path.is_symlink()


def _files_under(folder: Path) -> list[Path]:
    return [folder / rel for rel, _ in walk(folder)]
