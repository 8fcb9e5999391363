"""``facs plan --diff``: a stale output's new bytes against those in ``BUILD/``,
every state value masked, in both (a rotated secret too).

:func:`facsimile.mask.state_values` knows every value any family has had (by
its keyed digest); an old file may still hold one the state never knew (its
digest key was remade, the value was typed in): every secret-shaped word of the
old file (a run of letters and digits with both, or a UUID) that the new
rendering does not have as it is is masked too. An orphan's content is never
shown."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import render as R
from ..build import Build
from ..build.make import version_bytes
from ..errors import FacsimileError
from ..mask import MASK, mask_text, state_values
from ..state import State

if TYPE_CHECKING:
    from . import Stale


class MaskedInt(int):
    """A generated number that prints as the mask but still adds and compares,
    so that ``{{ state.node_id + 1000 }}`` renders in a diff."""

    def __str__(self) -> str:
        return MASK

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return MASK


def masked_context(ctx: dict[str, Any], state: State) -> dict[str, Any]:
    """The context with every state value replaced by the mask."""
    import copy

    masked = copy.deepcopy(ctx)
    for path in state.kinds():
        parts = path.split(".")
        node: Any = masked["module"] if parts[0] == "module" else masked["state"]
        keys = parts[1:]
        for k in keys[:-1]:
            node = node.get(k, {})
        if isinstance(node, dict) and keys[-1] in node:
            value = node[keys[-1]]
            is_int = isinstance(value, int) and not isinstance(value, bool)
            node[keys[-1]] = MaskedInt(value) if is_int else MASK
    return masked


#: what a generated value looks like: a password or hex token (letters and
#: digits, both), or a UUID
_SECRET_SHAPED = re.compile(
    r"(?<![A-Za-z0-9])(?=[A-Za-z0-9]*[0-9])(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{8,}"
    r"(?![A-Za-z0-9])|[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def _mask_shaped(line: str, keep: set[str]) -> str:
    """``line`` with every secret-shaped word not in ``keep`` masked."""
    return _SECRET_SHAPED.sub(lambda m: m.group(0) if m.group(0) in keep else MASK, line)


def _mask_old_lines(old: list[str], masked_new: list[str], secrets: list[str]) -> list[str]:
    """Mask secrets in the old file, including values that have since changed.

    A line of the masked new rendering with ``********`` in it is a pattern: an
    old line that matches it has a (maybe rotated) secret at those places.
    """
    patterns = []
    for line in masked_new:
        if MASK in line:
            parts = [re.escape(p) for p in line.split(MASK)]
            patterns.append(re.compile("(.*?)".join(parts).join(["^", "$"]), re.S))
    keep = {w for line in masked_new for w in _SECRET_SHAPED.findall(line)}
    out = []
    for line in old:
        line = _mask_shaped(mask_text(line, secrets), keep)
        for pat in patterns:
            m = pat.match(line)
            if m:
                for g in sorted(range(1, (pat.groups or 0) + 1), reverse=True):
                    line = line[: m.start(g)] + MASK + line[m.end(g):]
                break
        out.append(line)
    return out


def _is_binary(data: bytes) -> bool:
    if b"\0" in data:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def render_error(build: Build, item: Stale) -> str | None:
    """Why a stale template output cannot be rendered (state values masked, so
    the message shows none), None when it can or is no template."""
    o = item.output
    if o is None or o.kind != "tmpl":
        return None
    inst = build.project.instances[o.instance]
    state = build.state(inst, write=False)
    try:
        R.render(build.env, o.name, build.search(inst, o.sub),
                 masked_context(build.context(inst, write=False, sub=o.sub), state),
                 build.root.base, this=o.this)
    except FacsimileError as exc:
        return mask_text(str(exc), state_values(state))
    return None


def diff_output(build: Build, item: Stale) -> str:
    """A unified diff of one stale output against BUILD/, every state value masked."""
    o = item.output
    if o is None:  # an orphan (maybe of a removed instance, whose state is not loaded)
        return f"  {item.path}: orphan, will be deleted\n"
    path = build.root.base / item.path
    old = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
    inst = build.project.instances[o.instance]
    state = build.state(inst, write=False)
    secrets = state_values(state)
    if o.kind == "extra":
        new = Path(o.source).read_bytes()
        masked_new = new.decode("utf-8", "replace").splitlines(keepends=True)
    elif o.kind == "genconfig":
        masked_mod = masked_context(build.context(inst, write=False, sub=o.sub),
                                    state)["module"]
        new = (json.dumps(masked_mod[o.name], indent=2, sort_keys=True) + "\n").encode()
        masked_new = new.decode().splitlines(keepends=True)
    elif o.kind == "version":  # etc/<project>.version: no template to render
        new = version_bytes(build.context(inst, write=False, sub=o.sub)["project"]["version"])
        masked_new = new.decode().splitlines(keepends=True)
    else:
        ctx = build.context(inst, write=False, sub=o.sub)
        search = build.search(inst, o.sub)
        try:
            masked = R.render(build.env, o.name, search, masked_context(ctx, state),
                              build.root.base, this=o.this)
        except FacsimileError as exc:
            return f"--- {item.path}\n+++ {item.path}\n! cannot render: {exc}\n"
        new = masked.data
        masked_new = new.decode("utf-8").splitlines(keepends=True)
    if _is_binary(old) or _is_binary(new):
        return f"Binary file {item.path} differs\n"
    old_lines = _mask_old_lines(old.decode("utf-8").splitlines(keepends=True), masked_new,
                                secrets)
    new_lines = [mask_text(line, secrets) for line in new.decode("utf-8")
                 .splitlines(keepends=True)]
    lines = difflib.unified_diff(
        old_lines, new_lines,
        fromfile=f"a/{item.path}" if old else "/dev/null",
        tofile=f"b/{item.path}",
    )
    text = "".join(ln if ln.endswith("\n") else ln + "\n\\ No newline at end of file\n"
                   for ln in lines)
    if not text and old == new:  # only its mode changed
        text = f"  (the content of {item.path} is the same)\n"
    elif not text:  # e.g. a rotated password: the only change is behind the mask
        text = f"  (no difference in {item.path} once generated values are masked)\n"
    return text


