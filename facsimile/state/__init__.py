"""The second stage: generated state, made once per instance family.

:mod:`.kinds` says what can be generated and what a family wants,
:mod:`.store` reads, fills and writes ``state/<family>/state.json``, and
:mod:`.digest` makes the keyed digests the build keeps of it; :mod:`.crypt`
seals a family's values to age recipients and :mod:`.remote` keeps state at a
URL under a lock. State reads
nothing of the definitions but their checking helpers.
"""

from __future__ import annotations

from .digest import data_digest, digest_key, value_digest, wants_digest
from .files import StateStore, open_store
from .kinds import GENERATORS, SECRET_KINDS, Generator, Want, wants_for
from .store import (
    State,
    ensure_lineage,
    lineage_of,
    load,
    read_state,
    rotate,
    serial_of,
    state_path,
)

__all__ = [
    "GENERATORS",
    "SECRET_KINDS",
    "Generator",
    "State",
    "StateStore",
    "Want",
    "data_digest",
    "digest_key",
    "ensure_lineage",
    "lineage_of",
    "load",
    "open_store",
    "read_state",
    "rotate",
    "serial_of",
    "state_path",
    "value_digest",
    "wants_digest",
    "wants_for",
]
