"""The health check after a pull, and putting the host back when it fails.

A manifest carries the instance's ``deploy.rollout.check`` commands (with
``check_timeout``), the check a staged sync runs on each host. A pull that
changed something runs them here, after ``postcmd``, with ``{host}``,
``{target}`` and ``{path}`` (the destination folder) filled in. While such a
pull applies its files, ``Undo`` keeps what it replaces: the old file
hard-linked beside it (``.<name>.facsimile-pull-old``), the old mode of a file
whose mode it fixes. A failed check puts every file back as it was, runs
``postcmd`` again (so services read the old files), and the host keeps its
earlier serial: the record remembers the failed manifest, which is not tried
again until a newer one is published.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping

from ..commands import check_failure, fill, run_shell

OLD = ".facsimile-pull-old"


class Undo:
    """What a pull replaced, deleted or chmodded, to put back."""

    def __init__(self) -> None:
        self.files: list[tuple[str, str | None]] = []  # (path, its old content's link)
        self.modes: list[tuple[str, int]] = []

    def keep(self, path: str) -> None:
        """Before ``path`` is replaced or deleted: keep its content (a hard link)."""
        old = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}{OLD}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(old)
        try:
            os.link(path, old)
        except FileNotFoundError:
            self.files.append((path, None))  # new: putting back is removing it
            return
        self.files.append((path, old))

    def keep_mode(self, path: str) -> None:
        """Before the mode of ``path`` is changed: keep the old one."""
        self.modes.append((path, os.lstat(path).st_mode & 0o7777))

    def restore(self) -> None:
        """Put every file and mode back as it was before the pull."""
        for path, old in reversed(self.files):
            if old is None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            else:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.replace(old, path)
        for path, mode in self.modes:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(path, mode)
        self.files, self.modes = [], []

    def drop(self) -> None:
        """The pull holds: forget the old contents."""
        for _, old in self.files:
            if old is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(old)
        self.files, self.modes = [], []


def run_checks(commands: list[str], timeout: float, values: Mapping[str, str],
               out: Callable[[str], None]) -> str | None:
    """Run each check with ``values`` filled in; why the first one failed, or None."""
    for template in commands:
        try:
            ran = run_shell(fill(template, dict(values)), timeout)
            code, text = ran.code, ran.output
        except OSError as exc:
            code, text = 127, str(exc)
        for line in text.splitlines():
            out(f"  check: {line}")
        failed = check_failure(template, code, text)
        if failed:
            return failed
    return None
