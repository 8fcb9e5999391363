"""The third stage: the loaded project, from resolved definitions and state.

:mod:`.core` holds :class:`Project` (instances, modules, state access,
template contexts), :mod:`.cache` the model cache, :mod:`.override` the
loading of a project class named in ``facsimile.json``, and
:mod:`.daemons` the service instances of modules.
"""

from __future__ import annotations

from .core import Project
from .daemons import daemons

__all__ = ["Project", "daemons"]
