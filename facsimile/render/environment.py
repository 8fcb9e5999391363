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
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TemplateError
from ..suggest import close_key
from .layers import LayerIndex, rel_to
from .tracking import TOP_READS, top_names, track

_search: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("facsimile_search")
_loaded: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("facsimile_loaded")
#: Jinja2's message for a name the context does not have
_TOP_UNDEFINED = re.compile(r"'([A-Za-z_][A-Za-z0-9_]*)' is undefined")


def make_environment(index: LayerIndex, sandbox: bool = False) -> Any:
    """One Jinja2 environment per run; each template file is compiled once.
    ``sandbox``: Jinja2's sandboxed environment (templates are code otherwise)."""
    from .jinja import Environment, SandboxedEnvironment

    return (SandboxedEnvironment if sandbox else Environment)(index, _search, _loaded)


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
    """Render template ``name`` with a tracked ``ctx``; errors name file, line, name,
    and carry what the render read before it failed (``reads``)."""
    rec: dict[str, Any] = {}
    loaded: dict[str, str] = {}
    tracked = track(ctx, rec, this)
    t_search = _search.set(search)
    t_loaded = _loaded.set(loaded)
    t_top = TOP_READS.set((rec, top_names(ctx)))
    try:
        text = env.get_template(name).render(tracked)
    except TemplateError as exc:
        exc.reads = rec  # type: ignore[attr-defined]
        raise
    except Exception as exc:
        err = _template_error(exc, name, base, loaded, tracked)
        err.reads = rec  # type: ignore[attr-defined]  # what it read before it failed
        raise err from exc
    finally:
        _search.reset(t_search)
        _loaded.reset(t_loaded)
        TOP_READS.reset(t_top)
    return Rendered(text.encode("utf-8"), loaded, rec)


def _template_error(exc: Exception, name: str, base: Path, loaded: dict[str, str],
                    tracked: Mapping[str, Any]) -> TemplateError:
    """``exc``, raised while rendering template ``name``, as the error naming the
    innermost template file and line."""
    import jinja2

    if isinstance(exc, jinja2.TemplateSyntaxError):
        return TemplateError(f"syntax error: {exc.message}",
                             file=rel_to(base, exc.filename or name), line=exc.lineno)
    f, line = _template_frame(exc, base, loaded)
    if isinstance(exc, jinja2.TemplateNotFound):
        return TemplateError(exc.message or f"template {exc.name!r} not found",
                             file=f, line=line)
    text = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, jinja2.UndefinedError):
        text += _top_level_hint(text, tracked)
    kind = "" if isinstance(exc, jinja2.UndefinedError) else f"{type(exc).__name__}: "
    err = TemplateError(f"{kind}{text}", file=f or name, line=line)
    err.kind = type(exc).__name__  # type: ignore[attr-defined]
    return err


def _top_level_hint(message: str, ctx: Mapping[str, Any]) -> str:
    """``; did you mean instance?`` for Jinja2's ``'insance' is undefined`` (a
    name not in the context at all, so no mapping of ours saw the lookup)."""
    m = _TOP_UNDEFINED.fullmatch(message)
    close = close_key(m.group(1), ctx) if m else None
    return f"; did you mean {close}?" if close else ""


def compile_templates(env: Any, names: set[tuple[str, tuple[str, ...]]]) -> None:
    """Load (compile) each ``(name, search path)`` once, into ``env``'s cache: done
    before helper processes are forked, they share the compiled templates instead
    of each compiling its own. A template that fails is left for its render to
    report."""
    for name, search in names:
        token = _search.set(search)
        try:
            env.get_template(name)
        except Exception:  # its render raises it again, as a TemplateError
            pass
        finally:
            _search.reset(token)


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
