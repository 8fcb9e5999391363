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
from .project import Project

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
