"""``deploy.rollout`` as a definition holds it: the sizes of the waves, the
health check, its timeout, the failure budget and the pause between waves,
checked once where the definitions are read (the sync takes them in
``facsimile.sync.rollout``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import DefinitionError

DEFAULT_WAVES: tuple[int | str, ...] = ("100%",)


@dataclass(frozen=True)
class Rollout:
    """``deploy.rollout`` checked."""

    waves: tuple[int | str, ...] = DEFAULT_WAVES
    check: tuple[str, ...] = ()
    check_timeout: float = 30.0
    max_failed: int | str = 0
    pause: float = 0.0

    def allowed(self, total: int) -> int:
        """How many of ``total`` hosts may fail before the sync stops."""
        return count(self.max_failed, total, floor=True)

    def sizes(self, total: int) -> list[int]:
        """The size of each wave for ``total`` hosts (summing to ``total``)."""
        out: list[int] = []
        specs = list(self.waves)
        while sum(out) < total:
            spec = specs.pop(0) if len(specs) > 1 else specs[0]
            out.append(min(max(1, count(spec, total)), total - sum(out)))
        return out


def count(spec: int | str, total: int, floor: bool = False) -> int:
    """A number of hosts, or a percentage of ``total`` (rounded up, or down with ``floor``)."""
    if isinstance(spec, str) and spec.endswith("%"):
        share = float(spec[:-1]) * total / 100
        return int(math.floor(share) if floor else math.ceil(share))
    return int(spec)


def _size(value: Any, key: str) -> int | str:
    """A wave size or failure budget as given: a whole number, or ``"N%"``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.endswith("%"):
        try:
            if 0 <= float(value[:-1]) <= 100:
                return value
        except ValueError:
            pass
    raise DefinitionError(f"deploy.rollout.{key}: {value!r} is neither a number of hosts nor a "
                    "percentage such as \"10%\"")


def parse_rollout(spec: Any) -> Rollout:
    """``deploy.rollout`` checked (a ``DefinitionError`` without a file when it is wrong)."""
    if not isinstance(spec, Mapping):
        raise DefinitionError("deploy.rollout must be an object (waves, check, check_timeout, "
                        "max_failed, pause)")
    unknown = sorted(set(spec) - {"waves", "check", "check_timeout", "max_failed", "pause"})
    if unknown:
        raise DefinitionError(f"deploy.rollout: unknown key {unknown[0]!r} (keys: waves, check, "
                        "check_timeout, max_failed, pause)")
    waves = spec.get("waves", list(DEFAULT_WAVES))
    if not isinstance(waves, list) or not waves:
        raise DefinitionError("deploy.rollout.waves must be a list of wave sizes, e.g. "
                              "[1, \"10%\", \"100%\"]")
    sizes = tuple(_size(w, "waves") for w in waves)
    if any(s in (0, "0%") for s in sizes):
        raise DefinitionError("deploy.rollout.waves: a wave of no hosts")
    check = spec.get("check", [])
    if isinstance(check, str):
        check = [check]
    if not isinstance(check, list) or not all(isinstance(c, str) for c in check):
        raise DefinitionError("deploy.rollout.check must be a command or a list of commands")
    numbers = {}
    for key, default in (("check_timeout", 30.0), ("pause", 0.0)):
        value = spec.get(key, default)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise DefinitionError(f"deploy.rollout.{key} must be a number of seconds")
        numbers[key] = float(value)
    return Rollout(sizes, tuple(check), numbers["check_timeout"],
                   _size(spec.get("max_failed", 0), "max_failed"), numbers["pause"])


