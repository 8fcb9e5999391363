"""facsimile: exact copies of an environment's configuration for every instance."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    BuildError,
    DefinitionError,
    FacsimileError,
    StateError,
    SyncError,
    TemplateError,
)
from .project import Project  # noqa: E402

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
