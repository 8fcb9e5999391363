"""Load definitions, resolve inheritance, merge with jsonmerge, remember provenance.

Pure data in, pure data out: :func:`load` reads ``define/`` into
:class:`Definitions`; :func:`resolve_all` turns them into :class:`Instance`
objects (resolved dicts plus which file set each value).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from .errors import DefinitionError, RootNotFoundError

PROJECT_FILE = "facsimile.json"
MODULES_FILE = "modules.json"
SCHEMA_FILE = "schema.json"
RESERVED = {"facsimile", "modules", "schema"}

#: keys of an instance definition that facsimile itself reads
INSTANCE_KEYS = ("inherit", "targets", "deploy", "generate", "modules")
#: keys of facsimile.json that belong to the project and are not inherited
PROJECT_ONLY_KEYS = ("name", "modules", "projects", "class")
DEPLOY_KEYS = ("url", "exclude", "delete", "postcmd", "jobs", "ssh", "s3", "storage_options")
TARGET_KEYS = ("hosts", "files", "inherit")
GENERATE_KINDS = ("password", "token", "uuid", "id")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*(\.[A-Za-z0-9][A-Za-z0-9_\-]*)*$")
#: module and subproject names: they name output files and folders (``{module}``,
#: ``BUILD/<instance>/<subproject>/``) and are one key of dotted paths
#: (``module.<name>.password``), so no dots, slashes or leading '-', '.' or '_'
_MODULE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
SUBPROJECT_KEYS = ("modules", "tmpl", "extra")


# --------------------------------------------------------------------------- root


@dataclass(frozen=True)
class Root:
    """Where a facsimile tree lives. ``base`` holds define/, tmpl/, extra/, BUILD/."""

    base: Path
    project_file: Path

    @cached_property
    def define(self) -> Path:
        return self.base / "define"

    @cached_property
    def tmpl(self) -> Path:
        return self.base / "tmpl"

    @cached_property
    def extra(self) -> Path:
        return self.base / "extra"

    @cached_property
    def build(self) -> Path:
        return self.base / "BUILD"

    @cached_property
    def state(self) -> Path:
        return self.base / "state"

    @cached_property
    def src(self) -> Path:
        return self.base / "SRC"

    @cached_property
    def cache(self) -> Path:
        return self.base / ".facsimile"

    def rel(self, path: Path | str) -> str:
        """A path as the user sees it: relative to the root when inside it."""
        p = Path(path)
        try:
            return p.relative_to(self.base).as_posix()
        except ValueError:
            return str(p)


def root_at(folder: Path) -> Root | None:
    """The root whose tree is ``folder`` (or ``folder/config``), if there is one."""
    if (folder / "define" / PROJECT_FILE).is_file():
        return Root(folder, folder / "define" / PROJECT_FILE)
    if (folder / "config" / PROJECT_FILE).is_file():
        return Root(folder / "config", folder / "config" / PROJECT_FILE)
    return None


def find_root(start: Path | str | None = None) -> Root:
    """Walk up from ``start`` (default: the working directory) to the nearest root."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        found = root_at(folder)
        if found:
            return found
    raise RootNotFoundError(
        f"no facsimile root here or above: looked for define/{PROJECT_FILE} "
        f"or config/{PROJECT_FILE} from {here}"
    )


def open_root(path: Path | str) -> Root:
    """The root at exactly ``path`` (``--root DIR``)."""
    folder = Path(path).resolve()
    found = root_at(folder)
    if found is None:
        raise RootNotFoundError(
            f"{folder} is not a facsimile root: it has no define/{PROJECT_FILE} "
            f"and no config/{PROJECT_FILE}"
        )
    return found


# --------------------------------------------------------------------- reading JSON


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _DuplicateKey(ValueError):
    pass


def read_json(path: Path, shown: str) -> Any:
    """Parse a JSON file; errors name the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError("not UTF-8 text", file=shown) from exc
    except OSError as exc:
        raise DefinitionError(f"cannot read: {exc.strerror}", file=shown) from exc
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise DefinitionError(exc.msg, file=shown, line=exc.lineno, column=exc.colno) from exc
    except _DuplicateKey as exc:
        line = _line_of_key(text, str(exc))
        raise DefinitionError(f"duplicate key {str(exc)!r}", file=shown, line=line) from exc


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
    schema: dict[str, Any] = {}
    schema_path = root.define / SCHEMA_FILE
    if schema_path.is_file():
        schema = read_json(schema_path, root.rel(schema_path))
        if not isinstance(schema, dict):
            raise DefinitionError("a schema must be a JSON object", file=root.rel(schema_path))
        _check_local_refs(schema, root.rel(schema_path))
        schema = check_schema(schema, root.rel(schema_path))

    modules_path = root.define / MODULES_FILE
    if modules_path.is_file():
        raw_modules = read_json(modules_path, root.rel(modules_path))
        modules_file = root.rel(modules_path)
        if "modules" in project.data:
            raise DefinitionError(
                f"modules are defined twice: here and in {modules_file}",
                file=project.path,
                pointer="/modules",
            )
        if isinstance(raw_modules, dict) and set(raw_modules) == {"modules"}:
            raw_modules = raw_modules["modules"]
    else:
        raw_modules = project.data.get("modules", {})
        modules_file = project.path
    modules = normalize_modules(raw_modules, modules_file, "/modules" if
                                modules_file == project.path else "")

    instances: dict[str, Definition] = {}
    abstract: dict[str, Definition] = {}
    for path in definition_files(root):
        if path == root.project_file:
            continue
        rel = path.relative_to(root.define)
        name = rel.with_suffix("").as_posix()
        if len(rel.parts) == 1:
            if name in RESERVED:
                continue
            if name.startswith("_") or not _NAME_RE.match(name):
                raise DefinitionError(
                    f"{name!r} is not a valid instance name (letters, digits, '-', '_'; "
                    "dots separate subinstances; no leading '_')",
                    file=root.rel(path),
                )
            instances[name] = _definition(root, path, name)
        else:
            abstract[name] = _definition(root, path, name)

    for name, d in instances.items():
        if "." in name:
            parent = name.rsplit(".", 1)[0]
            if parent not in instances:
                raise DefinitionError(
                    f"subinstance {name!r} has no parent instance: "
                    f"define/{parent}.json does not exist",
                    file=d.path,
                )
    defs = Definitions(project, modules, modules_file, schema, instances, abstract)
    check_parents(defs, [project, *instances.values(), *abstract.values()])
    return defs


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
                    f"unknown parent {parent!r}{_suggest(parent, known)}",
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
            f"a definition must be a JSON object, not {_typename(data)}", file=shown
        )
    check_definition(data, shown, is_project=name == "facsimile")
    return Definition(name, shown, data)


def normalize_modules(raw: Any, file: str, pointer: str = "") -> dict[str, dict[str, Any]]:
    """Modules as ``{name: definition}`` from the seed's list form or an object."""
    out: dict[str, dict[str, Any]] = {}
    if isinstance(raw, list):
        for i, item in enumerate(raw):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise DefinitionError(
                    'each module in a list must be an object with a "name" string',
                    file=file,
                    pointer=f"{pointer}/{i}",
                )
            check_module_name(item["name"], "module", file, f"{pointer}/{i}/name")
            if item["name"] in out:
                raise DefinitionError(
                    f"module {item['name']!r} is defined twice", file=file, pointer=f"{pointer}/{i}"
                )
            check_module(item, file, f"{pointer}/{i}")
            out[item["name"]] = {k: v for k, v in item.items() if k != "name"}
    elif isinstance(raw, dict):
        for name, item in raw.items():
            check_module_name(name, "module", file, f"{pointer}/{_escape(name)}")
            if item is None:
                item = {}
            if not isinstance(item, dict):
                raise DefinitionError(
                    f"module {name!r} must be an object, not {_typename(item)}",
                    file=file,
                    pointer=f"{pointer}/{name}",
                )
            check_module(item, file, f"{pointer}/{name}")
            out[name] = {k: v for k, v in item.items() if k != "name"}
    else:
        raise DefinitionError(
            f"modules must be a list of objects or an object, not {_typename(raw)}",
            file=file,
            pointer=pointer or "/",
        )
    return out


def check_module_name(name: Any, what: str, file: str, pointer: str) -> None:
    """A module or subproject name is one safe path segment (it names outputs)."""
    if not isinstance(name, str) or not _MODULE_RE.match(name):
        raise DefinitionError(
            f"{what} name {name!r} is not allowed: use letters, digits, '-' and '_', "
            "starting with a letter or digit (it names output files and folders)",
            file=file,
            pointer=pointer,
        )


def check_module(item: Mapping[str, Any], file: str, pointer: str) -> None:
    """Keys of a module that name output files stay inside ``BUILD/<instance>/``."""
    if item.get("genconfig_path") is not None:
        check_relative_path(item["genconfig_path"], "genconfig_path", file,
                            f"{pointer}/genconfig_path")
    service = item.get("service")
    if isinstance(service, dict) and service.get("name") is not None:
        stem = service["name"]
        if not isinstance(stem, str) or not _NAME_RE.match(stem):
            raise DefinitionError(
                f"service.name {stem!r} is not allowed: use letters, digits, '-', '_' and "
                "inner dots (it names output files)",
                file=file,
                pointer=f"{pointer}/service/name",
            )


def check_relative_path(value: Any, what: str, file: str, pointer: str) -> None:
    """A non-empty relative path with no '..', '.' or empty segment."""
    _expect(value, str, f"{what} must be a relative path", file, pointer)
    parts = value.split("/")
    if not value or value.startswith("/") or any(p in ("", ".", "..") for p in parts) \
            or "\0" in value:
        raise DefinitionError(
            f"{what} {value!r} must be a relative path like 'etc/app.json': not empty, "
            "not absolute, no '..', '.' or empty segments",
            file=file,
            pointer=pointer,
        )


def _escape(key: str) -> str:
    """``key`` as one JSON pointer segment."""
    return key.replace("~", "~0").replace("/", "~1")


# ------------------------------------------------------------------------ checking


def _typename(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _suggest(word: str, choices: list[str] | tuple[str, ...], cutoff: float = 0.6) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return f", did you mean {close[0]!r}?" if close else ""


def _expect(value: Any, kind: type | tuple[type, ...], what: str, file: str, pointer: str) -> None:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise DefinitionError(f"{what}, not {_typename(value)}", file=file, pointer=pointer)


def _str_list(value: Any, what: str, file: str, pointer: str) -> None:
    _expect(value, list, f"{what} must be a list of strings", file, pointer)
    for i, item in enumerate(value):
        _expect(item, str, f"{what} must be a list of strings", file, f"{pointer}/{i}")


def _typo(key: str, known: tuple[str, ...], file: str, pointer: str) -> None:
    """Refuse a free key that is a near miss of a meaningful one ('delpoy')."""
    if key in known:
        return
    close = _close_match(key, known)
    if close:
        raise DefinitionError(
            f"unknown key {key!r}, did you mean {close!r}?", file=file, pointer=pointer
        )


@lru_cache(maxsize=4096)
def _close_match(key: str, known: tuple[str, ...]) -> str | None:
    """The known key ``key`` is a near miss of (free keys repeat in every instance)."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.8)
    return close[0] if close else None


def parse_kind(spec: Any, file: str, pointer: str) -> tuple[str, int | None]:
    """``"token:32"`` -> ``("token", 32)``; errors name the file and key."""
    if not isinstance(spec, str):
        raise DefinitionError(
            f"a generate kind must be a string like 'password:24', not {_typename(spec)}",
            file=file,
            pointer=pointer,
        )
    kind, _, arg = spec.partition(":")
    if kind not in GENERATE_KINDS:
        raise DefinitionError(
            f"unknown generate kind {kind!r} (one of {', '.join(GENERATE_KINDS)})"
            f"{_suggest(kind, GENERATE_KINDS)}",
            file=file,
            pointer=pointer,
        )
    if not arg:
        return kind, None
    if kind in ("uuid", "id") or not arg.isdigit() or not 8 <= int(arg) <= 4096:
        raise DefinitionError(
            f"bad length in {spec!r}: password and token take ':N' with 8 <= N <= 4096",
            file=file,
            pointer=pointer,
        )
    return kind, int(arg)


def check_definition(data: dict[str, Any], file: str, *, is_project: bool = False) -> None:
    """Types of the keys facsimile reads; near-miss key names get a suggestion."""
    known = INSTANCE_KEYS + (PROJECT_ONLY_KEYS if is_project else ())
    for key in data:
        _typo(key, known, file, f"/{key}")
    if "inherit" in data:
        _str_list(data["inherit"], "inherit", file, "/inherit")
    if "targets" in data:
        check_targets(data["targets"], file, "/targets")
    if "deploy" in data:
        check_deploy(data["deploy"], file, "/deploy")
    if "generate" in data:
        gen = data["generate"]
        _expect(gen, dict, "generate must be an object of name: kind", file, "/generate")
        for name, spec in gen.items():
            parse_kind(spec, file, f"/generate/{name}")
    if "modules" in data and not is_project:
        normalize_modules(data["modules"], file, "/modules")
    if is_project:
        if "name" in data:
            _expect(data["name"], str, "the project name must be a string", file, "/name")
        if "class" in data:
            _expect(data["class"], str, "class must be 'module.path:ClassName'", file, "/class")
        if "projects" in data:
            check_projects(data["projects"], file, "/projects")


def check_projects(projects: Any, file: str, pointer: str) -> None:
    """``projects``: a list of subproject names, or name -> ``{modules, tmpl, extra, ...}``."""
    _expect(projects, (dict, list), "projects must be an object or a list", file, pointer)
    if isinstance(projects, list):
        for i, name in enumerate(projects):
            p = f"{pointer}/{i}"
            _expect(name, str, "projects as a list must be a list of subproject names",
                    file, p)
            check_module_name(name, "subproject", file, p)
            if name in projects[:i]:
                raise DefinitionError(f"subproject {name!r} is named twice", file=file,
                                      pointer=p)
        return
    for name, spec in projects.items():
        p = f"{pointer}/{_escape(name)}"
        check_module_name(name, "subproject", file, p)
        if spec is None:
            continue
        _expect(spec, dict, f"subproject {name!r} must be an object", file, p)
        for key in spec:
            _typo(key, SUBPROJECT_KEYS, file, f"{p}/{_escape(key)}")
        if "modules" in spec:
            normalize_modules(spec["modules"], file, f"{p}/modules")
        for key in ("tmpl", "extra"):
            if key in spec:
                check_relative_path(spec[key], f"the subproject's {key} folder", file,
                                    f"{p}/{key}")


def check_targets(targets: Any, file: str, pointer: str) -> None:
    _expect(targets, dict, "targets must be an object of name: target", file, pointer)
    for name, target in targets.items():
        p = f"{pointer}/{name}"
        if target is None:
            continue
        _expect(target, dict, f"target {name!r} must be an object", file, p)
        for key in target:
            _typo(key, TARGET_KEYS, file, f"{p}/{key}")
        if "hosts" in target:
            _str_list(target["hosts"], "hosts", file, f"{p}/hosts")
            for i, host in enumerate(target["hosts"]):
                if not host or "/" in host or host in (".", "..") or host.startswith("-"):
                    raise DefinitionError(
                        f"{host!r} is not a valid host name", file=file, pointer=f"{p}/hosts/{i}"
                    )
        if "files" in target:
            _str_list(target["files"], "files", file, f"{p}/files")
        if "inherit" in target:
            _str_list(target["inherit"], "inherit", file, f"{p}/inherit")


def check_deploy(deploy: Any, file: str, pointer: str) -> None:
    _expect(deploy, dict, "deploy must be an object", file, pointer)
    for key, value in deploy.items():
        p = f"{pointer}/{key}"
        if key not in DEPLOY_KEYS:
            raise DefinitionError(
                f"unknown key {key!r} in deploy{_suggest(key, DEPLOY_KEYS)}"
                + ("" if _suggest(key, DEPLOY_KEYS) else f" (known: {', '.join(DEPLOY_KEYS)})"),
                file=file,
                pointer=p,
            )
        if key == "url":
            _expect(value, str, "deploy.url must be a string", file, p)
        elif key in ("exclude", "delete", "postcmd"):
            _str_list(value, f"deploy.{key}", file, p)
        elif key == "jobs":
            _expect(value, int, "deploy.jobs must be a whole number", file, p)
        else:
            _expect(value, dict, f"deploy.{key} must be an object", file, p)


def _check_local_refs(schema: Any, file: str, pointer: str = "") -> None:
    """External ``$ref`` could fetch over the network: refuse them."""
    if isinstance(schema, dict):
        for k, v in schema.items():
            if k == "$ref" and isinstance(v, str) and not v.startswith("#"):
                raise DefinitionError(
                    "only local '$ref' (starting with '#') are allowed in a schema",
                    file=file,
                    pointer=f"{pointer}/$ref",
                )
            _check_local_refs(v, file, f"{pointer}/{k}")
    elif isinstance(schema, list):
        for i, v in enumerate(schema):
            _check_local_refs(v, file, f"{pointer}/{i}")


#: jsonmerge's strategies (``jsonmerge.Merger.STRATEGIES``' names)
MERGE_STRATEGIES = ("append", "arrayMergeById", "arrayMergeByIndex", "discard", "objectMerge",
                    "overwrite", "version")
#: keywords whose value is one subschema
_SUB_ONE = ("additionalProperties", "additionalItems", "contains", "propertyNames", "not",
            "if", "then", "else", "unevaluatedProperties", "unevaluatedItems")
#: keywords whose value is an object of subschemas
_SUB_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
#: keywords whose value is a list of subschemas
_SUB_LIST = ("allOf", "anyOf", "oneOf", "prefixItems")


def check_schema(schema: dict[str, Any], file: str) -> dict[str, Any]:
    """Check the structure of ``define/schema.json``; return it ready for jsonmerge.

    Every subschema is an object or a boolean, every pattern compiles, every
    ``$ref`` resolves in the file, every ``mergeStrategy`` is one of
    jsonmerge's. jsonmerge reads schemas as draft 4, where a boolean is not a
    schema: the copy returned has ``{}`` in their place (for merging, ``true``
    and ``false`` both mean "no strategy").
    """

    from urllib.parse import unquote

    seen: set[int] = set()

    def fail(message: str, pointer: str) -> DefinitionError:
        return DefinitionError(message, file=file, pointer=pointer or None)

    def sub(node: Any, pointer: str) -> Any:
        if isinstance(node, bool):
            return {}
        if not isinstance(node, dict):
            raise fail(f"a subschema must be an object or a boolean, not {_typename(node)}",
                       pointer)
        out = dict(node)
        for key, value in node.items():
            p = f"{pointer}/{_escape(key)}"
            if key in _SUB_ONE:
                out[key] = sub(value, p)
            elif key in _SUB_MAP:
                if not isinstance(value, dict):
                    raise fail(f"{key} must be an object of name: subschema, not "
                               f"{_typename(value)}", p)
                if key == "patternProperties":
                    for pattern in value:
                        try:
                            re.compile(pattern)
                        except re.error as exc:
                            raise fail(f"pattern {pattern!r} does not compile: {exc}",
                                       f"{p}/{_escape(pattern)}") from exc
                out[key] = {k: sub(v, f"{p}/{_escape(k)}") for k, v in value.items()}
            elif key in _SUB_LIST or (key == "items" and isinstance(value, list)):
                if not isinstance(value, list):
                    raise fail(f"{key} must be a list of subschemas, not {_typename(value)}", p)
                out[key] = [sub(v, f"{p}/{i}") for i, v in enumerate(value)]
            elif key == "items":
                out[key] = sub(value, p)
            elif key == "dependencies":
                if not isinstance(value, dict):
                    raise fail(f"dependencies must be an object, not {_typename(value)}", p)
                out[key] = {k: v if isinstance(v, list) else sub(v, f"{p}/{_escape(k)}")
                            for k, v in value.items()}
            elif key == "$ref":
                if not isinstance(value, str):
                    raise fail(f"$ref must be a string, not {_typename(value)}", p)
                target = _resolve(schema, value)
                if target is _NOWHERE:
                    raise fail(f"$ref {value!r} points to nothing in this schema "
                               "(a local ref is '#/path/to/a/subschema')", p)
                if not isinstance(target, (dict, bool)):
                    raise fail(f"$ref {value!r} points to {_typename(target)}, not a "
                               "subschema", p)
                if value.strip("#/") and id(target) not in seen:
                    seen.add(id(target))  # a target anywhere is a subschema too
                    sub(target, "/" + unquote(value[1:].lstrip("/")))
            elif key == "mergeStrategy":
                if value not in MERGE_STRATEGIES:
                    raise fail(
                        f"unknown merge strategy {value!r}"
                        + (_suggest(value, MERGE_STRATEGIES) if isinstance(value, str) else "")
                        + f" (jsonmerge's: {', '.join(MERGE_STRATEGIES)})", p)
            elif key == "mergeOptions":
                _expect(value, dict, "mergeOptions must be an object", file, p)
        return out

    return sub(schema, "")


_NOWHERE = object()


def _resolve(schema: Any, ref: str) -> Any:
    """What the local ``ref`` (``#/a/b``) names in ``schema``; ``_NOWHERE`` if nothing."""
    from urllib.parse import unquote

    if not ref.startswith("#"):
        return _NOWHERE
    fragment = ref[1:].lstrip("/")  # as jsonschema's RefResolver.resolve_fragment
    return _follow(schema, unquote(fragment))


def _follow(node: Any, pointer: str) -> Any:
    """What the JSON pointer (``a/b``, no leading ``/`` needed) names in ``node``;
    ``_NOWHERE`` if nothing."""
    for part in pointer.lstrip("/").split("/") if pointer.lstrip("/") else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _NOWHERE
    return node


# --------------------------------------------------------------------- resolving


@dataclass
class Instance:
    """One resolved instance or subinstance: plain data, no state."""

    name: str
    family: str  # the top-level instance whose state it shares
    data: dict[str, Any]  # resolved definition, "name" set, "inherit" dropped
    chain: list[str]  # definition names applied, in order
    files: list[str]  # their files, in order
    modules: dict[str, dict[str, Any]]  # project modules overlaid by the instance's
    targets: dict[str, dict[str, Any]]  # resolved targets (their own inherit applied)
    regions: list[str] = field(default_factory=list)
    #: every definition it was made from: the chain, then its targets' parents
    uses: list[str] = field(default_factory=list)
    #: "a.b.c" -> files that set it; made when asked (see :meth:`Resolver.provenance`)
    provenance: dict[str, list[str]] | None = None

    @property
    def layers(self) -> list[str]:
        """Template layers, lowest first: ``_ALL_``, ``prod``, ``prod.ch1``."""
        parts = self.name.split(".")
        return ["_ALL_"] + [".".join(parts[: i + 1]) for i in range(len(parts))]

    @property
    def hosts(self) -> list[tuple[str, str]]:
        """``(host, target)`` for every host of every target."""
        return [(h, t) for t, spec in self.targets.items() for h in spec.get("hosts", [])]


def ancestry(defs: Definitions, name: str, _stack: tuple[str, ...] = ()) -> list[str]:
    """Names applied before ``name``: each parent's own ancestry first, deduplicated."""
    if name in _stack:
        chain = " -> ".join([*_stack[_stack.index(name):], name])
        d = defs.get(_stack[-1]) or defs.project
        raise DefinitionError(f"inheritance cycle: {chain}", file=d.path, pointer="/inherit")
    d = defs.project if name == "facsimile" else defs.get(name)
    assert d is not None
    out: list[str] = []
    for parent in d.inherit:
        for n in [*ancestry(defs, parent, (*_stack, name)), parent]:
            if n not in out:
                out.append(n)
    return out


def resolution_order(defs: Definitions, name: str) -> list[str]:
    """``facsimile`` -> ancestry of ``prod`` -> ``prod`` -> ... -> ``prod.ch1``.

    A definition reached twice is applied once, at its first place, so that a
    child's settings are never undone by re-applying a shared ancestor.
    """
    parts = name.split(".")
    levels = ["facsimile"] + [".".join(parts[: i + 1]) for i in range(len(parts))]
    order: list[str] = []
    for level in levels:
        for n in [*ancestry(defs, level), level]:
            if n not in order:
                order.append(n)
    return order


class Resolver:
    """Merges definitions with one jsonmerge ``Merger``; memoizes shared prefixes."""

    def __init__(self, defs: Definitions, schema_file: str = "define/schema.json") -> None:
        self.defs = defs
        self.schema_file = schema_file
        self._memo: dict[tuple[str, ...], dict[str, Any]] = {}
        self._prov_memo: dict[tuple[str, ...], dict[str, list[str]]] = {}
        self._fast: dict[int, bool] = {}
        self._by_id: dict[int, bool] = {}
        self._mergers: dict[int, Any] = {}

    def _layer(self, name: str) -> tuple[dict[str, Any], str]:
        d = self.defs.project if name == "facsimile" else self.defs.get(name)
        assert d is not None
        data = {k: v for k, v in d.data.items() if k not in ("inherit", "modules")}
        if name == "facsimile":
            data = {k: v for k, v in data.items() if k not in PROJECT_ONLY_KEYS}
        return data, d.path

    @cached_property
    def merger(self) -> Any:
        """jsonmerge's Merger for the whole schema, made when a merge needs it (importing
        jsonmerge and jsonschema costs more than re-resolving one instance)."""
        import jsonmerge

        return jsonmerge.Merger(self.defs.schema)

    @cached_property
    def module_merger(self) -> Any:
        import jsonmerge

        return jsonmerge.Merger(_subschema(self.defs.schema, ["modules"], additional=True) or {})

    def merged(self, order: tuple[str, ...]) -> dict[str, Any]:
        """The merge of ``order``'s layers."""
        found = self._memo.get(order)
        if found is not None:
            return found
        base = self.merged(order[:-1]) if len(order) > 1 else {}
        data, path = self._layer(order[-1])
        result = self.merge(base, data, path, "project", self.defs.schema)
        self._memo[order] = result
        return result

    def provenance(self, order: tuple[str, ...]) -> dict[str, list[str]]:
        """Which files set each value of ``order``'s merge (``"a.b.c" -> files``).

        Made when asked (``facs show --explain``, an error's file): it costs
        about as much as the merge, and a build needs neither.
        """
        found = self._prov_memo.get(order)
        if found is not None:
            return found
        prov = dict(self.provenance(order[:-1])) if len(order) > 1 else {}
        data, path = self._layer(order[-1])
        record_provenance(prov, data, path, self.defs.schema)
        self._prov_memo[order] = prov
        return prov

    def merge(self, base: Any, head: Any, file: str, which: str, schema: dict[str, Any]) -> Any:
        """``head`` merged over ``base`` by ``schema``'s strategies, which is the
        project's (``which="project"``) or the modules' (``"modules"``)."""
        if self._by_id.get(id(schema)) is None:
            self._by_id[id(schema)] = "arrayMergeById" in json.dumps(schema)
        if self._by_id[id(schema)]:
            check_ids(head, schema, file)
        try:
            if self._fast.get(id(schema), None) is None:
                self._fast[id(schema)] = plain_schema(schema)
            if self._fast[id(schema)]:
                return fast_merge(base, head, schema, self._mergers)
            merger = self.module_merger if which == "modules" else self.merger
            return merger.merge(base, head)  # jsonmerge copies what it changes
        except _Pointer as wrapped:
            exc = wrapped.exc  # type: ignore[assignment]
            ref = getattr(getattr(exc, "value", None), "ref", None)
            pointer = wrapped.pointer + (ref.lstrip("#") if isinstance(ref, str) else "")
            message = (f"cannot merge ({getattr(exc, 'strategy_name', None) or 'merge'}): "
                       f"{getattr(exc, 'message', exc)}; strategies from {self.schema_file}")
            raise DefinitionError(message, file=file, pointer=pointer or None) from exc
        except _merge_error() as exc:
            ref = getattr(exc.value, "ref", None)
            pointer = ref.lstrip("#") if isinstance(ref, str) else None
            if exc.message == "Base is not an object":
                message = ("an object cannot merge into the list or value a parent set here; "
                           "to replace it, give this key \"mergeStrategy\": \"overwrite\" in "
                           f"{self.schema_file}")
            else:
                message = (f"cannot merge ({exc.strategy_name or 'merge'}): {exc.message}; "
                           f"strategies from {self.schema_file}")
            raise DefinitionError(message, file=file, pointer=pointer or None) from exc
        except Exception as exc:
            if not _is_ref_error(exc):
                raise
            detail = str(exc.args[0] if exc.args else exc).splitlines()[0]
            hint = (" (a $ref inside the modules' subschema resolves within that subschema)"
                    if which == "modules" else "")
            raise DefinitionError(f"cannot merge: a $ref in {self.schema_file} does not "
                                  f"resolve: {detail}{hint}", file=file) from exc

    def instance(self, name: str) -> Instance:
        order = tuple(resolution_order(self.defs, name))
        data = drop_nulls(self.merged(order))
        # modules: project's, overlaid by each instance-level "modules" in order
        modules = copy.deepcopy(self.defs.modules)
        mschema = _subschema(self.defs.schema, ["modules"], additional=True) or {}
        for n in order:
            if n == "facsimile":
                continue
            d = self.defs.get(n)
            assert d is not None
            if "modules" in d.data:
                overlay = normalize_modules(d.data["modules"], d.path, "/modules")
                for mname, mdata in overlay.items():
                    with _under(f"/modules/{mname}"):
                        modules[mname] = self.merge(
                            modules.get(mname, {}), mdata, d.path, "modules", mschema
                        )
        modules = {k: drop_nulls(v) for k, v in modules.items()}
        targets = self._targets(name, data.get("targets") or {}, order)
        uses = list(dict.fromkeys([*order, *(n for t in targets.values()
                                             for n in t.pop("_uses", ()))]))
        data["targets"] = targets
        data["name"] = name
        regions = [n.split("/", 1)[1] for n in order if n.startswith("regions/")]
        files = [
            (self.defs.project if n == "facsimile" else self.defs.get(n)).path  # type: ignore[union-attr]
            for n in order
        ]
        return Instance(
            name=name,
            family=name.split(".")[0],
            data=data,
            chain=list(order),
            files=files,
            modules=modules,
            targets=targets,
            regions=regions,
            uses=uses,
        )

    def _targets(
        self, instance: str, targets: dict[str, Any], chain: tuple[str, ...]
    ) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for tname, spec in targets.items():
            spec = dict(spec or {})
            parents = spec.pop("inherit", [])
            if parents:
                order: list[str] = []
                for p in parents:
                    for n in [*ancestry(self.defs, p), p]:
                        if n not in order:
                            order.append(n)
                base = self.merged(tuple(order)) if order else {}
                base = {k: v for k, v in base.items() if k not in INSTANCE_KEYS}
                # a merge error belongs to the file that set the target last
                file = next((path for data, path in map(self._layer, reversed(chain))
                             if isinstance(data.get("targets"), dict)
                             and tname in data["targets"]), f"define/{instance}.json")
                with _under(f"/targets/{tname}"):
                    spec = drop_nulls(self.merge(base, spec, file, "project", {}))
                spec["regions"] = [n.split("/", 1)[1] for n in order if n.startswith("regions/")]
                spec["_uses"] = order
            spec.setdefault("hosts", [])
            out[tname] = spec
        return out


def _is_ref_error(exc: BaseException) -> bool:
    """jsonschema's ``RefResolutionError`` (private in jsonschema 4.18+) or referencing's."""
    import jsonschema.exceptions

    kinds = [getattr(jsonschema.exceptions, "_RefResolutionError", None)]
    with contextlib.suppress(ImportError):
        from referencing.exceptions import Unresolvable

        kinds.append(Unresolvable)
    return isinstance(exc, tuple(k for k in kinds if isinstance(k, type)))


_COMPOSITE = {"$ref", "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "$defs",
              "definitions"}


def _merge_error() -> type[Exception]:
    """jsonmerge's error class, imported when an ``except`` clause meets an error."""
    from jsonmerge.exceptions import JSONMergeError

    return JSONMergeError


def plain_schema(schema: Any) -> bool:
    """True when :func:`fast_merge` gives jsonmerge's result for ``schema``: no
    references or combinators anywhere (those need jsonmerge's own walk)."""
    if isinstance(schema, dict):
        return not (_COMPOSITE & set(schema)) and all(plain_schema(v) for v in schema.values())
    if isinstance(schema, list):
        return all(plain_schema(v) for v in schema)
    return True


class _Pointer(Exception):
    def __init__(self, exc: Exception, pointer: str) -> None:
        super().__init__(str(exc))
        self.exc = exc
        self.pointer = pointer


def fast_merge(base: Any, head: Any, schema: Any, mergers: dict[int, Any],
               pointer: str = "") -> Any:
    """jsonmerge's merge, walked in plain Python where the schema names no strategy.

    Objects merge key by key (an object over a non-object is jsonmerge's
    "Base is not an object" error); anything else replaces. A schema node with
    a ``mergeStrategy`` is handed to jsonmerge as it is. ``base`` None means
    undefined. Neither input is changed; the result may share parts of them.
    """
    node = schema if isinstance(schema, dict) else {}
    if "mergeStrategy" in node or "mergeOptions" in node:
        merger = mergers.get(id(node))
        if merger is None:
            import jsonmerge

            merger = mergers[id(node)] = jsonmerge.Merger(node)
        try:
            return merger.merge(base, head)
        except _merge_error() as exc:  # its pointer is relative to this node
            raise _Pointer(exc, pointer) from exc
    if not isinstance(head, dict):
        return head
    if base is None:
        base = {}
    elif not isinstance(base, dict):
        from jsonmerge.exceptions import BaseInstanceError
        from jsonmerge.jsonvalue import JSONValue

        raise BaseInstanceError("Base is not an object", JSONValue(base, f"#{pointer}"),
                                "objectMerge")
    out = dict(base)
    props = node.get("properties", {})
    patterns = node.get("patternProperties", {})
    extra = node.get("additionalProperties", {})
    for key, value in head.items():
        if key in props:
            sub = props[key]
        else:
            sub = next((v for p, v in patterns.items() if re.search(p, key)), extra)
        out[key] = fast_merge(base.get(key), value, sub, mergers, f"{pointer}/{key}")
    return out


@contextlib.contextmanager
def _under(prefix: str) -> Iterator[None]:
    """Put ``prefix`` before the JSON pointer of a merge error raised inside."""
    try:
        yield
    except DefinitionError as exc:
        exc.pointer = prefix + (exc.pointer or "")
        raise


def check_ids(head: Any, schema: Any, file: str, pointer: str = "") -> None:
    """An item that ``arrayMergeById`` cannot key is an error naming the file.

    jsonmerge skips such items silently: a list entry would vanish from the result.
    """
    node = schema if isinstance(schema, dict) else {}
    if node.get("mergeStrategy") == "arrayMergeById" and isinstance(head, list):
        options = node.get("mergeOptions") or {}
        refs = options.get("idRef", "id")
        for i, item in enumerate(head):
            for ref in refs if isinstance(refs, list) else [refs]:
                if not _has_pointer(item, str(ref)):
                    raise DefinitionError(
                        f"item {i} has no id {ref!r} for arrayMergeById (jsonmerge would "
                        "drop it); give it one, or change the strategy in define/schema.json",
                        file=file,
                        pointer=f"{pointer}/{i}",
                    )
            check_ids(item, node.get("items", {}), file, f"{pointer}/{i}")
    elif isinstance(head, dict):
        props = node.get("properties", {})
        patterns = node.get("patternProperties", {})
        extra = node.get("additionalProperties", {})
        if not (props or patterns or extra):
            return
        for key, value in head.items():
            if key in props:
                sub = props[key]
            else:
                sub = next((v for p, v in patterns.items() if re.search(p, key)), extra)
            if sub:
                check_ids(value, sub, file, f"{pointer}/{key}")


def _has_pointer(item: Any, ref: str) -> bool:
    return _follow(item, ref) is not _NOWHERE


def drop_nulls(value: Any) -> Any:
    """``null`` deletes a key (as in Helm): drop it from the merged result."""
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    return value


def _subschema(schema: Mapping[str, Any], path: list[str], additional: bool = False) -> Any:
    node: Any = schema
    for key in path:
        node = _child(node, key)
        if node is None:
            return None
    if additional and isinstance(node, Mapping) and "additionalProperties" in node:
        return node["additionalProperties"]
    return node


def _child(node: Any, key: str) -> Any:
    """The subschema of ``node`` for its key ``key`` (None when there is none)."""
    if not isinstance(node, Mapping):
        return None
    props = node.get("properties", {})
    if key in props:
        return props[key]
    for pattern, sub in node.get("patternProperties", {}).items():
        if re.search(pattern, key):
            return sub
    return node.get("additionalProperties")


def strategy_at(schema: Mapping[str, Any], path: list[str]) -> str | None:
    """The jsonmerge strategy the schema names for ``path``, if any."""
    node = _subschema(schema, path)
    if isinstance(node, Mapping):
        return node.get("mergeStrategy")
    return None


def record_provenance(
    prov: dict[str, list[str]], data: Any, file: str, schema: Mapping[str, Any],
    path: tuple[str, ...] = (),
) -> None:
    """Note ``file`` as the setter of every value ``data`` contains."""
    _provenance(prov, data, file, _subschema(schema, list(path)) if path else schema, path)


def _provenance(prov: dict[str, list[str]], data: Any, file: str, node: Any,
                path: tuple[str, ...]) -> None:
    """:func:`record_provenance` with ``node``, the subschema at ``path``, walked along."""
    strategy = node.get("mergeStrategy") if path and isinstance(node, Mapping) else None
    if isinstance(data, dict) and strategy != "overwrite":
        # objects merge: ``{}`` adds this file to the key, and changes nothing below it
        for key, value in data.items():
            _provenance(prov, value, file, _child(node, key), (*path, key))
        if path:
            key = ".".join(path)
            prov.setdefault(key, [])
            if file not in prov[key]:
                prov[key] = [*prov[key], file]
        return
    key = ".".join(path)
    accumulating = strategy in ("append", "arrayMergeById", "arrayMergeByIndex")
    if accumulating and key in prov:
        prov[key] = [*prov[key], file] if file not in prov[key] else prov[key]
    else:
        # a replaced value: deeper entries set earlier no longer stand (there are
        # some only where an object stood, and an object has an entry of its own)
        if key in prov or not key:
            for old in [k for k in prov if k.startswith(key + ".")]:
                del prov[old]
        prov[key] = [file]


def provenance(defs: Definitions, inst: Instance) -> dict[str, list[str]]:
    """``inst.provenance``, made on first use."""
    if inst.provenance is None:
        inst.provenance = Resolver(defs).provenance(tuple(inst.chain))
    return inst.provenance


def resolve_all(defs: Definitions) -> dict[str, Instance]:
    """Every instance and subinstance, resolved."""
    resolver = Resolver(defs)
    return {name: resolver.instance(name) for name in sorted(defs.instances)}


def lookup(data: Any, dotted: str) -> Iterator[Any]:
    """Yield the value at ``a.b.c`` (list items by index), or nothing."""
    node = data
    for part in dotted.split(".") if dotted else []:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return
    yield node
