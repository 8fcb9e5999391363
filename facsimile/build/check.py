"""The check: why an output is stale, from its record in doit's database.

The same check decides each output task's ``uptodate`` and makes ``facs plan``,
so the two always agree. It runs for every output on every run, so the common
path is kept to dict lookups and one ``stat``; it reads the stored record dict
by the keys of :mod:`facsimile.build.record` rather than building a
:class:`~facsimile.build.record.Record` per output.

A stale record of an instance with source checkouts is checked once more with
its paths moved to the checkouts in use (a version bump), by content; one then
found up to date is kept in :attr:`Checker.retargeted` for a run to save.

Also: the contexts against which every output of an instance was found up to
date (``.facsimile/verified.json``), and the records whose context digest a
run may bring up to date (:meth:`Checker.refreshed`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from stat import S_ISDIR, S_ISLNK, S_ISREG
from typing import Any

from .. import define as D
from ..digest import ABSENT, file_digest
from ..errors import BuildError
from ..render import LayerIndex
from .checkouts import retarget
from .digests import Digests, JsonCache
from .modes import MODES_PATH, decide, mode_record, mode_str
from .outputs import Output, Outputs
from .record import (
    KEY_CHECKS,
    KEY_CONTEXT,
    KEY_FILES,
    KEY_MODE,
    KEY_NAMES,
    KEY_OUTPUT,
    KEY_SOURCE,
    KEY_VALUES,
    Record,
)
from .validate import CheckRules, changed

DB_FILE = ".doit.db"
#: whether BUILD/ keeps the modes written (not on Windows: a file is 0666 or 0444)
MODES_KEPT = os.name != "nt"
VALUES = "_values_:"  # doit's key of a task's saved values in its database


class Checker:
    """Compares each output's record with what its inputs are now."""

    def __init__(self, outputs: Outputs, digests: Digests, index: LayerIndex) -> None:
        self.outputs = outputs
        self.digests = digests
        self.index = index
        self.project = outputs.project
        self._db: dict[str, Any] | None = None
        self._resolved_rel: dict[tuple[str, str | None, str], str] = {}
        # instances with records of an older context digest, or of older modes
        self.moved: set[str] = set()
        #: records up to date once their paths moved to a checkout's new version
        #: (:func:`~facsimile.build.checkouts.retarget`): a batched run saves them
        self.retargeted: dict[str, dict[str, Any]] = {}
        self._instance_dirs: dict[str, bool] = {}  # BUILD/<instance> there (see _present)
        # bound once: the check runs for every output
        self._known_files = digests.files
        self._fdigest = digests.fdigest
        self._context_digest = digests.context_digest
        self._src = outputs.src
        self._build_dir = outputs.build_dir
        self._src_mode = digests.modes
        self._rules = digests.rules
        self._checks = digests.checks

    @property
    def db(self) -> dict[str, Any]:
        """doit's database as saved by the last run (read-only here): the one doit
        loaded (:meth:`use_db`), else read from ``.doit.db``."""
        if self._db is None:
            self._db = read_db(self.project.root.base / DB_FILE)
        return self._db

    def use_db(self, data: dict[str, Any]) -> None:
        """Check against ``data``, the database doit has already loaded."""
        self._db = data

    def _present(self, instance: str, out: str) -> bool:
        """Whether there is something at ``out``, an output of ``instance`` that has no
        record: none when BUILD/<instance> is not there (looked at once a run, so a
        full build from scratch does not look for each of its outputs)."""
        there = self._instance_dirs.get(instance)
        if there is None:
            there = self._instance_dirs[instance] = os.path.lexists(
                f"{self._build_dir}{instance}")
        return there and os.path.lexists(out)

    @property
    def verified(self) -> JsonCache:
        """Context digests against which every output of an instance was last found
        up to date. A value change that no template reads leaves old digests in
        the records; this spares the following no-ops a per-value check."""
        return self.digests.cache("verified.json")

    def check(self, o: Output, *, every: bool = False) -> list[str]:
        """Why ``o`` is stale (empty when it is up to date); first reason unless ``every``."""
        entry = self.db.get(f"build:{o.instance}/{o.rel}")
        rec = entry.get(VALUES) if isinstance(entry, dict) else None
        out = f"{self._build_dir}{o.instance}{os.sep}{o.rel}"
        if not isinstance(rec, dict) or KEY_SOURCE not in rec:
            # no record: never built, or its last build failed (doit drops the record
            # of a failed task), or ``doit forget``
            return ["new" if not self._present(o.instance, out)
                    else "no record of its last build (it failed, or doit forget)"]
        try:
            st = os.lstat(out)  # a link there is not the output
        except OSError:
            return ["missing from BUILD"]
        if not S_ISREG(st.st_mode):  # never read through it: the build replaces it
            what = "a folder" if S_ISDIR(st.st_mode) else \
                "a link" if S_ISLNK(st.st_mode) else "not a file"
            return [f"{what} in BUILD where the output goes"]
        inst = self.project.instances[o.instance]
        reasons = self._files_changed(inst, o, rec, every)
        moved = None
        if reasons and self.project.sources(inst):
            # a checkout's new version: compare the same paths in the checkout in use
            moved = retarget(rec, self.outputs.checkout_prefixes(inst))
            if moved is not None:
                reasons = self._files_changed(inst, o, moved, every)
        if reasons and not every:
            return reasons
        values = rec.get(KEY_VALUES)
        if values:
            current = self._context_digest(inst, write=False, sub=o.sub)
            if rec.get(KEY_CONTEXT) != current:
                self.moved.add(o.instance)  # see refreshed
                if (self.verified.get(f"{o.instance}|{o.sub or ''}") != current
                        and self._values_changed(inst, o, values, reasons, every)
                        and not every):
                    return reasons
        m = rec.get(KEY_MODE)
        if m is None or (MODES_KEPT and st.st_mode & 0o7777 != m[0]) or (
                m[2] is not None and self._src_mode.get(o.source) != m[2]) or (
                m[3] != (self._rules.get(o.instance) or self.digests.mode_rules(inst)).digest):
            why = self._mode_changed(inst, o, m, st.st_mode & 0o7777)
            if why:
                reasons.append(why)
                if not every:
                    return reasons
        k = rec.get(KEY_CHECKS)
        rules = self._checks.get(o.instance) or self.digests.check_rules(inst)
        if (k[0] if k else "") != rules.digest:
            why = self._checks_changed(o, k, rules)
            if why:
                reasons.append(why)
                if not every:
                    return reasons
        o_rec = rec.get(KEY_OUTPUT)
        if o_rec and (st.st_mtime_ns, st.st_size) != (o_rec[0], o_rec[1]) and (
            file_digest(out, self.digests.key(write=False)) != o_rec[2]
        ):
            reasons.append("output modified in BUILD")
        if moved is not None and not reasons:
            self.retargeted[o.task] = moved
        return reasons

    def _files_changed(self, inst: D.Instance, o: Output, rec: dict[str, Any],
                       every: bool) -> list[str]:
        """Why ``o``'s own file, the files it read, or what its names load changed."""
        reasons: list[str] = []
        src = self._src(o)
        prev_src = rec.get(KEY_SOURCE)
        if prev_src != src:
            reasons.append(f"{'extra' if o.kind == 'extra' else 'template'} changed: {src}"
                           + (f" (was {prev_src})" if prev_src else ""))
            if not every:
                return reasons
        known = self._known_files
        for rel, dig in rec.get(KEY_FILES, {}).items():
            now = known.get(rel) or self._fdigest(rel)
            if now != dig:
                if rel == src:
                    what = "extra changed" if o.kind == "extra" else "template changed"
                else:
                    what = "include changed"
                reasons.append(f"{what}: {rel}" + (" (deleted)" if now == ABSENT else ""))
                if not every:
                    return reasons
        names = rec.get(KEY_NAMES)
        if names:
            self._names_changed(inst, o, names, reasons, every)
        return reasons

    def _mode_changed(self, inst: D.Instance, o: Output, m: list[Any] | None,
                      now: int) -> str | None:
        """Why ``o``'s mode is wrong now, or ``None``; reached only when one of the
        inputs of its mode moved (see :mod:`facsimile.build.modes`)."""
        if m is None:
            return "mode not recorded (built before modes were)"
        if MODES_KEPT and now != m[0]:
            return f"mode modified in BUILD: {mode_str(now)} (built {mode_str(m[0])})"
        rules = self.digests.mode_rules(inst)
        source = self.digests.mode(o.source) if o.kind in ("tmpl", "extra") else None
        modes_moved = m[3] != rules.digest
        src_moved = m[2] is not None and source != m[2]
        if not src_moved and (not modes_moved
                              or self.verified.get(f"{o.instance}|modes") == rules.digest):
            return None
        if modes_moved:
            self.moved.add(o.instance)  # see refreshed
        # a recorded source mode means no glob matched under the recorded modes
        want = decide(rules.match(o.rel) if modes_moved else None, bool(m[1]), source)
        if want == m[0]:
            return None
        why = MODES_PATH if modes_moved else f"the mode of {self._src(o)}"
        return f"mode changed: {mode_str(m[0])} -> {mode_str(want)} ({why})"

    def _checks_changed(self, o: Output, k: list[Any] | None,
                        rules: CheckRules) -> str | None:
        """Why ``o`` must be checked again now that its instance's ``validate`` moved,
        or ``None`` (then its record is brought up to date: :meth:`refreshed`)."""
        self.moved.add(o.instance)
        if self.verified.get(f"{o.instance}|validate") == rules.digest:
            return None
        return changed([c.text for c in rules.match(o.rel)], k[1] if k else [])

    def _names_changed(self, inst: D.Instance, o: Output, names: dict[str, str],
                       reasons: list[str], every: bool) -> bool:
        """Add a reason per template name that now resolves to another file."""
        found = False
        for name, rel in names.items():
            key = (o.instance, o.sub, name)
            now_rel = self._resolved_rel.get(key)
            if now_rel is None:
                hit = self.index.resolve(name, self.outputs.search(inst, o.sub))
                now_rel = self._resolved_rel[key] = ABSENT if hit is None else \
                    self.outputs.rel(hit)
            if now_rel != rel:
                reasons.append(f"include changed: {name} now from {now_rel}")
                found = True
                if not every:
                    break
        return found

    def _values_changed(self, inst: D.Instance, o: Output, values: dict[str, str],
                        reasons: list[str], every: bool) -> bool:
        """Add a reason per context value read whose digest changed."""
        found = False
        for path, dig in values.items():
            if self.digests.value_digest(inst, path, o.sub) != dig:
                base = path.removesuffix("[keys]")
                state_paths = self.project.secret_paths(
                    self.digests.state(inst, write=False), every=True, sub=o.sub)
                kind = "state" if base in state_paths else "value"
                what = f"{base} (its keys)" if path.endswith("[keys]") else path
                reasons.append(f"{kind} changed: {what}")
                found = True
                if not every:
                    break
        return found

    def note_checked(self, inst: D.Instance, outputs: list[Output], all_fresh: bool) -> None:
        """After checking every output of ``inst``: remember or forget its contexts."""
        for sub in {o.sub for o in outputs}:
            key = f"{inst.name}|{sub or ''}"
            if all_fresh:
                self.verified[key] = self.digests.context_digest(inst, write=False, sub=sub)
            else:
                self.verified.pop(key, None)
        key = f"{inst.name}|modes"
        if all_fresh and outputs:
            self.verified[key] = self.digests.mode_rules(inst).digest
        else:
            self.verified.pop(key, None)
        key = f"{inst.name}|validate"
        digest = self.digests.check_rules(inst).digest
        if all_fresh and outputs and digest:
            self.verified[key] = digest
        else:
            self.verified.pop(key, None)

    def refreshed(self, instance: str, made: set[str]) -> list[tuple[str, dict[str, Any]]]:
        """After making an instance's stale outputs: the records of the others, given
        the current context digest and modes, as ``(task name, values)`` to save.

        They were found up to date against the current context (their value
        digests compared, or the instance's context verified) and modes, so their
        digests hold for them. Without this, a context that moved through a value
        no template reads (or ``modes`` that changed no output's mode) would cost a
        value-by-value (or glob-by-glob) check of every output on the next run.
        Only done when the database is being written anyway.
        """
        if instance not in self.moved:
            return []  # every record checked had the current digests already
        inst = self.project.instances[instance]
        data = self.db
        current: dict[str | None, str] = {}
        out = []
        for o in self.outputs.outputs(inst).values():
            if o.rel in made:
                continue
            entry = data.get(o.task)
            rec = entry.get(VALUES) if isinstance(entry, dict) else None
            if not isinstance(rec, dict) or KEY_SOURCE not in rec:
                continue
            changes: dict[str, Any] = {}
            if KEY_CONTEXT in rec:
                # the digest they were checked against (state as it was before this run)
                now = current.get(o.sub)
                if now is None:
                    now = current[o.sub] = self.digests.context_digest(inst, write=False,
                                                                       sub=o.sub)
                if rec[KEY_CONTEXT] != now:
                    changes["context"] = now
            mode = self._refreshed_mode(inst, o, rec.get(KEY_MODE))
            if mode is not None:
                changes["mode"] = mode
            k = rec.get(KEY_CHECKS)
            rules = self.digests.check_rules(inst)
            if (k[0] if k else "") != rules.digest:
                changes["checks"] = rules.record(o.rel)
            if changes:
                out.append((o.task, Record.from_values(rec).replace(**changes).to_values()))
        return out

    def _refreshed_mode(self, inst: D.Instance, o: Output, m: list[Any] | None) -> list[Any] | None:
        """An up-to-date output's mode record made against the current ``modes``,
        when it was made against older ones (else ``None``)."""
        rules = self.digests.mode_rules(inst)
        if m is None or m[3] == rules.digest:
            return None
        source = self.digests.mode(o.source) if o.kind in ("tmpl", "extra") else None
        fresh = mode_record(rules, o.rel, bool(m[1]), source)
        return fresh if fresh[0] == m[0] else None


def read_db(path: Path) -> dict[str, Any]:
    """doit's JSON database (nothing when there is none yet).

    One that cannot be read is an error, as it is for doit itself: a plan that
    called every output "new" would disagree with the build.
    """
    from .collector import collector_paused

    try:
        with open(path, encoding="utf-8") as fh, collector_paused():
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as exc:
        raise BuildError(f"doit's database cannot be read ({exc}); delete it to rebuild "
                         "everything, or restore it", file=path.name) from exc
    problem = shape_problem(data)
    if problem:
        raise BuildError(f"doit's database {problem}; delete it to rebuild everything, "
                         "or restore it", file=path.name)
    return data


def shape_problem(data: Any) -> str | None:
    """Why ``data`` is not doit's database as facsimile writes it (task name ->
    record, each an object whose ``deps:`` is a list and ``_values_:`` an object)."""
    if not isinstance(data, dict):
        return "is not a JSON object"
    for task, rec in data.items():
        if not isinstance(rec, dict) or not isinstance(rec.get("deps:", []), list) \
                or not isinstance(rec.get(VALUES, {}), dict):
            return f"has a record of the wrong shape ({task!r})"
    return None
