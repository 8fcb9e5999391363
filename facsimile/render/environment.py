"""The Jinja2 environment of a run, and rendering one template with a tracked
context into bytes plus what they were made from (:class:`Rendered`).

One environment per run: each template file is compiled once, whatever name
or search path loads it. Names resolve through the layers of the output
being rendered (:meth:`facsimile.render.layers.LayerIndex.resolve`). An error
becomes a :class:`~facsimile.errors.TemplateError` naming the innermost
template file and line.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TemplateError
from .layers import LayerIndex, escapes, rel_to
from .tracking import TRACKED_ATTRS, Tracked, tojson_dumps, track

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
            self.policies["json.dumps_function"] = tojson_dumps
            self.policies["json.dumps_kwargs"] = {"sort_keys": True}
            self.by_file: dict[str, Any] = {}

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
            """The file ``name`` loads in the current render."""
            search = _search.get()
            hit = index.resolve(name, search)
            if hit is not None:
                return hit
            if escapes(name):
                raise jinja2.TemplateNotFound(name, f"{name!r} escapes the template folders")
            where = ", ".join(rel_to(index.base, f) for f in search)
            raise jinja2.TemplateNotFound(
                name, f"template {name!r} not found; searched in: {where}"
            )

        def _load_template(self, name: Any, globals: Any) -> Any:
            # Jinja2's private hook of get_template and of every include,
            # import and extends: loading by file, and recording what loaded
            if isinstance(name, jinja2.Template):
                return name
            path = self.resolve(str(name))
            t = self.by_file.get(path)
            if t is None:
                try:
                    source = Path(path).read_text(encoding="utf-8")
                except UnicodeDecodeError as exc:
                    raise TemplateError("not UTF-8 text", file=rel_to(index.base, path)) from exc
                code = self.compile(source, str(name), path)
                # a plain copy of the globals, not Jinja2's ChainMap: every render
                # and include copies them, and a ChainMap copies slowly (nothing
                # changes the environment's globals once it is made)
                t = self.template_class.from_code(self, code, dict(self.make_globals(None)))
                self.by_file[path] = t
            loaded = _loaded.get(None)
            if loaded is not None:
                loaded[str(name)] = path
            return t

    return Environment()


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
    tracked = track(ctx, rec, this)
    t_search = _search.set(search)
    t_loaded = _loaded.set(loaded)
    try:
        text = env.get_template(name).render(tracked)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(
            f"syntax error: {exc.message}", file=rel_to(base, exc.filename or name),
            line=exc.lineno,
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
    """The innermost template file and line in ``exc``'s traceback (a compiled
    template's code object carries its file name, so its frames name it)."""
    files = set(loaded.values())
    found: tuple[str, int | None] = ("", None)
    tb = exc.__traceback__
    while tb is not None:
        fname = tb.tb_frame.f_code.co_filename
        if fname in files:
            found = (rel_to(base, fname), tb.tb_lineno)
        tb = tb.tb_next
    return found
