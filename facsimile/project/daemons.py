"""Daemons: the service instances a module runs, and their uiids.

A module with ``service`` runs ``service.n_instances`` daemons named
``<module>d.0``, ``<module>d.1``, ... (``service.name`` replaces
``<module>d``); each has a uiid, an ``id`` kept in the family's state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import DefinitionError
from ..state import State


def daemons(modules: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """``(daemon name, module)`` for each daemon instance: ``service.n_instances``
    copies named ``<module>d.0`` ... (``service.name`` replaces ``<module>d``)."""
    out = []
    for mname, mdata in sorted(modules.items()):
        service = mdata.get("service")
        if not isinstance(service, Mapping):
            continue
        n = service.get("n_instances", 1)
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 255:
            raise DefinitionError(
                f"module {mname}: service.n_instances must be a whole number from 0 to 255",
                pointer=f"/modules/{mname}/service/n_instances",
            )
        stem = str(service.get("name") or f"{mname}d")
        out += [(f"{stem}.{i}", mname) for i in range(n)]
    return out


def uiid(state: State, name: str, sub: str | None = None) -> int | None:
    """The daemon's uiid; a subproject's daemons are kept as ``<sub>/<name>``."""
    value = state.value("daemons", f"{sub}/{name}" if sub else name)
    if value is not None and value >= 256:
        raise DefinitionError(
            f"daemon {name}: no uiid below 256 is left in family {state.family} "
            "(the seed's limit); give the family fewer ids",
        )
    return value
