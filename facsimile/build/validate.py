"""Validated outputs: the checks an instance's ``validate`` gives an output, run on
its rendered bytes in the temporary file before that file is moved into
``BUILD/`` (:func:`facsimile.atomic.write_atomic`'s ``check``).

A failed check raises :class:`CheckError` naming the output, what it is made
from, the check and the first lines it printed (every generated value
masked); the rename does not happen, so the previous good file stays, and the
output task fails, so its record is dropped and the next run tries again.

Each output's record keeps, under ``KEY_CHECKS``, a digest of the instance's
``validate`` and the checks it passed, so that a no-op compares one digest
and matches no glob (as for ``modes``, :mod:`facsimile.build.modes`), and a
new or changed check makes its outputs stale.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..commands import run_shell
from ..define.checks import PATH, Check, parse_checks
from ..digest import digest
from ..errors import BuildError, FacsimileError

if TYPE_CHECKING:
    from . import Build, Output

#: lines of a failed check's output shown, and characters of each
SHOWN_LINES = 10
LINE_CHARS = 300
#: the context path named in a plan's reason when ``validate`` decides a change
VALIDATE_PATH = "instance.validate"


class CheckError(BuildError):
    """An output failed one of its ``validate`` checks (the previous file is kept);
    ``check``: the check's spec."""

    def __init__(self, message: str, check: str = "") -> None:
        super().__init__(message)
        self.check = check


class CheckRules:
    """An instance's ``validate``, compiled once per run."""

    def __init__(self, validate: Mapping[str, Any] | None) -> None:
        self.validate = validate or {}
        self.digest = validate_digest(validate)  # all a no-op looks at
        self._rules: list[tuple[re.Pattern[str], tuple[Check, ...]]] | None = None

    @property
    def rules(self) -> list[tuple[re.Pattern[str], tuple[Check, ...]]]:
        """``(regex, checks)`` in key order; compiled when first matched."""
        if self._rules is None:
            from ..globs import glob_regex  # imported only when used

            self._rules = [(glob_regex(glob), parse_checks(value))
                           for glob, value in self.validate.items() if value is not None]
        return self._rules

    def match(self, rel: str) -> tuple[Check, ...]:
        """The checks of every glob that matches ``rel``, in key order, each once."""
        found: dict[Check, None] = {}
        for regex, checks in self.rules:
            if regex.match(rel):
                found.update(dict.fromkeys(checks))
        return tuple(found)

    def record(self, rel: str) -> list[Any] | None:
        """``[validate digest, [check, ...]]`` for ``rel``'s record (``None`` when the
        instance has no ``validate``)."""
        if not self.digest:
            return None
        return [self.digest, [c.text for c in self.match(rel)]]


def validate_digest(validate: Mapping[str, Any] | None) -> str:
    """A digest of an instance's ``validate`` (``""`` when it has none)."""
    if not validate:
        return ""
    return digest(list(validate.items()))


def changed(now: list[str], was: list[str]) -> str | None:
    """Why an output must be checked again: a check it has not passed (a check
    removed needs no new run: its record is brought up to date)."""
    new = [c for c in now if c not in was]
    if not new:
        return None
    return (f"check changed: {', '.join(now)} (was {', '.join(was) or 'none'}; "
            f"{VALIDATE_PATH})")


def run_checks(checks: tuple[Check, ...], path: str, data: bytes, *, shown: str,
               source: str, root: str, mask: Callable[[str], str]) -> None:
    """Run each check on ``data``, written at ``path``; raise :class:`CheckError` at
    the first that fails. ``shown``: the output as the message names it
    (``BUILD/<instance>/<rel>``, also in place of ``path`` in what a command
    prints); ``source``: what it is made from; ``mask``: hides generated values."""
    for check in checks:
        failure = _builtin(check.spec, data, shown) if check.builtin else \
            _command(check, path, root)
        if failure is None:
            continue
        how, text = failure
        lines = mask(text.replace(path, shown)).splitlines()
        lines = [ln.rstrip().expandtabs(4)[:LINE_CHARS] for ln in lines if ln.strip()]
        body = "".join(f"\n    {ln}" for ln in lines[:SHOWN_LINES])
        if len(lines) > SHOWN_LINES:
            body += f"\n    ... ({len(lines) - SHOWN_LINES} more lines)"
        raise CheckError(f"{shown}: check {check.spec!r} {how} ({source})"
                         + (f":{body}" if body else ""), check.spec)


def _builtin(name: str, data: bytes, shown: str) -> tuple[str, str] | None:
    """Parse ``data`` as ``name`` says; ``("failed", why)`` when it does not parse."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return "failed", f"not UTF-8: {exc}"
    if name == "yaml" and not _has_yaml():
        return "could not run", ("the yaml check needs PyYAML (pip install pyyaml, or "
                                 "pip install 'facsimile[yaml]')")
    try:
        if name == "json":
            import json

            json.loads(text)
        elif name == "toml":
            import tomllib

            tomllib.loads(text)
        elif name == "ini":
            import configparser

            configparser.ConfigParser(interpolation=None).read_string(text, source=shown)
        else:
            import yaml

            for _ in yaml.safe_load_all(text):
                pass
    except Exception as exc:  # each parser's own error, whatever its class
        return "failed", str(exc) or type(exc).__name__
    return None


def _has_yaml() -> bool:
    """Whether PyYAML is installed (it is an optional dependency: ``facsimile[yaml]``)."""
    try:
        import yaml  # noqa: F401
    except ImportError:
        return False
    return True


def _command(check: Check, path: str, root: str) -> tuple[str, str] | None:
    """Run a command check, ``{path}`` the file's shell-quoted path, in the root,
    with no input; it fails on a non-zero exit or at its timeout (its process
    group killed)."""
    try:
        ran = run_shell(check.spec.replace(PATH, shlex.quote(path)), check.timeout, cwd=root)
    except OSError as exc:
        return "could not run", str(exc)
    if ran.timed_out:
        return f"timed out after {check.timeout:g} s (killed)", ran.output
    if ran.code == 0:
        return None
    code = ran.code
    how = f"failed (killed by signal {-code})" if code < 0 else f"failed (exit status {code})"
    return how, ran.output


def source_label(build_src: str, kind: str) -> str:
    """What a failed check says the output is made from: ``template tmpl/...``."""
    if kind == "tmpl":
        return f"template {build_src}"
    if kind == "extra":
        return f"extra file {build_src}"
    return build_src


def failed_check(build: Build, o: Output) -> CheckError | None:
    """How ``o`` as it would be made now fails a check (``None``: it passes, has no
    check, or cannot be rendered, which the plan says itself). The check's view:
    state as it is, nothing written, the file checked in a temporary folder."""
    import tempfile

    from ..mask import scrub

    inst = build.project.instances[o.instance]
    checks = build.digests.check_rules(inst).match(o.rel)
    if not checks:
        return None
    try:
        data = build.maker.data(inst, o, write=False)
    except FacsimileError:
        return None
    state = build.state(inst, write=False)
    with tempfile.TemporaryDirectory(prefix="facs-check-") as tmp:
        path = os.path.join(tmp, os.path.basename(o.rel))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:
            run_checks(checks, path, data, shown=f"BUILD/{o.instance}/{o.rel}",
                       source=source_label(build.src(o), o.kind),
                       root=str(build.root.base), mask=lambda t: scrub(t, state))
        except CheckError as exc:
            return exc
    return None


def failed_checks(build: Build, instance: str) -> list[str]:
    """The messages of an instance's stale outputs that would fail a check (none
    when it has no ``validate``)."""
    inst = build.project.instances[instance]
    rules = build.digests.check_rules(inst)
    if not rules.digest:
        return []
    out = []
    for o in build.outputs(inst).values():
        if rules.match(o.rel) and build.check(o):
            failure = failed_check(build, o)
            if failure is not None:
                out.append(failure.message)
    return out


def refuse_failed_checks(project: Any, instance: str) -> None:
    """Before a sync moves anything: raise :class:`CheckError` when an output of the
    instance fails its check (its previous file is in ``BUILD/``, not to be pushed
    as if it were current)."""
    if not project.instance(instance).data.get("validate"):
        return
    from . import Build

    failures = failed_checks(Build(project), instance)
    if failures:
        raise CheckError(f"instance {instance} has {len(failures)} output(s) failing their "
                         "checks; nothing was synced:\n" + "\n".join(failures))
