"""What ``doit info build:<instance>/<path>`` says about an output besides doit's
attributes: the task's ``doc``, made from the output's record (only for
``doit info``): where it comes from and what it depends on, the templates
(includes too), the values it read, and the state entries it read, by name
(never a value).
"""

from __future__ import annotations

from ..build import Build, Output
from ..build.record import KEY_FILES, KEY_NAMES, KEY_SOURCE, KEY_VALUES

_VALUES = "_values_:"


def describe(build: Build, o: Output) -> str:
    """The doc of ``o``'s task: its source and the dependencies its record lists."""
    lines = [f"output BUILD/{o.instance}/{o.rel} of instance {o.instance}"]
    entry = build.checker.db.get(o.task)
    rec = entry.get(_VALUES) if isinstance(entry, dict) else None
    if not isinstance(rec, dict) or KEY_SOURCE not in rec:
        lines.append("not built yet: its dependencies are known once it is")
        return "\n".join(lines)
    lines.append(f"made from {rec[KEY_SOURCE]}")
    files = sorted(rec.get(KEY_FILES) or {})
    if files:
        lines.append("templates and files read:")
        lines += [f" - {f}" for f in files]
    names = rec.get(KEY_NAMES) or {}
    if names:
        lines.append("templates loaded by name (includes, imports):")
        lines += [f" - {n} -> {f}" for n, f in sorted(names.items())]
    values, state = _paths(build, o, rec.get(KEY_VALUES) or {})
    if values:
        lines.append("values read:")
        lines += [f" - {v}" for v in values]
    if state:
        lines.append("state entries read (names only):")
        lines += [f" - {v}" for v in state]
    return "\n".join(lines)


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
