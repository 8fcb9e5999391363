"""Reading ``define/``: JSON files into checked, unresolved :class:`Definitions`.

:func:`read_json` parses one file (errors name its line and column; a
duplicate key is an error). :func:`load` reads the project file, the
schema, the modules and every instance and abstract definition, checking
each as it is read; :func:`reload_changed` re-reads a few of them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DefinitionError
from .names import check_instance_name
from .root import Root
from .schema import check_local_refs, check_schema
from .shapes import suggest, typename
from .validate import check_definition, normalize_modules

MODULES_FILE = "modules.json"
SCHEMA_FILE = "schema.json"
RESERVED = {"facsimile", "modules", "schema"}


# --------------------------------------------------------------------- reading JSON


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _NotJSON(ValueError):
    pass


def _no_constants(name: str) -> Any:
    """``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (Python's parser takes them)."""
    raise _NotJSON(name)


#: how deeply arrays and objects may nest in a definition: deeper ones are refused
#: when read, not met later as a RecursionError in a merge, a copy or the cache
MAX_DEPTH = 100


def read_json(path: Path, shown: str) -> Any:
    """Parse a JSON file; errors name the file, line and column.

    Stricter than :func:`json.loads`: a duplicate key, ``NaN`` or ``Infinity``,
    and nesting deeper than :data:`MAX_DEPTH` are errors.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError("not UTF-8 text", file=shown) from exc
    except OSError as exc:
        raise DefinitionError(f"cannot read: {exc.strerror}", file=shown) from exc
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise DefinitionError(exc.msg, file=shown, line=exc.lineno, column=exc.colno) from exc
    except _DuplicateKey as exc:
        line = _line_of_key(text, str(exc))
        raise DefinitionError(f"duplicate key {str(exc)!r}", file=shown, line=line) from exc
    except _NotJSON as exc:
        raise DefinitionError(f"{exc} is not a JSON value (JSON has no NaN or Infinity)",
                              file=shown, line=_line_of_constant(text)) from exc
    except RecursionError as exc:
        raise DefinitionError(f"arrays and objects nest more than {MAX_DEPTH} deep",
                              file=shown) from exc
    # nesting needs as many brackets as its depth (the count includes those in strings)
    if text.count("{") + text.count("[") > MAX_DEPTH and _too_deep(data, MAX_DEPTH):
        raise DefinitionError(f"arrays and objects nest more than {MAX_DEPTH} deep",
                              file=shown)
    return data


def _too_deep(value: Any, room: int) -> bool:
    """Whether ``value`` nests arrays and objects more than ``room`` deep."""
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return False
    if room <= 0:
        return True
    return any(_too_deep(v, room - 1) for v in items if isinstance(v, (dict, list)))


def _line_of_constant(text: str) -> int | None:
    """The line of the first ``NaN`` or ``Infinity`` outside a string in ``text``."""
    in_string = escaped = False
    line = 1
    for i, ch in enumerate(text):
        if ch == "\n":
            line += 1
        elif in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif text.startswith(("NaN", "Infinity"), i):
            return line
    return None


def _line_of_key(text: str, key: str) -> int | None:
    hits = [i for i, ln in enumerate(text.splitlines(), 1) if f'"{key}"' in ln]
    return hits[1] if len(hits) > 1 else (hits[0] if hits else None)


# ------------------------------------------------------------------------ loading


@dataclass(frozen=True)
class Definition:
    """One definition file: its name, where it is, and its raw data."""

    name: str
    path: str  # as shown to the user, relative to the root
    data: dict[str, Any]

    @property
    def inherit(self) -> list[str]:
        return list(self.data.get("inherit", []))


@dataclass
class Definitions:
    """Everything under ``define/``, read and checked, not yet resolved."""

    project: Definition
    modules: dict[str, dict[str, Any]]
    modules_file: str
    schema: dict[str, Any]
    instances: dict[str, Definition]  # top-level and dotted names
    abstract: dict[str, Definition]  # "regions/ch1"

    def get(self, name: str) -> Definition | None:
        return self.instances.get(name) or self.abstract.get(name)


def definition_files(root: Root) -> list[Path]:
    """Every file whose content the model depends on (for cache keys)."""
    files = [root.project_file]
    if root.define.is_dir():
        for dirpath, dirnames, filenames in os.walk(root.define):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            files.extend(
                Path(dirpath) / f
                for f in sorted(filenames)
                if f.endswith(".json") and not f.startswith(".")
            )
    return sorted(set(files))


def load(root: Root) -> Definitions:
    """Read and check every definition file of ``root``."""
    project = _definition(root, root.project_file, "facsimile")
    schema = _read_schema(root)
    modules, modules_file = _read_modules(root, project)
    instances, abstract = _read_instances(root)
    defs = Definitions(project, modules, modules_file, schema, instances, abstract)
    check_parents(defs, [project, *instances.values(), *abstract.values()])
    return defs


def _read_schema(root: Root) -> dict[str, Any]:
    """``define/schema.json``, checked ({} when there is none)."""
    path = root.define / SCHEMA_FILE
    if not path.is_file():
        return {}
    shown = root.rel(path)
    schema = read_json(path, shown)
    if not isinstance(schema, dict):
        raise DefinitionError("a schema must be a JSON object", file=shown)
    check_local_refs(schema, shown)
    return check_schema(schema, shown)


def _read_modules(root: Root, project: Definition) -> tuple[dict[str, dict[str, Any]], str]:
    """The project's modules, from ``define/modules.json`` or ``facsimile.json``'s
    ``modules`` (not both), and the file they came from."""
    path = root.define / MODULES_FILE
    if not path.is_file():
        return normalize_modules(project.data.get("modules", {}), project.path,
                                 "/modules"), project.path
    raw = read_json(path, root.rel(path))
    modules_file = root.rel(path)
    if "modules" in project.data:
        raise DefinitionError(
            f"modules are defined twice: here and in {modules_file}",
            file=project.path,
            pointer="/modules",
        )
    if isinstance(raw, dict) and set(raw) == {"modules"}:
        raw = raw["modules"]
    return normalize_modules(raw, modules_file, ""), modules_file


def _read_instances(root: Root) -> tuple[dict[str, Definition], dict[str, Definition]]:
    """Instances (``define/<name>.json``) and abstract definitions (in folders)."""
    instances: dict[str, Definition] = {}
    abstract: dict[str, Definition] = {}
    for path in definition_files(root):
        if path == root.project_file:
            continue
        rel = path.relative_to(root.define)
        name = rel.with_suffix("").as_posix()
        if len(rel.parts) > 1:
            abstract[name] = _definition(root, path, name)
        elif name not in RESERVED:
            check_instance_name(name, root.rel(path))
            instances[name] = _definition(root, path, name)
    for name, d in instances.items():
        parent = name.rsplit(".", 1)[0]
        if "." in name and parent not in instances:
            raise DefinitionError(
                f"subinstance {name!r} has no parent instance: "
                f"define/{parent}.json does not exist",
                file=d.path,
            )
    return instances, abstract


def check_parents(defs: Definitions, which: list[Definition]) -> None:
    """Every name in ``inherit`` (and a target's) is a definition, not the project."""
    for d in which:
        named = [(f"/inherit/{i}", p) for i, p in enumerate(d.inherit)]
        for tname, target in (d.data.get("targets") or {}).items():
            named += [(f"/targets/{tname}/inherit/{i}", p)
                      for i, p in enumerate((target or {}).get("inherit", []))]
        for pointer, parent in named:
            if defs.get(parent) is None or parent == "facsimile":
                known = sorted(defs.abstract) + sorted(defs.instances)
                raise DefinitionError(
                    f"unknown parent {parent!r}{suggest(parent, known)}",
                    file=d.path,
                    pointer=pointer,
                )


def reload_changed(root: Root, defs: Definitions, changed: list[Path]) -> list[str]:
    """Re-read ``changed`` instance and abstract definition files into ``defs``.

    Returns their names. The project, modules and schema files are not
    handled here (a change to them means a full load).
    """
    names = []
    for path in changed:
        rel = path.relative_to(root.define)
        name = rel.with_suffix("").as_posix()
        d = _definition(root, path, name)
        (defs.instances if len(rel.parts) == 1 else defs.abstract)[name] = d
        names.append(name)
    check_parents(defs, [defs.get(n) for n in names])  # type: ignore[misc]
    return names


def _definition(root: Root, path: Path, name: str) -> Definition:
    shown = root.rel(path)
    data = read_json(path, shown)
    if not isinstance(data, dict):
        raise DefinitionError(
            f"a definition must be a JSON object, not {typename(data)}", file=shown
        )
    check_definition(data, shown, is_project=name == "facsimile")
    return Definition(name, shown, data)
