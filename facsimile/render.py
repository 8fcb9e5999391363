"""Templates: the layer index, one Jinja2 environment per run, and read tracking.

Rendering records what it used: every template file loaded (the output's own,
and each include, import or extends, by name and resolved file) and every
context value read (by dotted path). :mod:`facsimile.tasks` stores digests of
those, never the values, in doit's database.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import TemplateError

ABSENT = "absent"
LIB = "_lib"
ALL = "_ALL_"


def digest(value: Any, key: bytes = b"") -> str:
    """A short stable digest of a JSON-able value (never the value itself), keyed
    with the root's digest key so that a short secret cannot be found from it."""
    if value is ABSENT_VALUE:
        return ABSENT
    kind = type(value)
    if kind is str:  # the common case, without json
        data = b"s" + value.encode()
    elif kind is int or kind is bool or value is None:
        data = repr(value).encode()
    else:
        data = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()
    return hashlib.blake2b(data, digest_size=6, key=key).hexdigest()


def file_digest(path: Path | str, key: bytes = b"") -> str:
    with open(path, "rb") as fh:
        return hashlib.blake2b(fh.read(), digest_size=8, key=key).hexdigest()


def bytes_digest(data: bytes, key: bytes = b"") -> str:
    return hashlib.blake2b(data, digest_size=8, key=key).hexdigest()


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT_VALUE = _Absent()


# --------------------------------------------------------------------- layer index


@dataclass
class LayerIndex:
    """Files of every layer folder under ``tmpl/`` and ``extra/``, listed once per run."""

    base: Path
    folders: dict[str, dict[str, str]] = field(default_factory=dict)

    def files(self, folder: Path | str) -> dict[str, str]:
        """``{relpath: path}`` of every file below ``folder`` (cached; plain strings,
        since pathlib costs more than the walk itself at 10k files)."""
        key = str(folder)
        if key not in self.folders:
            self.folders[key] = dict(_walk(key))
        return self.folders[key]


# Never outputs: version-control folders, editors' swap and backup files, caches.
SKIP_DIRS = frozenset((".git", ".hg", ".svn", "__pycache__"))
SKIP_PREFIX = (".#",)
SKIP_SUFFIX = ("~", ".swp", ".swo", ".pyc")
SKIP_NAMES = frozenset((".DS_Store",))


def _walk(folder: Path | str) -> Iterator[tuple[str, str]]:
    """``(relpath, path)`` of every file below ``folder``, dot-files included
    (``.htaccess``, ``.env.j2``), editors' leftovers and VCS folders not."""
    stack = [(str(folder), "")]
    while stack:
        path, rel = stack.pop()
        try:
            entries = list(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for e in entries:
            name = e.name
            if (name.endswith(SKIP_SUFFIX) or name.startswith(SKIP_PREFIX)
                    or name in SKIP_NAMES):
                continue
            r = f"{rel}{name}"
            if e.is_dir():
                if name not in SKIP_DIRS:
                    stack.append((e.path, r + "/"))
            elif e.is_file():
                yield r, e.path


# ----------------------------------------------------------------- read tracking


class Tracked(Mapping):
    """A read-recording view of a context dict: ``rec[path] = value`` on every read."""

    __slots__ = ("_data", "_path", "_rec")

    def __init__(self, data: Mapping[str, Any], path: str, rec: dict[str, Any]) -> None:
        self._data = data
        self._path = path
        self._rec = rec

    def __getitem__(self, key: Any) -> Any:
        p = f"{self._path}.{key}"
        try:
            v = self._data[key]
        except (KeyError, TypeError):
            self._rec.setdefault(p, ABSENT_VALUE)
            raise KeyError(key) from None
        if isinstance(v, dict):
            return Tracked(v, p, self._rec)
        self._rec[p] = v
        return v

    def __iter__(self) -> Iterator[str]:
        self._rec[self._path + "[keys]"] = sorted(self._data)
        return iter(self._data)

    def __len__(self) -> int:
        self._rec[self._path + "[keys]"] = sorted(self._data)
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        self._rec[self._path + "[keys]"] = sorted(self._data)
        return key in self._data

    def unwrap(self) -> Mapping[str, Any]:
        """The whole value, recorded as read."""
        self._rec[self._path] = self._data
        return self._data

    def __str__(self) -> str:
        return str(self.unwrap())

    __repr__ = __str__


TRACKED_ATTRS = frozenset(dir(Tracked))  # what ``getattr`` finds on a Tracked first


def lookup_path(ctx: Mapping[str, Any], path: str) -> Any:
    """The value a recorded path names now (``ABSENT_VALUE`` when gone)."""
    keys_of = path.endswith("[keys]")
    if keys_of:
        path = path[: -len("[keys]")]
    node: Any = ctx
    parts = path.split(".")
    # a dotted key can itself contain dots; try the longest match at each level
    i = 0
    while i < len(parts):
        if not isinstance(node, Mapping):
            return ABSENT_VALUE
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if key in node:
                node = node[key]
                i = j
                break
        else:
            return ABSENT_VALUE
    if keys_of:
        return sorted(node) if isinstance(node, Mapping) else ABSENT_VALUE
    return node


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Tracked):
        return obj.unwrap()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _tojson_dumps(obj: Any, **kwargs: Any) -> str:
    if isinstance(obj, Tracked):
        obj = obj.unwrap()
    return json.dumps(obj, default=_json_default, **kwargs)


# ------------------------------------------------------------------ environment

_search: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("facsimile_search")
_loaded: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("facsimile_loaded")


def make_environment(index: LayerIndex) -> Any:
    """One Jinja2 environment per run; each template file is compiled once."""
    import jinja2

    class Undefined(jinja2.StrictUndefined):
        __slots__ = ()

        @property
        def _undefined_message(self) -> str:  # type: ignore[override]
            obj = self._undefined_obj
            if isinstance(obj, Tracked):
                return f"{obj._path}.{self._undefined_name} is undefined"
            return str(super()._undefined_message)

    class Environment(jinja2.Environment):
        """Resolves names through the current search path; compiled per file."""

        def __init__(self) -> None:
            super().__init__(
                undefined=Undefined,
                keep_trailing_newline=True,
                autoescape=False,
                extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"],
                cache_size=0,
            )
            self.policies["json.dumps_function"] = _tojson_dumps
            self.policies["json.dumps_kwargs"] = {"sort_keys": True}
            self.by_file: dict[str, Any] = {}
            self.resolved: dict[tuple[tuple[str, ...], str], str] = {}  # the index is fixed

        def getattr(self, obj: Any, attribute: str) -> Any:
            """``a.b`` on a context value: a key unless it names a method of the
            mapping (``items``, ``get``...), as Jinja2 does, without raising an
            AttributeError for every key first (a tenth of a full build)."""
            if type(obj) is Tracked and attribute not in TRACKED_ATTRS:
                try:
                    return obj[attribute]
                except KeyError:
                    return self.undefined(obj=obj, name=attribute)
            return super().getattr(obj, attribute)

        def resolve(self, name: str) -> str:
            search = _search.get()
            key = (search, name)
            hit = self.resolved.get(key)
            if hit is None:
                hit = self.resolved[key] = self._resolve(name, search)
            return hit

        def _resolve(self, name: str, search: tuple[str, ...]) -> str:
            parts = name.replace("\\", "/").split("/")
            if name.startswith("/") or ".." in parts:
                raise jinja2.TemplateNotFound(name, f"{name!r} escapes the template folders")
            for folder in search:
                hit = index.files(folder).get(name)
                if hit is not None:
                    return hit
            where = ", ".join(_rel(index.base, f) for f in search)
            raise jinja2.TemplateNotFound(
                name, f"template {name!r} not found; searched in: {where}"
            )

        def _load_template(self, name: Any, globals: Any) -> Any:
            if isinstance(name, jinja2.Template):
                return name
            path = self.resolve(str(name))
            key = str(path)
            t = self.by_file.get(key)
            if t is None:
                try:
                    source = Path(path).read_text(encoding="utf-8")
                except UnicodeDecodeError as exc:
                    raise TemplateError("not UTF-8 text", file=_rel(index.base, path)) from exc
                code = self.compile(source, str(name), key)
                # a plain copy of the globals, not Jinja2's ChainMap: every render
                # and include copies them, and a ChainMap copies slowly (nothing
                # changes the environment's globals once it is made)
                t = self.template_class.from_code(self, code, dict(self.make_globals(None)))
                self.by_file[key] = t
            loaded = _loaded.get(None)
            if loaded is not None:
                loaded[str(name)] = key
            return t

    return Environment()


def _rel(base: Path, path: Path | str) -> str:
    try:
        return Path(path).relative_to(base).as_posix()
    except ValueError:
        return str(path)


@dataclass
class Rendered:
    """Bytes of one output and what they were made from."""

    data: bytes
    loaded: dict[str, str]  # template name -> file
    reads: dict[str, Any]  # context path -> value (in memory only)


def render(
    env: Any,
    name: str,
    search: tuple[str, ...],
    ctx: Mapping[str, Any],
    base: Path,
    this: str | None = None,
) -> Rendered:
    """Render template ``name`` with a tracked ``ctx``; errors name file, line, name."""
    import jinja2

    rec: dict[str, Any] = {}
    loaded: dict[str, str] = {}
    tracked = {k: Tracked(v, k, rec) if isinstance(v, dict) else v for k, v in ctx.items()}
    if this is not None:
        value = lookup_path(ctx, this)
        tracked["this"] = Tracked(value, this, rec) if isinstance(value, dict) else value
    t_search = _search.set(search)
    t_loaded = _loaded.set(loaded)
    try:
        text = env.get_template(name).render(tracked)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"syntax error: {exc.message}", file=_rel(base, exc.filename or name), line=exc.lineno
        ) from exc
    except jinja2.TemplateNotFound as exc:
        msg = exc.message or f"template {exc.name!r} not found"
        f, line = _template_frame(exc, base, loaded)
        raise TemplateError(msg, file=f, line=line) from exc
    except TemplateError:
        raise
    except Exception as exc:
        f, line = _template_frame(exc, base, loaded)
        text = getattr(exc, "message", None) or str(exc)
        kind = "" if isinstance(exc, jinja2.UndefinedError) else f"{type(exc).__name__}: "
        raise TemplateError(f"{kind}{text}", file=f or name, line=line) from exc
    finally:
        _search.reset(t_search)
        _loaded.reset(t_loaded)
    return Rendered(text.encode("utf-8"), loaded, rec)


def _template_frame(
    exc: BaseException, base: Path, loaded: dict[str, str]
) -> tuple[str, int | None]:
    """The innermost template file and line in ``exc``'s traceback."""
    files = set(loaded.values())
    found: tuple[str, int | None] = ("", None)
    tb = exc.__traceback__
    while tb is not None:
        fname = tb.tb_frame.f_code.co_filename
        if fname in files:
            found = (_rel(base, fname), tb.tb_lineno)
        tb = tb.tb_next
    return found
