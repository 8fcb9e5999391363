"""The forms of ``validate``: output glob -> the checks an output must pass before
it is moved into ``BUILD/``.

A check is a built-in parser (``json``, ``yaml``, ``toml``, ``ini``) or a
command that names the file as ``{path}``; each has a timeout. A glob takes one
check (a string, or ``{"check": ..., "timeout": seconds}``), a list of them, or
``null`` (no check: it removes an inherited glob). :func:`parse_checks` is the
one reading of those forms: the definition check refuses what it refuses, and
the build runs what it returns.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..errors import DefinitionError
from .shapes import check_glob_key, escape, expect, suggest, typename

#: the checks facsimile runs itself, in this process
BUILTINS = ("json", "yaml", "toml", "ini")
#: seconds a check may take unless its entry says otherwise
DEFAULT_TIMEOUT = 30.0
#: what a command is given: the rendered file's path (shell-quoted)
PATH = "{path}"
CHECK_KEYS = ("check", "timeout")
_FORMS = (f"one of {', '.join(BUILTINS)}, or a command that names the file as {PATH}, "
          'like "nginx -t -c {path}"')


class Check(NamedTuple):
    """One check of an output: a built-in's name or a command, and its timeout."""

    spec: str
    timeout: float = DEFAULT_TIMEOUT

    @property
    def builtin(self) -> bool:
        return self.spec in BUILTINS

    @property
    def text(self) -> str:
        """How a record and a plan name it (the timeout only when it is not the default)."""
        if self.timeout == DEFAULT_TIMEOUT:
            return self.spec
        return f"{self.spec} (timeout {self.timeout:g} s)"


def parse_check(spec: Any, file: str | None, pointer: str) -> Check:
    """One check: ``"json"``, ``"cmd {path}"`` or ``{"check": ..., "timeout": 10}``."""
    timeout = DEFAULT_TIMEOUT
    if isinstance(spec, dict):
        for key in spec:
            if key not in CHECK_KEYS:
                raise DefinitionError(
                    f"unknown key {key!r} in a check{suggest(key, CHECK_KEYS)} "
                    f"(known: {', '.join(CHECK_KEYS)})",
                    file=file, pointer=f"{pointer}/{escape(key)}")
        if "check" not in spec:
            raise DefinitionError(f'a check given as an object needs "check": {_FORMS}',
                                  file=file, pointer=pointer)
        if "timeout" in spec:
            t = spec["timeout"]
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
                raise DefinitionError(
                    f"a check's timeout must be a number of seconds above 0, not {t!r}",
                    file=file, pointer=f"{pointer}/timeout")
            timeout = float(t)
        pointer, spec = f"{pointer}/check", spec["check"]
    expect(spec, str, f"a check must be a string ({_FORMS}) or an object", file, pointer)
    word = spec.strip()
    if word in BUILTINS:
        return Check(word, timeout)
    if PATH in spec:
        return Check(spec, timeout)
    if not word:
        raise DefinitionError(f"a check must not be empty: {_FORMS}", file=file, pointer=pointer)
    hint = suggest(word, BUILTINS) if " " not in word else ""
    what = f"unknown check {word!r}" if " " not in word else \
        f"the command {word!r} does not name the file as {PATH}"
    raise DefinitionError(f"{what}{hint} ({_FORMS})", file=file, pointer=pointer)


def parse_checks(value: Any, file: str | None = None, pointer: str = "") -> tuple[Check, ...]:
    """The checks of one glob, in order: a check, a list of them, or ``null``."""
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(dict.fromkeys(parse_check(v, file, f"{pointer}/{i}")
                                   for i, v in enumerate(value)))
    return (parse_check(value, file, pointer),)


def check_validate(validate: Any, file: str, pointer: str) -> None:
    """``validate``: output glob -> checks; the globs are those of ``modes`` (sync's
    ``targets.files``: relative, ``..``-free)."""
    if validate is None:
        return
    if not isinstance(validate, dict):
        raise DefinitionError(
            'validate must be an object of glob: check, like {"etc/*.json": "json"}, '
            f"not {typename(validate)}", file=file, pointer=pointer)
    for glob, value in validate.items():
        p = f"{pointer}/{escape(glob)}"
        check_glob_key(glob, "validate", file, p)
        parse_checks(value, file, p)
