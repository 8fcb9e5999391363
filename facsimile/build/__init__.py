"""The build, without doit: which outputs an instance has (:mod:`.outputs`),
what each was made from (:mod:`.record`), the contexts and digests of one run
(:mod:`.digests`), why an output is stale (:mod:`.check`), making one output
(:mod:`.make`) and files no output makes (:mod:`.orphans`).

:class:`Build` is one run's session: it makes those parts once and hands out
their methods. :mod:`facsimile.tasks` turns it into doit tasks;
:mod:`facsimile.plan` reports its check.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import define as D
from ..define.root import shown_path
from ..errors import BuildError
from ..project import Project
from ..render import LayerIndex
from .check import DB_FILE, Checker
from .digests import Digests
from .make import Maker, os_error
from .orphans import orphans, remove_output
from .outputs import Output, Outputs
from .record import Record

__all__ = ["DB_FILE", "Build", "Output", "Record", "remove_output"]


class Build:
    """Everything one run needs, made once: the project, its layer index, and the
    outputs finder, digests, checker and maker sharing them.

    Their methods are bound here as attributes (``build.check`` is
    ``build.checker.check``): the check runs for every output, and a call
    through the session would be one more call each time.
    """

    def __init__(self, project: Project) -> None:
        self.project = project
        self.root: D.Root = project.root
        check_build_folder(self.root)
        self.index = LayerIndex(project.root.base)
        self.finder = Outputs(project, self.index)
        self.digests = Digests(project)
        self.checker = Checker(self.finder, self.digests, self.index)
        self.maker = Maker(self.finder, self.digests, self.index)
        f, d, c, m = self.finder, self.digests, self.checker, self.maker
        self.outputs = f.outputs
        self.search = f.search
        self.src = f.src
        self.out_str = f.out_str
        self.rel = f.rel
        self.state = d.state
        self.context = d.context
        self.key = d.key
        self.save_caches = d.save_caches
        self.check = c.check
        self.note_checked = c.note_checked
        self.use_db = c.use_db
        self.build_one = m.build_one

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickles as its root: a process rebuilds its own from the model cache."""
        return (_build_for_root, (str(self.project.root.base),))

    @property
    def env(self) -> Any:
        """The run's Jinja2 environment."""
        return self.maker.env

    def orphans(self, instance: str | None) -> list[Path]:
        """Files in ``BUILD/<instance>/`` (or of removed instances) that no output makes."""
        return orphans(self.project, self.finder, instance)

    def prune(self, instance: str | None) -> int:
        """Delete orphans and the folders they leave empty; returns how many."""
        build_dir = str(self.root.build)
        found = self.orphans(instance)
        for f in found:
            try:
                remove_output(str(f), build_dir)
            except OSError as exc:
                raise os_error(exc, self.root.base) from None
        return len(found)


def check_build_folder(root: D.Root) -> None:
    """``BUILD`` is a folder or not there yet: a file (or a link to one) in its
    place is one error naming it, before any output is tried (facsimile never
    removes what is outside ``BUILD/``)."""
    build = root.build
    if os.path.lexists(build) and not build.is_dir():
        raise BuildError("is a file, not a folder: move it away (outputs are built "
                         "below it)", file=shown_path(build, root.base))


def _build_for_root(root: str) -> Build:
    return Build(Project.load(root))


