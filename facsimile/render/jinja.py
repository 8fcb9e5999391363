"""facsimile's Jinja2 environment class (imported when a run first renders).

Names resolve through the search path of the output being rendered (a
context variable set by :func:`facsimile.render.render`), each file is
compiled once whatever name loads it, and each load is recorded. It relies
on Jinja2's ``Environment._load_template``, the private hook behind
``get_template`` and every include, import and extends.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import jinja2.runtime
import jinja2.sandbox

from ..errors import TemplateError
from ..suggest import close_key
from .layers import LayerIndex, escapes, rel_to
from .tracking import TOP_READS, TRACKED_ATTRS, Tracked, tojson_dumps


class Undefined(jinja2.StrictUndefined):
    """An undefined value whose message names the context path and, when the
    mapping it was looked up on has a close key, suggests it:
    ``instance.app.prot is undefined; did you mean instance.app.port?``."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:  # type: ignore[override]
        obj = self._undefined_obj
        name = self._undefined_name
        if isinstance(obj, Tracked):
            # the keys straight from the data: a failed render records nothing
            close = close_key(name, obj._data) if isinstance(name, str) else None
            hint = f"; did you mean {obj._path}.{close}?" if close else ""
            return f"{obj._path}.{name} is undefined{hint}"
        message = str(super()._undefined_message)
        if isinstance(obj, Mapping) and isinstance(name, str):
            close = close_key(name, obj)
            if close:
                message += f"; did you mean {close!r}?"
        return message


class Context(jinja2.runtime.Context):
    """A render's context that records the top-level names a template resolves
    whose values are not mappings (those are :class:`Tracked` and record their
    own reads): the scalars and lists of a project class's ``extra_context()``."""

    def resolve_or_missing(self, key: str) -> Any:
        value = super().resolve_or_missing(key)
        top = TOP_READS.get(None)
        if top is not None and key in top[1]:
            top[0][key] = value
        return value


class Environment(jinja2.Environment):
    """Resolves names through the current search path; compiled per file."""

    def __init__(self, index: LayerIndex,
                 search: contextvars.ContextVar[tuple[str, ...]],
                 loaded: contextvars.ContextVar[dict[str, str]]) -> None:
        super().__init__(
            undefined=Undefined,
            keep_trailing_newline=True,
            autoescape=False,
            extensions=["jinja2.ext.do", "jinja2.ext.loopcontrols"],
            cache_size=0,
        )
        self.context_class = Context
        self.policies["json.dumps_function"] = tojson_dumps
        self.policies["json.dumps_kwargs"] = {"sort_keys": True}
        self.index = index
        self.by_file: dict[str, Any] = {}
        self._search = search
        self._loaded = loaded

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``a.b`` on a context value: a key unless it names a method of the
        mapping (``items``, ``get``...), as Jinja2 does, without raising an
        AttributeError for every key first."""
        if type(obj) is Tracked and attribute not in TRACKED_ATTRS:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def resolve(self, name: str) -> str:
        """The file ``name`` loads in the current render."""
        search = self._search.get()
        hit = self.index.resolve(name, search)
        if hit is not None:
            return hit
        if escapes(name):
            raise jinja2.TemplateNotFound(name, f"{name!r} escapes the template folders")
        where = ", ".join(rel_to(self.index.base, f) for f in search)
        raise jinja2.TemplateNotFound(name, f"template {name!r} not found; searched in: {where}")

    def _load_template(self, name: Any, globals: Any) -> Any:
        if isinstance(name, jinja2.Template):
            return name
        path = self.resolve(str(name))
        t = self.by_file.get(path)
        if t is None:
            try:
                source = Path(path).read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise TemplateError("not UTF-8 text", file=rel_to(self.index.base, path)) from exc
            code = self.compile(source, str(name), path)
            # a plain copy of the globals, not Jinja2's ChainMap: every render
            # and include copies them, and a ChainMap copies slowly (nothing
            # changes the environment's globals once it is made)
            t = self.template_class.from_code(self, code, dict(self.make_globals(None)))
            self.by_file[path] = t
        loaded = self._loaded.get(None)
        if loaded is not None:
            loaded[str(name)] = path
        return t


class SandboxedEnvironment(Environment, jinja2.sandbox.SandboxedEnvironment):
    """:class:`Environment` with Jinja2's sandbox (``"sandbox": true`` in
    ``facsimile.json``): no attribute that starts with ``_``, no function or
    frame internals, so a template cannot reach Python's modules; an unsafe
    access is a ``SecurityError`` naming the template and line."""
