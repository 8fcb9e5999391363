"""File modes of outputs: which mode each output is written with, and why.

The rule, in order:

1. the instance's ``modes`` (``{"etc/app/*.ini": "0640"}``): of the globs that
   match the output's path in ``BUILD/<instance>/``, the most specific wins
   (the most characters outside ``*`` and ``?``; among equals, the first in
   key order). The globs are sync's (``targets.files``);
2. an output whose render read a generated secret (a ``password`` or
   ``token``: a module's password, a ``generate`` entry of those kinds), and a
   module's genconfig, is 0600;
3. otherwise the mode of the file it is made from (template or extra file);
   the project version file is 0644.

Each output's record keeps, under ``KEY_MODE``, what the check needs to tell
when that decision would now differ without matching a glob on every run:
the mode written, whether it read a secret, the source's mode when that is
what decided, and a digest of the instance's ``modes``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..define.validate import parse_mode
from ..digest import digest

SECRET_MODE = 0o600
VERSION_MODE = 0o644
#: the context path named in a plan's reason when ``modes`` decides a change
MODES_PATH = "instance.modes"


class ModeRules:
    """An instance's ``modes``, compiled once per run."""

    def __init__(self, modes: Mapping[str, Any] | None) -> None:
        self.modes = modes or {}
        self.digest = modes_digest(modes)  # all a no-op looks at
        self._rules: list[tuple[re.Pattern[str], int]] | None = None

    @property
    def rules(self) -> list[tuple[re.Pattern[str], int]]:
        """``(regex, mode)``, most specific first; compiled when first matched."""
        if self._rules is None:
            found = []
            if self.modes:
                from ..globs import glob_regex  # imported only when used

                for i, (glob, text) in enumerate(self.modes.items()):
                    mode = parse_mode(text)
                    if mode is not None:
                        literal = len(glob) - glob.count("*") - glob.count("?")
                        found.append((-literal, i, glob_regex(glob), mode))
            self._rules = [(regex, mode) for _, _, regex, mode in sorted(
                found, key=lambda r: (r[0], r[1]))]
        return self._rules

    def match(self, rel: str) -> int | None:
        """The mode the most specific matching glob gives ``rel``, or ``None``."""
        for regex, mode in self.rules:
            if regex.match(rel):
                return mode
        return None


def modes_digest(modes: Mapping[str, Any] | None) -> str:
    """A digest of an instance's ``modes`` (key order counts: it breaks ties)."""
    if not modes:
        return ""
    return digest(list(modes.items()))


def decide(rule: int | None, secret: bool, source: int | None) -> int:
    """The mode to write: a glob's, else 0600 for a secret, else the source's."""
    if rule is not None:
        return rule
    if secret:
        return SECRET_MODE
    return VERSION_MODE if source is None else source


def mode_record(rules: ModeRules, rel: str, secret: bool, source: int | None) -> list[Any]:
    """``[mode, secret, source, modes digest]`` for an output's record: ``source``
    is kept only when the source's mode decided (so that a ``chmod`` of a template
    that did not decide costs nothing)."""
    rule = rules.match(rel)
    mode = decide(rule, secret, source)
    decided_by_source = rule is None and not secret
    return [mode, int(secret), source if decided_by_source else None, rules.digest]


def secret_closure(paths: Iterable[str]) -> frozenset[str]:
    """Secret context paths and every path above them: a render that read any of
    these (``module.app.password``, or ``module.app`` as a whole) read a secret."""
    out: set[str] = set()
    for path in paths:
        parts = path.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(out)


def mode_str(mode: int) -> str:
    """``0o640`` as ``0640``."""
    return f"{mode:04o}"
