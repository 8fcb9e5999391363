"""What ``doit info build:<instance>/<path>`` says about an output besides doit's
attributes: the task's ``doc`` and ``meta``, made from the output's record (only
for ``doit info``): where it comes from and what it depends on, the templates
(includes too), the values it read, and the state entries it read, by name
(never a value).
"""

from __future__ import annotations

from typing import Any

from ..build import Build, Output
from ..build.record import KEY_FILES, KEY_NAMES, KEY_SOURCE, KEY_VALUES

_VALUES = "_values_:"


def describe(build: Build, o: Output) -> tuple[str, dict[str, Any]]:
    """The doc (doit keeps one line) and the meta of ``o``'s task: its source, and
    the dependencies its record lists, by name."""
    doc = f"output BUILD/{o.instance}/{o.rel} of instance {o.instance}"
    entry = build.checker.db.get(o.task)
    rec = entry.get(_VALUES) if isinstance(entry, dict) else None
    if not isinstance(rec, dict) or KEY_SOURCE not in rec:
        return doc + ", not built yet (its dependencies are known once it is)", {}
    meta: dict[str, Any] = {"made from": rec[KEY_SOURCE],
                            "templates and files read": sorted(rec.get(KEY_FILES) or {})}
    names = rec.get(KEY_NAMES) or {}
    if names:
        meta["templates loaded by name"] = [f"{n} -> {f}" for n, f in sorted(names.items())]
    values, state = _paths(build, o, rec.get(KEY_VALUES) or {})
    if values:
        meta["values read"] = values
    if state:
        meta["state entries read (names only)"] = state
    return f"{doc}, made from {rec[KEY_SOURCE]}", meta


def _paths(build: Build, o: Output, values: dict[str, str]) -> tuple[list[str], list[str]]:
    """The context paths read, split into plain values and state entries."""
    if not values:
        return [], []
    inst = build.project.instances[o.instance]
    secret = build.project.secret_paths(build.digests.state(inst, write=False),
                                        every=True, sub=o.sub)
    plain: list[str] = []
    state: list[str] = []
    for path in sorted(values):
        base = path.removesuffix("[keys]")
        what = f"{base} (its keys)" if path.endswith("[keys]") else path
        (state if base in secret else plain).append(what)
    return plain, state
