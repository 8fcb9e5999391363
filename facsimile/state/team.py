"""State a team shares: the recipients it is sealed to, and changing them.

``"state": {"recipients": [...]}`` of ``define/facsimile.json`` lists the age and
ssh public keys every family (and the digest key) is sealed to. Adding or
removing one rewrites that file (JSON, indent 2, key order kept) and seals every
family again to the new list: the values stay as they are, so no output is
rebuilt, and a removed key opens none of the new files (its holder may still have
the old ones and the values in them: rotate what they must no longer know).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StateError
from . import crypt
from .files import StateStore, open_store


@dataclass
class FamilyRecipients:
    """One family's file: the recipients it is sealed to (None: it is plain)."""

    family: str
    file: str
    sealed_to: list[str] | None


def report(store: StateStore) -> list[FamilyRecipients]:
    """Every family of the store and whom its file is sealed to."""
    backend = store.backend
    return [FamilyRecipients(f, backend.shown(f), store.sealed_to(f))
            for f in backend.families()]


def _key(recipient: str) -> str:
    """A recipient as it is compared: type and key, spacing and ssh comment aside."""
    return " ".join(recipient.split()[:2])


def changed(recipients: list[str], *, add: str | None = None,
            remove: str | None = None) -> list[str]:
    """The list with ``add`` appended or ``remove`` taken out (each checked)."""
    out = list(recipients)
    if add is not None:
        add = " ".join(add.split())
        crypt.parse_recipients([add])
        if _key(add) in map(_key, out):
            raise StateError(f"{crypt.short(add)} is already a recipient")
        out.append(add)
    if remove is not None:
        keep = [r for r in out if _key(r) != _key(" ".join(remove.split()))]
        if len(keep) == len(out):
            listed = ", ".join(map(crypt.short, out)) or "none"
            raise StateError(f"{crypt.short(remove)} is not a recipient (recipients: {listed})")
        if not keep:
            raise StateError("cannot remove the last recipient: sealed state needs one "
                             "(to go back to plain state, delete state.recipients by hand)")
        out = keep
    return out


def set_recipients(project_file: Path, config: dict[str, Any], state_dir: Path,
                   shown_root: Path, recipients: list[str]) -> list[str]:
    """Seal every family and the digest key to ``recipients``, then write them into
    ``project_file``'s ``state.recipients``. Returns the families sealed."""
    new_config = {**config, "recipients": recipients}
    store = open_store(state_dir, shown_root, new_config)
    store.ignore()
    done = store.reseal()
    write_config(project_file, new_config)
    return done


def write_config(project_file: Path, state: dict[str, Any]) -> None:
    """Replace ``"state"`` in facsimile.json; the other keys keep their order."""
    try:
        data = json.loads(project_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StateError(f"cannot read the project file ({exc})", file=project_file) from exc
    data["state"] = state
    tmp = project_file.with_name(f".{project_file.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(project_file)


def unlock(store: StateStore, lock_id: str) -> str:
    """Remove a remote lock a gone run left; the family it was on."""
    from .files import Remote

    if not isinstance(store.backend, Remote):
        raise StateError("state is local (a lock there goes with its process): nothing to "
                         "unlock")
    return store.backend.store.unlock(lock_id)
