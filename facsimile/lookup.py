"""What the inspecting commands look up in a loaded project, apart from how it
is printed: the document ``facs show`` shows (secrets masked, values not yet
generated marked), where a value of it comes from (``facs show --explain``),
the rows of ``facs state show``, and the generated value a name given to
``facs state rotate`` stands for.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from . import define as D
from .errors import DefinitionError
from .mask import MASK, mask, mask_credentials

if TYPE_CHECKING:
    from .project import Project
    from .state import State, Want

NOT_YET = "<not generated yet>"


def shown_document(project: Project, inst: D.Instance, reveal: bool) -> dict[str, Any]:
    """``instance``, ``module`` and ``state`` of ``inst``'s context; secrets (state
    and the credentials in ``deploy`` and ``state`` sections) masked unless
    ``reveal``, values made in memory only replaced by ``NOT_YET``."""
    state = project.state(inst, write=False)
    ctx = project.context(inst, state)
    doc = {"instance": ctx["instance"], "module": ctx["module"], "state": ctx["state"]}
    # values made in memory only would differ on the next run: never print them
    pending = {w.path for w in state.generated}
    doc = _replace(doc, pending, NOT_YET)
    if reveal:
        return doc
    doc["instance"] = mask_credentials(doc["instance"])
    return mask(doc, project.secret_paths(state) - pending)


def _replace(value: Any, paths: set[str], text: str, prefix: str = "") -> Any:
    """A copy of ``value`` with each dotted path in ``paths`` replaced by ``text``."""
    if isinstance(value, dict) and paths:
        return {k: text if f"{prefix}{k}" in paths else _replace(v, paths, text, f"{prefix}{k}.")
                for k, v in value.items()}
    return value


def explain(project: Project, inst: D.Instance, doc: dict[str, Any], key: str) -> list[str]:
    """The lines of ``--explain KEY``: its value in ``doc``, then where it comes from."""
    if "" in key.split("."):
        raise DefinitionError(f"--explain {key!r} is not a key: give names "
                              "joined by single dots, like app.db.host")
    path = key
    if not path.startswith(("instance.", "module.", "state.")):
        path = "instance." + path
    found = list(D.lookup(doc, path))
    if not found:
        raise DefinitionError(f"{key!r} is not set in {inst.name}")
    lines = [f"{key} = {json.dumps(found[0], sort_keys=True)}"]
    if path.startswith("instance."):
        lines += _instance_source(project, inst, path[len("instance."):])
    elif path.startswith("module."):
        lines += _module_source(project, inst, path)
    else:
        state_file = project.root.rel(project.state(inst, write=False).path)
        lines.append(f"generated state: {state_file} (family {inst.family})")
    return lines


def _instance_source(project: Project, inst: D.Instance, dotted: str) -> list[str]:
    """The definition files that set ``dotted`` (or its nearest parent), and its
    merge strategy."""
    files: list[str] = []
    probe = dotted
    prov = D.provenance(project.defs, inst)
    while probe:
        if probe in prov:
            files = prov[probe]
            break
        probe = probe.rpartition(".")[0]
    lines = []
    if dotted == "name":
        lines.append("set by: the instance's name")
    elif files:
        lines.append(f"set by: {files[-1]}")
        if len(files) > 1:
            lines.append(f"merged from: {', '.join(files)}")
    strategy = D.strategy_at(project.defs.schema, dotted.split("."))
    if strategy:
        lines.append(f"merge strategy: {strategy} (define/schema.json)")
    return lines


def _module_source(project: Project, inst: D.Instance, path: str) -> list[str]:
    """Where the module value ``path`` (``module.NAME....``) comes from."""
    mod = path.split(".")[1]
    srcs = [project.defs.modules_file] if mod in project.defs.modules else []
    for name in inst.chain:
        d = project.defs.get(name)
        if d is not None and "modules" in d.data:
            over = D.normalize_modules(d.data["modules"], d.path)
            if mod in over:
                srcs.append(d.path)
    lines = []
    state_file = project.root.rel(project.state(inst, write=False).path)
    if path.endswith(".password"):
        lines.append(f"generated state: {state_file}")
    elif path.endswith(".username") and "username" not in inst.modules.get(mod, {}):
        lines.append("default: the module's name")
    if srcs:
        lines.append(f"module defined in: {', '.join(srcs)}")
    return lines


def state_rows(state: State, reveal: bool) -> list[tuple[str, str, Any]]:
    """``(path, kind, value)`` of every generated value, secrets masked unless ``reveal``."""
    rows = []
    for path, kind in sorted(state.kinds().items()):
        section, name = ("modules", path.split(".")[1]) if path.startswith("module.") else (
            "generate", path.split(".", 1)[1])
        value = state.value(section, name)
        secret = kind.split(":")[0] in ("password", "token")
        rows.append((path, kind, value if (reveal or not secret) else MASK))
    return rows


def want_named(project: Project, inst: D.Instance, name: str) -> tuple[Want, list[Want]]:
    """The generated value ``name`` stands for (a generate entry, a module name or
    a dotted path) and all of the family's."""
    wants = project.family_wants(inst.family)
    by_name = {}
    for w in wants:
        by_name.setdefault(w.name, w)
        by_name[w.path] = w
    want = by_name.get(name)
    if want is None:
        names = sorted({w.name for w in wants})
        raise DefinitionError(
            f"{name!r} is not a generate entry or module of {inst.name} "
            f"(known: {', '.join(names) or 'none'})"
        )
    return want, wants
