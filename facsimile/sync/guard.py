"""Whether a sync may write to a destination, from what its manifest says:
``refusal`` compares the manifest's owner, lineage and serial with the
``StateStamp`` of the state this sync's files were built from. A refused host
is failed before any put; nothing here touches the destination.

- Owner: a destination belongs to the instance that first synced to it (with a
  facsimile that records it); a sync from another instance would overwrite its
  files and delete the ones it alone has.
- Lineage: another lineage means the state was lost and made again, or comes
  from another clone: its secrets are not the ones the hosts run with.
- Serial: an older serial means someone rotated since; pushing would put old
  secrets back.

A manifest without an owner, a lineage or a serial (an older facsimile wrote
it) accepts the sync, which records them. ``--adopt-state`` skips the lineage
and serial checks (not the owner's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SHORT = 8  # characters of a lineage shown in messages


@dataclass(frozen=True)
class StateStamp:
    """The state a sync's files were built from: instance, family, lineage, serial."""

    instance: str
    family: str
    lineage: str | None
    serial: int

    def meta(self) -> dict[str, Any]:
        """The manifest entries that record this stamp."""
        return {"instance": self.instance, "family": self.family,
                "lineage": self.lineage, "serial": self.serial}


def short(lineage: object) -> str:
    """A lineage shortened for messages (``none`` when there is none)."""
    return str(lineage)[:SHORT] if lineage else "none"


def refusal(meta: Mapping[str, Any], stamp: StateStamp, where: str,
            adopt: bool = False) -> str | None:
    """Why this sync must not write to the destination ``where`` whose manifest
    says ``meta``; None when it may."""
    owner = meta.get("instance")
    if owner is not None and owner != stamp.instance:
        return (f"instance {stamp.instance}: refused: the destination {where} belongs to "
                f"instance {owner} (its .facsimile/manifest.json says so); two instances "
                f"must not share a destination: give {stamp.instance} another deploy.url "
                "(or remove .facsimile/manifest.json there to hand it over)")
    if adopt:
        return None
    family = meta.get("family", stamp.family)
    lineage, serial = meta.get("lineage"), meta.get("serial")
    todo = ("restore state/ (git pull) or the remote state, and build; or pass "
            "--adopt-state to push this state knowingly")
    if lineage is not None and lineage != stamp.lineage:
        return (f"instance {stamp.instance}: refused: the destination {where} was synced "
                f"from state family {family} lineage {short(lineage)}, this state "
                f"(family {stamp.family}) is lineage {short(stamp.lineage)}: the state was "
                f"lost and made again, or comes from another clone; {todo}")
    if isinstance(serial, int) and stamp.serial < serial:
        return (f"instance {stamp.instance}: refused: state family {stamp.family} is at "
                f"serial {stamp.serial}, older than serial {serial} that the destination "
                f"{where} was synced from (lineage {short(lineage or stamp.lineage)}): "
                f"someone rotated since; {todo}")
    return None
