"""facsimile: exact copies of an environment's configuration for every instance."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (
    BuildError,
    DefinitionError,
    FacsimileError,
    StateError,
    SyncError,
    TemplateError,
)

TYPE_CHECKING = False  # typing itself is not imported: a no-op needs nothing of it
if TYPE_CHECKING:
    from typing import Any

    from .project import Project


def __getattr__(name: str) -> Any:
    """``facsimile.Project``, imported when first asked for: ``facs`` and ``doit``
    answer a no-op (:mod:`facsimile.noop`) without loading the project machinery."""
    if name == "Project":
        from .project import Project

        return Project
    raise AttributeError(f"module 'facsimile' has no attribute {name!r}")

__all__ = [
    "BuildError",
    "DefinitionError",
    "FacsimileError",
    "Project",
    "StateError",
    "SyncError",
    "TemplateError",
    "__version__",
]
