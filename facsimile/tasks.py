"""doit tasks: one ``build:<instance>/<path>`` per output, exact invalidation.

Each output task saves, in doit's database, digests of what it was made from
(``values``): the content digest of each template file it loaded, the names
they were loaded by, a digest of each context value it read (never the value),
a digest of the whole instance context, and the output's own stat and digest.
When tasks are created, ``uptodate`` is computed from those records: ``True``
for an up-to-date output (so doit calls nothing per task on a no-op, see
PERF-NOTES), and for a stale one a callable that returns False with the
reasons as its arguments, which ``doit info`` prints. :meth:`Build.check` is
also what ``facs plan`` uses, so the two always agree.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from doit.reporter import ExecutedOnlyReporter

from . import checkout as C
from . import definitions as D
from . import pool as P
from . import render as R
from . import state as S
from .errors import BuildError, FacsimileError, TemplateError
from .project import Project
from .state import MASK, State

DB_FILE = ".doit.db"
FAN_OUT = ("{module}", "{host}", "{daemon}")  # placeholders of fan-out template paths


class Output(NamedTuple):
    """One file of ``BUILD/<instance>/``: where it comes from (a tuple: 10,000
    of them are made on every run, and a frozen dataclass costs three times as much)."""

    instance: str
    rel: str  # path inside BUILD/<instance>/
    kind: str  # "tmpl", "extra", "genconfig" or "version"
    name: str  # template name (path inside its layer), extra path, or module
    source: str  # the file it is made from (absolute)
    this: str | None = None  # fan-out: context path bound to ``this`` ("module.app")
    sub: str | None = None  # subproject whose modules and templates it uses

    @property
    def task(self) -> str:
        return f"build:{self.instance}/{self.rel}"


class Record(dict):
    """Saved values of an output task. Falsy, so doit does not store it twice
    (doit also saves a truthy dict result as ``result:``)."""

    def __bool__(self) -> bool:
        return False


def stale(*reasons: str) -> bool:
    """Always false: a stale task's ``uptodate`` entry, whose args say why (``doit info``)."""
    return False


def uptodate(reasons: list[str]) -> Any:
    """``True``, or ``(stale, reasons, {})`` so that ``doit info`` shows the reasons."""
    return (stale, list(reasons), {}) if reasons else True


@dataclass
class Build:
    """Everything one run needs, created once: the project, layer index, environment."""

    project: Project
    index: R.LayerIndex = field(init=False)
    _env: Any = field(default=None, init=False)
    _outputs: dict[str, dict[str, Output]] = field(default_factory=dict, init=False)
    _layers: dict[tuple[str, str, str | None], dict[str, Output]] = field(
        default_factory=dict, init=False)
    _ctx: dict[tuple[str, str | None, bool], dict[str, Any]] = field(
        default_factory=dict, init=False)
    _ctx_digest: dict[tuple[str, str | None, bool], str] = field(default_factory=dict, init=False)
    _val_digest: dict[tuple[str, str | None, str], str] = field(default_factory=dict, init=False)
    _built_digest: dict[tuple[str, str | None, str], str] = field(default_factory=dict,
                                                                  init=False)
    _fdigest: dict[str, str] = field(default_factory=dict, init=False)
    _db: dict[str, Any] | None = field(default=None, init=False)
    _search_cache: dict[tuple[str, str | None], tuple[str, ...]] = field(
        default_factory=dict, init=False)
    _resolved: dict[tuple[tuple[str, ...], str], str] = field(default_factory=dict, init=False)
    _resolved_rel: dict[tuple[str, str | None, str], str] = field(default_factory=dict,
                                                                  init=False)
    _moved: set[str] = field(default_factory=set, init=False)  # instances with old "c"s
    _modes: dict[str, int] = field(default_factory=dict, init=False)
    _caches: dict[str, JsonCache] = field(default_factory=dict, init=False, repr=False)
    _state_digest: dict[tuple[str, bool], tuple[list[int] | None, str]] = field(
        default_factory=dict, init=False, repr=False)
    _key: bytes | None = field(default=None, init=False, repr=False)
    _key_written: bool = field(default=False, init=False)
    _key_made: bool = field(default=False, init=False)  # in this run: digests before differ
    # a batched run's plan: the batches that will run, in doit's order, that a
    # helper process may take (see facsimile.pool)
    plan: list[P.Batch] = field(default_factory=list, init=False, repr=False)
    jobs: int = field(default=1, init=False)  # processes the plan may use
    _helper: P.Helper | bool | None = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = R.LayerIndex(self.project.root.base)
        self._prefix = str(self.project.root.base) + os.sep
        self._build_dir = str(self.project.root.build) + os.sep

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickles as its root: a process rebuilds its own from the model cache."""
        return (_build_for_root, (str(self.project.root.base),))

    @property
    def root(self) -> D.Root:
        return self.project.root

    def helper(self) -> P.Helper | None:
        """The run's helper processes, started by the first action that asks when the
        plan is worth it (:func:`facsimile.pool.helpers`); else ``None``."""
        if self._helper is False:
            self._helper = None
            count = P.helpers(self.plan, self.jobs)
            if count:
                self.key(write=True)  # made once, before there are two processes
                with contextlib.suppress(OSError):  # no semaphores, no fork: one process
                    self._helper = P.Helper(self.plan, lambda b: _helper_work(self, b), count)
                    _on_dump(self._helper)
        return self._helper  # type: ignore[return-value]

    @property
    def env(self) -> Any:
        if self._env is None:
            self._env = R.make_environment(self.index)
        return self._env

    # ------------------------------------------------------------ layers

    def tmpl_layers(self, inst: D.Instance, sub: str | None = None) -> list[Path]:
        """Template layer folders, lowest first: source checkouts' folders, then tmpl/."""
        if sub is not None:
            folder = self.project.subprojects()[sub]["tmpl"]
            return [folder / layer for layer in inst.layers]
        folders = [C.ensure(src, self.root.src) / src.tmpl for src in self.project.sources(inst)]
        return [*folders, *(self.root.tmpl / layer for layer in inst.layers)]

    def search(self, inst: D.Instance, sub: str | None = None) -> tuple[str, ...]:
        """Template search path, highest layer first, then ``_lib`` (cached; strings,
        since it keys a cache on every template load and a Path hashes slowly)."""
        key = (inst.name, sub)
        found = self._search_cache.get(key)
        if found is None:
            found = tuple(str(f) for f in (*reversed(self.tmpl_layers(inst, sub)),
                                           self.root.tmpl / R.LIB))
            self._search_cache[key] = found
        return found

    def rel(self, path: str) -> str:
        """``path`` relative to the root, by string (hot path)."""
        return path[len(self._prefix):] if path.startswith(self._prefix) else path

    def outputs(self, inst: D.Instance) -> dict[str, Output]:
        """Every output of ``inst``: later layers replace earlier ones."""
        found = self._outputs.get(inst.name)
        if found is not None:
            return found
        sources = self.project.sources(inst)
        folders = tuple(str(f) for f in self.tmpl_layers(inst)) if sources else ()
        tmpl, extra = self._layer_files(tuple(inst.layers), folders)
        if any("{" in rel for rel in tmpl):
            tmpl = self._fan_out(inst, tmpl)
        gen = {}
        for mname, mdata in inst.modules.items():
            if mdata.get("genconfig"):
                rel = str(mdata.get("genconfig_path") or f"etc/{mname}.json")
                gen[rel] = Output("", rel, "genconfig", mname, str(self.root.project_file),
                                  f"module.{mname}")
        version = self.project.data.get("version")
        if version is not None:
            rel = f"etc/{self.project.name}.version"
            gen[rel] = Output("", rel, "version", self.project.name,
                              str(self.root.project_file), "project.version")
        for a_map, b_map in ((tmpl, extra), (tmpl, gen), (extra, gen)):
            both = sorted(set(a_map) & set(b_map)) if a_map and b_map else ()
            if both:
                a, b = a_map[both[0]], b_map[both[0]]
                raise BuildError(
                    f"{self.src(a)} and {self.src(b)} both make "
                    f"BUILD/{inst.name}/{both[0]}: rename or remove one"
                )
        name = inst.name
        result = {rel: Output(name, *o[1:]) for rel, o in sorted({**tmpl, **extra, **gen}.items())}
        self._outputs[name] = result
        return result

    def _layer_files(self, layers: tuple[str, ...], folders: tuple[str, ...]) -> tuple[
            dict[str, Output], dict[str, Output]]:
        """Templates and extra files of a stack of layers, by output path, a later
        layer's replacing an earlier one's; the outputs name no instance yet.
        ``folders``: the template folders when source checkouts add some, else
        ``tmpl/<layer>``."""
        tmpl: dict[str, Output] = {}
        extra: dict[str, Output] = {}
        base = {"tmpl": str(self.root.tmpl), "extra": str(self.root.extra)}
        for folder in folders or [f"{base['tmpl']}{os.sep}{layer}" for layer in layers]:
            tmpl.update(self._folder_outputs(folder, "tmpl", None))
        for layer in layers:
            extra.update(self._folder_outputs(f"{base['extra']}{os.sep}{layer}", "extra", None))
        for sub, spec in self.project.subprojects().items():
            for layer in layers:
                tmpl.update(self._folder_outputs(str(spec["tmpl"] / layer), "tmpl", sub))
                extra.update(self._folder_outputs(str(spec["extra"] / layer), "extra", sub))
        return tmpl, extra

    def _folder_outputs(self, folder: str, kind: str, sub: str | None) -> dict[str, Output]:
        """The outputs one layer folder makes (once per run; they name no instance)."""
        key = (folder, kind, sub)
        found = self._layers.get(key)
        if found is None:
            found = self._layers[key] = {}
            prefix = f"{sub}/" if sub else ""
            for rel, path in self.index.files(folder).items():
                out = prefix + (rel[:-3] if kind == "tmpl" and rel.endswith(".j2") else rel)
                found[out] = Output("", out, kind, rel, path, sub=sub)
        return found

    def _fan_out(self, inst: D.Instance, tmpl: dict[str, Output]) -> dict[str, Output]:
        """Templates named with ``{module}``, ``{host}`` or ``{daemon}``: one output per
        item (a subproject's template fans out over its own modules and daemons)."""
        from .project import daemons

        out: dict[str, Output] = {}
        for rel, o in tmpl.items():
            keys = [k for k in FAN_OUT if k in rel] if "{" in rel else []
            if not keys:
                out[rel] = o
                continue
            if len(keys) > 1:
                raise BuildError(f"{self.src(o)}: a template path may fan out over one of "
                                 f"{', '.join(FAN_OUT)}, not {' and '.join(keys)}")
            key = keys[0]
            modules = self.project.subprojects()[o.sub]["modules"] if o.sub else inst.modules
            if key == "{module}":
                items = [(m, f"module.{m}") for m in modules]
            elif key == "{host}":
                items = [(h, f"hosts.{h}") for h, _ in inst.hosts]
            else:
                items = [(d, f"daemons.{d}") for d, _ in daemons(modules)]
            for name, path in items:
                new = rel.replace(key, name)
                out[new] = Output(o.instance, new, o.kind, o.name, o.source, path, o.sub)
        return out

    def src(self, o: Output) -> str:
        """What an output is made from, as the user names it."""
        if o.kind == "genconfig":
            return f"genconfig of module {o.name}"
        if o.kind == "version":
            return "project version"
        return self.rel(o.source)

    def out_str(self, o: Output) -> str:
        return f"{self._build_dir}{o.instance}{os.sep}{o.rel}"

    # ------------------------------------------------------------ context

    def state(self, inst: D.Instance, *, write: bool) -> State:
        return self.project.state(inst, write=write)

    def context(self, inst: D.Instance, *, write: bool, sub: str | None = None) -> dict[str, Any]:
        key = (inst.name, sub, write)
        if key not in self._ctx:
            self._ctx[key] = self.project.context(inst, self.state(inst, write=write), sub=sub)
        return self._ctx[key]

    def key(self, *, write: bool) -> bytes:
        """The root's digest key (see :func:`facsimile.state.digest_key`), once per run."""
        if self._key is None or (write and not self._key_written):
            old, self._key = self._key, S.digest_key(self.root.state, write=write)
            self._key_written = write
            self._key_made = self._key_made or (old is not None and old != self._key)
        return self._key

    def context_digest(self, inst: D.Instance, *, write: bool, sub: str | None = None) -> str:
        key = (inst.name, sub, write)
        found = self._ctx_digest.get(key)
        if found is None:
            state = self.state_digest(inst, write=write)
            read = self._ctx_digest.get((inst.name, sub, False)) if write else None
            if read is not None and state == self.state_digest(inst, write=False):
                found = read  # the state is as the check read it: so is the context
            else:
                plain = self.project.context_digest(inst, state, sub)
                found = R.bytes_digest(plain.encode(), self.key(write=write))
            self._ctx_digest[key] = found
        return found

    def state_digest(self, inst: D.Instance, *, write: bool) -> str:
        """A keyed digest of the family's state, once per run and family.

        For the check (``write=False``) it comes from ``.facsimile/state.json``
        while the state file's stat and the family's wants are as they were: a
        no-op then reads no state file. For the build, it is the check's when the
        file is still the one the check saw.
        """
        fam = inst.family
        hit = self._state_digest.get((fam, write))
        if hit is not None:
            return hit[1]
        path = S.state_path(self.root.state, fam)
        if write:
            state = self.state(inst, write=True)
            stamp = _stamp(path)  # after any generating
            read = self._state_digest.get((fam, False))
            if read is not None and stamp is not None and read[0] == stamp and not self._key_made:
                digest = read[1]
            else:
                digest = S.data_digest(state.data, self.key(write=True))
        else:
            stamp = _stamp(path)
            cache = self._state_cache()
            wants = S.wants_digest(self.project.family_wants(fam))
            entry = cache.get(fam)
            if stamp is not None and isinstance(entry, list) and entry[:-1] == [*stamp, wants]:
                digest = entry[-1]
            else:
                state = self.state(inst, write=False)
                digest = S.data_digest(state.data, self.key(write=False))
                if stamp is not None and not state.generated:
                    cache[fam] = [*stamp, wants, digest]
                else:
                    cache.pop(fam, None)
        self._state_digest[(fam, write)] = (stamp, digest)
        return digest

    def _state_cache(self) -> JsonCache:
        """``.facsimile/state.json``: ``{family: [*stamp, wants digest, state digest]}``,
        and under ``""`` which digest key made them (another key: all dropped)."""
        fresh = "state.json" not in self._caches
        cache = self.cache("state.json")
        if fresh:
            key_id = R.bytes_digest(b"facsimile state digests", self.key(write=False))
            if cache.get("") != key_id:
                cache.clear()
                cache[""] = key_id
        return cache

    def value_digest(self, inst: D.Instance, path: str, sub: str | None = None) -> str:
        key = (inst.name, sub, path)
        if key not in self._val_digest:
            value = R.lookup_path(self.context(inst, write=False, sub=sub), path)
            self._val_digest[key] = R.digest(value, self.key(write=False))
        return self._val_digest[key]

    # ------------------------------------------------------------ files

    def mode(self, path: str) -> int:
        """Permission bits of a source file, once per run."""
        m = self._modes.get(path)
        if m is None:
            m = self._modes[path] = os.stat(path).st_mode & 0o7777
        return m

    def fdigest(self, rel: str) -> str:
        """Content digest of a file under the root, once per run (templates are few)."""
        if rel not in self._fdigest:
            try:
                self._fdigest[rel] = R.file_digest(self.root.base / rel)
            except OSError:
                self._fdigest[rel] = R.ABSENT
        return self._fdigest[rel]

    # ------------------------------------------------------------ records

    @property
    def db(self) -> dict[str, Any]:
        """doit's database as saved by the last run (read-only here).

        Inside a doit run, doit has loaded it before creating tasks: use that.
        """
        if self._db is None:
            from doit.globals import Globals

            from .doitdb import FacsimileDB

            manager = getattr(Globals, "dep_manager", None)
            backend = getattr(manager, "backend", None)
            path = str(self.root.base / DB_FILE)
            if isinstance(backend, FacsimileDB) and os.path.abspath(backend.name) == path:
                self._db = backend.data
            else:
                self._db = read_db(Path(path))
        return self._db

    # ------------------------------------------------------------ the check

    def check(self, o: Output, *, every: bool = False) -> list[str]:
        """Why ``o`` is stale (empty when it is up to date); first reason unless ``every``.

        Runs for every output on every run: the common path is kept to dict
        lookups and one ``stat``.
        """
        entry = self.db.get(f"build:{o.instance}/{o.rel}")
        rec = entry.get("_values_:") if isinstance(entry, dict) else None
        out = f"{self._build_dir}{o.instance}{os.sep}{o.rel}"
        if not isinstance(rec, dict) or "s" not in rec:
            # no record: never built, or its last build failed (doit drops the record
            # of a failed task), or ``doit forget``
            return ["new" if not os.path.lexists(out)
                    else "no record of its last build (it failed, or doit forget)"]
        try:
            st = os.stat(out)
        except OSError:
            return ["missing from BUILD"]
        reasons: list[str] = []
        src = self.src(o)
        prev_src = rec.get("s")
        if prev_src != src:
            reasons.append(f"{'extra' if o.kind == 'extra' else 'template'} changed: {src}"
                           + (f" (was {prev_src})" if prev_src else ""))
            if not every:
                return reasons
        known = self._fdigest
        for rel, dig in rec.get("f", {}).items():
            now = known.get(rel) or self.fdigest(rel)
            if now != dig:
                if rel == src:
                    what = "extra changed" if o.kind == "extra" else "template changed"
                else:
                    what = "include changed"
                reasons.append(f"{what}: {rel}" + (" (deleted)" if now == R.ABSENT else ""))
                if not every:
                    return reasons
        names = rec.get("n")
        inst = self.project.instances[o.instance]
        if names:
            for name, rel in names.items():
                key = (o.instance, o.sub, name)
                now_rel = self._resolved_rel.get(key)
                if now_rel is None:
                    try:
                        now_rel = self.rel(self.env_resolve(name, self.search(inst, o.sub)))
                    except KeyError:
                        now_rel = R.ABSENT
                    self._resolved_rel[key] = now_rel
                if now_rel != rel:
                    reasons.append(f"include changed: {name} now from {now_rel}")
                    if not every:
                        return reasons
        values = rec.get("v")
        current = self.context_digest(inst, write=False, sub=o.sub) if values else ""
        if values and rec.get("c") != current:
            self._moved.add(o.instance)  # see refresh_contexts
        if values and rec.get("c") != current and (
            self.verified.get(f"{o.instance}|{o.sub or ''}") != current
        ):
            for path, dig in values.items():
                if self.value_digest(inst, path, o.sub) != dig:
                    base = path.removesuffix("[keys]")
                    state_paths = self.project.secret_paths(self.state(inst, write=False),
                                                            every=True, sub=o.sub)
                    kind = "state" if base in state_paths else "value"
                    what = f"{base} (its keys)" if path.endswith("[keys]") else path
                    reasons.append(f"{kind} changed: {what}")
                    if not every:
                        return reasons
        o_rec = rec.get("o")
        if o_rec and (st.st_mtime_ns, st.st_size) != (o_rec[0], o_rec[1]) and (
            R.file_digest(out, self.key(write=False)) != o_rec[2]
        ):
            reasons.append("output modified in BUILD")
        return reasons

    def env_resolve(self, name: str, search: tuple[str, ...]) -> str:
        """Where ``name`` resolves through ``search`` now (no Jinja2 import needed)."""
        key = (search, name)
        hit = self._resolved.get(key)
        if hit is None:
            hit = self._resolved[key] = self._resolve(name, search)
        if hit is R.ABSENT:
            raise KeyError(name)
        return hit

    def _resolve(self, name: str, search: tuple[str, ...]) -> str:
        parts = name.split("/")
        if ".." in parts or name.startswith("/"):
            return R.ABSENT
        for folder in search:
            hit = self.index.files(folder).get(name)
            if hit is not None:
                return hit
        return R.ABSENT

    # ------------------------------------------------------------ verified contexts

    def cache(self, name: str) -> JsonCache:
        """``.facsimile/<name>``, read once per run (see :class:`JsonCache`)."""
        c = self._caches.get(name)
        if c is None:
            c = self._caches[name] = JsonCache(self.root.cache / name)
        return c

    @property
    def verified(self) -> JsonCache:
        """Context digests against which every output of an instance was last found
        up to date. A value change that no template reads leaves old digests in
        the records; this spares the following no-ops a per-value check."""
        return self.cache("verified.json")

    def note_checked(self, inst: D.Instance, outputs: list[Output], all_fresh: bool) -> None:
        """After checking every output of ``inst``: remember or forget its contexts."""
        for sub in {o.sub for o in outputs}:
            key = f"{inst.name}|{sub or ''}"
            if all_fresh:
                self.verified[key] = self.context_digest(inst, write=False, sub=sub)
            else:
                self.verified.pop(key, None)

    def save_caches(self) -> None:
        """Write the caches of ``.facsimile/`` that changed."""
        for c in self._caches.values():
            c.save()

    # ------------------------------------------------------------ building

    def build_one(self, instance: str, rel: str, absent: bool = False) -> dict[str, Any]:
        """Make one output (a doit action); returns the record saved as doit values.

        ``absent``: the file was not there when the run began (no need to look).
        """
        inst = self.project.instances[instance]
        o = self.outputs(inst)[rel]
        out = self.out_str(o)
        src_rel = self.src(o)
        record: dict[str, Any] = {"s": src_rel}
        if o.kind == "genconfig":
            mode = 0o600  # it holds the module's password
            ctx = self.context(inst, write=True, sub=o.sub)
            mod = ctx["module"][o.name]
            data = (json.dumps(mod, indent=2, sort_keys=True) + "\n").encode()
            record["f"] = {}
            # one digest per key, so that a plan names the key that changed
            k = self.key(write=True)
            record["v"] = {f"module.{o.name}.{n}": R.digest(v, k) for n, v in sorted(mod.items())}
            record["v"][f"module.{o.name}[keys]"] = R.digest(sorted(mod), k)
            record["c"] = self.context_digest(inst, write=True, sub=o.sub)
        elif o.kind == "version":
            mode = 0o644
            version = self.context(inst, write=True)["project"]["version"]
            data = f"{version}\n".encode()
            record["f"] = {}
            record["v"] = {"project.version": R.digest(version, self.key(write=True))}
            record["c"] = self.context_digest(inst, write=True)
        elif o.kind == "extra":
            mode = self.mode(o.source)
            data = Path(o.source).read_bytes()
            record["f"] = {src_rel: R.bytes_digest(data)}
        else:
            mode = self.mode(o.source)
            ctx = self.context(inst, write=True, sub=o.sub)
            try:
                r = R.render(self.env, o.name, self.search(inst, o.sub), ctx, self.root.base,
                             this=o.this)
            except TemplateError as exc:
                raise TemplateError(
                    scrub(exc.message, self.state(inst, write=True)),
                    file=exc.file, line=exc.line,
                ) from None
            data = r.data
            rels = {path: self.rel(path) for path in r.loaded.values()}
            record["f"] = {rel: self.fdigest(rel) for rel in rels.values()}
            record["n"] = {n: rels[p] for n, p in r.loaded.items() if n != o.name}
            record["v"] = self._read_digests(inst.name, o.sub, r.reads)
            record["c"] = self.context_digest(inst, write=True, sub=o.sub)
        try:
            written = write_if_changed(out, data, mode, absent=absent)
        except (NotADirectoryError, IsADirectoryError):
            self.clear_way(o)  # an old output stands where this one must go
            written = write_if_changed(out, data, mode)
        record["o"] = [*written, R.bytes_digest(data, self.key(write=True))]
        return record

    def clear_way(self, o: Output) -> None:
        """Remove what stands in ``o``'s way in BUILD/: a file where one of its folders
        must be (a template that became a folder of templates), or a folder where
        its file must be (the other way round). Neither is an output any more;
        when one is, the two outputs cannot both exist and that is an error."""
        import shutil

        outputs = self.outputs(self.project.instances[o.instance])
        base = f"{self._build_dir}{o.instance}"
        parts = o.rel.split("/")
        for i in range(1, len(parts)):
            rel = "/".join(parts[:i])
            path = f"{base}{os.sep}{rel}"
            if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
                if rel in outputs:
                    raise BuildError(
                        f"{self.src(outputs[rel])} makes BUILD/{o.instance}/{rel}, which "
                        f"{self.src(o)} needs as a folder: rename one of them")
                os.unlink(path)
                return
        path = f"{base}{os.sep}{o.rel}"
        if os.path.isdir(path) and not os.path.islink(path):
            inside = next((r for r in outputs if r.startswith(o.rel + "/")), None)
            if inside is not None:
                raise BuildError(
                    f"{self.src(o)} makes BUILD/{o.instance}/{o.rel}, which "
                    f"{self.src(outputs[inside])} needs as a folder: rename one of them")
            shutil.rmtree(path)

    def _read_digests(self, instance: str, sub: str | None,
                      reads: dict[str, Any]) -> dict[str, str]:
        """Digests of the values a render read; a path's value is the same for every
        output of an instance in one run, so each is hashed once per run."""
        cache = self._built_digest
        k = self.key(write=True)
        out = {}
        for path in sorted(reads):
            ck = (instance, sub, path)
            d = cache.get(ck)
            if d is None:
                d = cache[ck] = R.digest(reads[path], k)
            out[path] = d
        return out

    def refresh_contexts(self, instance: str, made: set[str], backend: Any) -> None:
        """After making an instance's stale outputs: give the records of the others
        the current context digest.

        They were found up to date against the current context (their value
        digests compared, or the instance's context verified), so their digests
        hold for it. Without this, a context that moved through a value no
        template reads would cost a value-by-value check of every output on the
        next run. Only done when the database is being written anyway.
        """
        if instance not in self._moved:
            return  # every record checked had the current digest already
        inst = self.project.instances[instance]
        data = self.db
        current: dict[str | None, str] = {}
        for o in self.outputs(inst).values():
            if o.rel in made:
                continue
            entry = data.get(o.task)
            rec = entry.get("_values_:") if isinstance(entry, dict) else None
            if not isinstance(rec, dict) or "c" not in rec:
                continue
            # the digest they were checked against (state as it was before this run)
            now = current.get(o.sub)
            if now is None:
                now = current[o.sub] = self.context_digest(inst, write=False, sub=o.sub)
            if rec["c"] != now:
                backend.set(o.task, "_values_:", {**rec, "c": now})

    def orphans(self, instance: str | None) -> list[Path]:
        """Files in ``BUILD/<instance>/`` (or of removed instances) that no output makes."""
        build = self.root.build
        if instance is None:
            if not build.is_dir():
                return []
            gone = [p for p in build.iterdir() if p.name not in self.project.instances]
            return sorted(f for p in gone for f in (_files_under(p) if p.is_dir() else [p]))
        inst = self.project.instances[instance]
        keep = set(self.outputs(inst))
        base = build / instance
        return sorted(base / rel for rel, _ in R._walk(base) if rel not in keep)

    def prune(self, instance: str | None) -> None:
        """Delete orphans and the folders they leave empty."""
        build_dir = str(self.root.build)
        for f in self.orphans(instance):
            remove_output(str(f), build_dir)


class JsonCache(dict):  # type: ignore[type-arg]
    """A JSON object in ``.facsimile/`` that only saves time: read on first use,
    written (atomically) when changed; a file that cannot be read or written
    costs the time it would have saved, nothing else."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError):
            loaded = None
        super().__init__(loaded if isinstance(loaded, dict) else {})
        self._saved = dict(self)

    def save(self) -> None:
        if self == self._saved:
            return
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self, sort_keys=True))
            os.replace(tmp, self.path)
        self._saved = dict(self)


def _stamp(path: Path | str) -> list[int] | None:
    """What tells a file's versions apart without reading it: inode, size, mtime and
    ctime (a state file is replaced by a rename on every write)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _build_for_root(root: str) -> Build:
    return Build(Project.load(root))


def _files_under(folder: Path) -> list[Path]:
    return [folder / rel for rel, _ in R._walk(folder)]


def read_db(path: Path) -> dict[str, Any]:
    """doit's JSON database (nothing when there is none yet).

    One that cannot be read is an error, as it is for doit itself: a plan that
    called every output "new" would disagree with the build.
    """
    from .doitdb import collector_paused

    try:
        with open(path, encoding="utf-8") as fh, collector_paused():
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise BuildError(f"doit's database cannot be read ({exc}); delete it to rebuild "
                         "everything, or restore it", file=path.name) from exc
    if not isinstance(data, dict):
        raise BuildError("doit's database is not a JSON object; delete it to rebuild "
                         "everything", file=path.name)
    return data


def write_if_changed(path: Path | str, data: bytes, mode: int, *,
                     absent: bool = False) -> tuple[int, int]:
    """Atomically write ``data`` unless the file already holds it; keep ``mode``.

    Returns the file's ``(mtime_ns, size)``. The temporary file, next to its
    place, is created with ``mode`` less the umask (so a secret is never
    readable by others, not even half-written), given the whole ``mode``, and
    renamed over it. Missing folders are made when the first file in them is.
    ``absent``: the caller saw no file there, so it is not looked at first (were
    one made since, the rename still replaces it atomically).
    """
    target = str(path)
    if not absent:
        try:
            st = os.stat(target)
            if st.st_size == len(data) and _read(target) == data:
                if st.st_mode & 0o7777 != mode:
                    os.chmod(target, mode)
                return st.st_mtime_ns, st.st_size
        except FileNotFoundError:
            pass
    folder, sep, base = target.rpartition(os.sep)
    folder = folder if sep else "."
    tmp = f"{folder}{os.sep}.{base}.{os.getpid()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, mode)
    except FileNotFoundError:  # no folder yet: made on the first file only
        os.makedirs(folder, exist_ok=True)
        fd = os.open(tmp, flags, mode)
    except FileExistsError:  # left by a killed process of the same pid
        os.unlink(tmp)
        fd = os.open(tmp, flags, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            st = os.fstat(fd)
            if st.st_mode & 0o7777 != mode:  # the umask took bits that the mode asks for
                os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return st.st_mtime_ns, st.st_size


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def scrub(text: str, state: State) -> str:
    """Replace every state value in ``text`` with the mask."""
    for section in ("modules", "generate"):
        for entry in state.data.get(section, {}).values():
            for value in (entry.get("value"), *entry.get("previous", ())):
                if isinstance(value, str) and len(value) >= 4:
                    text = text.replace(value, MASK)
    return text


# ---------------------------------------------------------------------- doit glue


def _render_action(build: Build, instance: str, rel: str) -> Any:
    from doit.exceptions import TaskFailed

    try:
        return Record(build.build_one(instance, rel))
    except FacsimileError as exc:
        return TaskFailed(str(exc))


def _checkout_action(build: Build, srcs: list[C.Source]) -> Any:
    from doit.exceptions import TaskFailed

    try:
        for src in srcs:
            C.ensure(src, build.root.src)
            C.verify(src, build.root.src)
    except FacsimileError as exc:
        return TaskFailed(str(exc))
    return None


def _prune_action(build: Build, instance: str | None, found: bool = True) -> None:
    """Delete orphans; ``found=False``: there were none when the tasks were made (and a
    run writes only outputs), so the walk is spared. An instance the helper process
    took is pruned there, before its outputs are made."""
    helper = build.helper()
    if helper is not None and instance is not None and not helper.take(instance):
        return
    if found:
        build.prune(instance)


def _make_batch(build: Build, batch: P.Batch,
                started: Callable[[str], None] | None = None) -> P.Made:
    """Make a batch's outputs one after the other; a failed one does not stop the rest."""
    made = P.Made([], [])
    for rel in batch.rels:
        if started is not None:
            started(f"build:{batch.instance}/{rel}")
        try:
            made.records.append((rel, build.build_one(batch.instance, rel,
                                                      absent=rel in batch.new)))
        except FacsimileError as exc:
            made.failed.append((rel, str(exc)))
    return made


def _helper_work(build: Build, batch: P.Batch) -> P.Made:
    """A batch made in the helper process: its orphans first, then its outputs."""
    if batch.orphans:
        build.prune(batch.instance)
    return _make_batch(build, batch)


def _batch_action(build: Build, instance: str, rels: list[str], new: frozenset[str]) -> Any:
    """Make the stale outputs of one instance in one doit action (serial group runs);
    its task's first action pruned its orphans. See :func:`_run_batch`."""
    failed = _run_batch(build, P.Batch(instance, rels, new, False))
    if Reporter.current is not None:
        Reporter.current.flush()
    return _failure(failed)


def _stale_action(build: Build, batches: list[P.Batch]) -> Any:
    """Make the stale outputs of every instance in one doit action (a plain ``doit``),
    instance by instance, each one's orphans first. See :func:`_run_batch`."""
    failed = []
    for batch in batches:
        failed += _run_batch(build, batch)
    if Reporter.current is not None:
        Reporter.current.flush()
    return _failure(failed)


def _failure(failed: list[str]) -> Any:
    from doit.exceptions import TaskFailed

    return TaskFailed("\n".join(failed)) if failed else None


def _run_batch(build: Build, batch: P.Batch) -> list[str]:
    """Make one instance's stale outputs (its orphans first, when ``batch.orphans``);
    returns a line per failed output.

    Each output's record goes straight into doit's database under the output's
    own task name, with what doit itself saves for a successful task, so that
    ``doit list``, ``info``, ``facs plan`` and later runs see exactly what a
    run of one task per output leaves. A failed output keeps its previous file
    and loses its record (as doit drops a failed task's); the others are made.
    When a helper process took the instance, this waits for what it made.
    """
    from doit.globals import Globals

    instance = batch.instance
    dep = Globals.dep_manager
    backend = dep.backend
    checker = dep.checker.__class__.__name__
    reporter = Reporter.current
    made = None
    helper = build.helper()
    if helper is not None and not helper.take(instance):
        made = helper.outcome(instance)
        if made is None:  # the helper went away first: make it here, orphans first
            build.prune(instance)
        elif reporter is not None:
            for rel in batch.rels:
                reporter.started(f"build:{instance}/{rel}")
    elif batch.orphans:
        build.prune(instance)
    if made is None:
        made = _make_batch(build, batch, None if reporter is None else reporter.started)
    _save(backend, checker, instance, made, reporter)
    if made.failed:
        return [f"build:{instance}/{rel}: {msg}" for rel, msg in made.failed]
    build.refresh_contexts(instance, set(batch.rels), backend)
    return []


def _save(backend: Any, checker: str, instance: str, made: P.Made,
          reporter: Reporter | None = None) -> None:
    """Save what a batch made in doit's database, as each output's own task would."""
    for rel, record in made.records:
        name = f"build:{instance}/{rel}"
        backend.set(name, "_values_:", record)
        backend.set(name, "checker:", checker)
        backend.set(name, "deps:", ())
        if reporter is not None:
            reporter.made()
    for rel, _ in made.failed:
        backend.remove(f"build:{instance}/{rel}")


def _on_dump(helper: P.Helper) -> None:
    """When the run ends before it waited for every helper's outcome (Ctrl-C, or a
    failed task in a run that names instances), save the outcomes already sent
    with the database: their files are written."""
    from doit.globals import Globals

    from .doitdb import FacsimileDB

    dep = Globals.dep_manager
    if not isinstance(getattr(dep, "backend", None), FacsimileDB):
        return
    checker = dep.checker.__class__.__name__

    def save() -> None:
        for instance, made in helper.received().items():
            _save(dep.backend, checker, instance, made)

    dep.backend.before_dump.append(save)


def remove_output(path: str, build_dir: str) -> None:
    """Remove a file of BUILD/ and the folders it leaves empty (orphans, ``doit clean``)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    parent = os.path.dirname(path)
    while parent.startswith(build_dir + os.sep) and parent != build_dir:
        try:
            os.rmdir(parent)  # only when empty
        except OSError:
            break
        parent = os.path.dirname(parent)


def _sync_action(build: Build, instance: str) -> Any:
    from doit.exceptions import TaskFailed

    from .sync import run_sync

    try:
        code = run_sync(build.project, instance)
    except FacsimileError as exc:
        return TaskFailed(str(exc))
    return None if code == 0 else TaskFailed(f"sync of {instance} failed (exit {code})")


def _presign(*funcs: Any) -> None:
    """doit calls ``inspect.signature`` on every action it runs; give it the answer."""
    import inspect

    for f in funcs:
        f.__signature__ = inspect.signature(f)


_presign(stale, _render_action, _prune_action, _batch_action, _stale_action, remove_output,
         _checkout_action, _sync_action)


def generate(build: Build, instances: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Every doit task dict of the project (basenames ``build`` and ``sync``)."""
    project = build.project
    yield {"basename": "build", "name": None, "doc": "build every instance into BUILD/"}
    yield {"basename": "sync", "name": None, "doc": "build, then push every instance"}
    chosen = project.select(instances)
    # checkout:<name> verifies every version of <name> that an instance uses
    sources: dict[str, list[C.Source]] = {}
    for inst in chosen:
        for src in project.sources(inst):
            if src not in sources.setdefault(src.name, []):
                sources[src.name].append(src)
    if sources:
        yield {"basename": "checkout", "name": None,
               "doc": "clone source checkouts into SRC/ and verify their tags"}
    for name, srcs in sources.items():
        yield {
            "basename": "checkout",
            "name": name,
            "doc": f"check out {name} at {', '.join(s.version for s in srcs)} into SRC/ "
                   "and verify the tags have not moved",
            "actions": [(_checkout_action, (build, srcs))],
            "uptodate": [False],
        }
    run = _run_params(project)
    mode = _mode(run)
    extra_tasks = [dict(t) for t in project.tasks()]
    # In a run of group tasks, an instance with nothing to do gets no task at all
    # (its outputs are counted as up to date by build:_removed), unless the run
    # names it, syncs, verifies a checkout for it, or a project task depends on it.
    args = run[1] if run is not None else []
    quiet_ok = (mode is not None and instances is None and not extra_tasks
                and not any(a == "sync" or a.startswith("sync:") for a in args))
    named = set(args)
    # the batches a helper process may take: of instances this run builds (not of
    # one whose templates come from a checkout, which its own task verifies first)
    runs_all = not args or "build" in named or "sync" in named
    if mode == BATCH:
        build.jobs = P.jobs()
    # a plain run (``doit``, ``facs build``) makes every instance's stale outputs in
    # one task, build:_stale; doit's cost per task is paid once, not per instance
    fold = mode == BATCH and quiet_ok and runs_all
    folded: list[P.Batch] = []
    quiet = folded_fresh = 0
    build_dir = str(build.root.build)
    for inst in chosen:
        names = []
        batch: list[str] = []
        new: set[str] = set()  # of those, the ones not in BUILD/ yet
        checkouts = [f"checkout:{src.name}" for src in project.sources(inst)]
        outputs = list(build.outputs(inst).values())
        fresh = True
        omitted = 0
        for o in outputs:
            reasons = build.check(o)
            fresh = fresh and not reasons
            if mode is not None and not reasons:
                omitted += 1  # doit would only skip it: spare it the task
                continue
            if mode == BATCH:
                batch.append(o.rel)  # made by the instance's task, see _batch_action
                if reasons == ["new"]:
                    new.add(o.rel)
                continue
            names.append(o.task)
            task = {
                "basename": "build",
                "name": f"{inst.name}/{o.rel}",
                "actions": [(_render_action, (build, inst.name, o.rel))],
                "targets": [build.out_str(o)],
                "uptodate": [uptodate(reasons)],
                "clean": [(remove_output, (build.out_str(o), build_dir))],
            }
            if checkouts:
                task["task_dep"] = checkouts
            yield task
        build.note_checked(inst, outputs, fresh)
        orphans = build.orphans(inst.name)
        if (quiet_ok and fresh and not orphans and not checkouts
                and f"build:{inst.name}" not in named):
            quiet += omitted
            continue
        if fold and not checkouts and f"build:{inst.name}" not in named:
            folded.append(P.Batch(inst.name, batch, frozenset(new), bool(orphans)))
            folded_fresh += omitted
            continue
        actions: list[Any] = ([(_batch_action, (build, inst.name, batch, frozenset(new)))]
                              if batch else [])
        if (mode == BATCH and batch and not checkouts
                and (runs_all or f"build:{inst.name}" in named or f"sync:{inst.name}" in named)):
            build.plan.append(P.Batch(inst.name, batch, frozenset(new), bool(orphans)))
        yield {
            "basename": "build",
            "name": inst.name,
            "doc": f"build instance {inst.name}",
            # orphans first: one may stand where an output is to go
            "actions": [(_prune_action, (build, inst.name, bool(orphans))), *actions],
            "task_dep": [*checkouts, *names],
            "uptodate": [uptodate([f"stale: BUILD/{inst.name}/{rel}" for rel in batch]
                                  + [f"orphan: {build.root.rel(f)}" for f in orphans])],
            "meta": {"up_to_date": omitted, "batch": len(batch), "orphans": len(orphans)},
        }
        if not quiet_ok:
            yield {
                "basename": "sync",
                "name": inst.name,
                "doc": f"build {inst.name}, then push it to every host of its targets",
                "actions": [(_sync_action, (build, inst.name))],
                "task_dep": [f"build:{inst.name}"],
                "uptodate": [False],
                "verbosity": 2,
            }
    if folded:
        build.plan.extend(folded)
        stale_count = sum(len(b.rels) for b in folded)
        yield {
            "basename": "build",
            "name": "_stale",
            "doc": "make the stale outputs of every instance, and delete its orphans",
            "actions": [(_stale_action, (build, folded))],
            "uptodate": [uptodate([f"{stale_count} stale outputs and the orphans of "
                                   f"{len(folded)} instances"])],
            "meta": {"up_to_date": folded_fresh, "batch": stale_count, "orphans": 0},
        }
    if instances is None:
        gone = build.orphans(None)
        yield {
            "basename": "build",
            "name": "_removed",
            "doc": "delete the BUILD trees of removed instances",
            "actions": [(_prune_action, (build, None))],
            "uptodate": [uptodate([f"orphan: {build.root.rel(f)}" for f in gone])],
            "meta": {"up_to_date": quiet},
        }
    build.save_caches()
    yield from extra_tasks


LEAN = "lean"  # up-to-date outputs get no task
BATCH = "batch"  # and stale ones are made by their instance's task, in one action


def _mode(run: tuple[Any, list[str]] | None) -> str | None:
    """How doit is about to run: ``None`` (one task per output), :data:`LEAN` or :data:`BATCH`.

    A run of group tasks only (``doit``, ``doit build:prod``, ``doit sync:dev``,
    ``facs build``) is lean: an up-to-date output needs no task at all. A lean
    run without ``-n`` is also batched: a doit task per stale output costs more
    than rendering it (doit creates, dispatches and inspects each one), so one
    task makes them all (``build:_stale``, :func:`_stale_action`), or each named
    instance's group task makes its own (:func:`_batch_action`), and saves their
    records under their own task names, helped by forked processes when there
    is a lot to make (:mod:`facsimile.pool`). With ``-n 2``
    (or ``-n 1``: doit runs tasks in a child process then, whose writes to the
    database would be lost) each output stays a task of its own, for doit to
    spread over processes.
    ``run``: what :func:`_run_params` found.
    """
    if run is None:
        return None
    return LEAN if run[0].get("num_process") else BATCH


def _run_params(project: Project) -> tuple[Any, list[str]] | None:
    """doit's options and arguments when it is about to *run* group tasks only,
    else ``None``.

    Every other command (``list``, ``info``, ``forget``, ``clean``, ``strace``,
    ``run -a``, a run naming one output) gets every task. doit tells a task
    creator nothing about the command, so this looks at the caller's frame of
    ``DoitCmdBase.execute(params, args)`` (doit 0.36-0.37).
    """
    import sys

    from doit.cmd_base import DoitCmdBase
    from doit.cmd_run import Run
    from doit.cmd_strace import Strace

    frame = sys._getframe(1)
    while frame is not None:
        cmd = frame.f_locals.get("self")
        if frame.f_code.co_name == "execute" and isinstance(cmd, DoitCmdBase):
            break
        frame = frame.f_back
    else:
        return None
    params, args = frame.f_locals.get("params"), frame.f_locals.get("args")
    if not isinstance(cmd, Run) or isinstance(cmd, Strace) or params is None:
        return None
    if params.get("always") or not isinstance(args, list):
        return None
    groups = {"build", "sync", "checkout", *(f"{b}:{i}" for b in ("build", "sync")
                                             for i in project.instances)}
    if all(isinstance(a, str) and (a in groups or a.startswith("checkout:")) for a in args):
        return params, args
    return None


def guarded_tasks(make: Any) -> Iterator[dict[str, Any]]:
    """Tasks from ``generate(make())``; a user error is one line and exit 1, no traceback."""
    import sys

    from .doitdb import collector_paused

    # Creating 10k+ tasks allocates many long-lived objects: collecting while
    # creating them costs a third of a no-op.
    Reporter.current = None  # doit makes this run's reporter after its tasks
    try:
        with collector_paused():
            yield from generate(make())
    except FacsimileError as exc:
        print(f"facsimile: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def doit_config(root: D.Root | None) -> dict[str, Any]:
    """DOIT_CONFIG for a root: JSON backend, our database, quiet reporter."""
    cfg: dict[str, Any] = {
        "backend": "facsimile",
        "default_tasks": ["build"],
        "reporter": Reporter,
        "check_file_uptodate": "md5",
    }
    if root is not None:
        cfg["dep_file"] = str(root.base / DB_FILE)
    return cfg


class Reporter(ExecutedOnlyReporter):
    """doit's output without a line per up-to-date task, plus a summary.

    An output made in a batch (:func:`_batch_action`) gets the same line as
    one made by a task of its own, as it starts: ``.  build:<instance>/<path>``.
    """

    desc = "facsimile: executed tasks and a summary"
    current: Reporter | None = None  # the reporter of the run in this process

    FLUSH_EVERY = 0.1  # seconds: batch lines are written in chunks at most this old

    def __init__(self, outstream: Any, options: Any) -> None:
        super().__init__(outstream, options)
        self.counts = {"built": 0, "up to date": 0}
        self._pending: list[str] = []
        self._flushed = time.monotonic()
        Reporter.current = self

    def started(self, name: str) -> None:
        """An output of a batch is being made. Its line is written within
        :attr:`FLUSH_EVERY`: one write per line, to an unbuffered or line-buffered
        stream, costs a quarter of a second at 10,000 outputs."""
        self._pending.append(f".  {name}\n")
        if time.monotonic() - self._flushed >= self.FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        """Write the pending batch lines."""
        if self._pending:
            text = "".join(self._pending)
            self._pending.clear()
            self._out(text)
            with contextlib.suppress(AttributeError, OSError, ValueError):
                self.outstream.flush()
        self._flushed = time.monotonic()

    def write(self, text: str) -> None:
        self.flush()  # everything else in order after the batch lines
        self._out(text)

    def _out(self, text: str) -> None:
        """Write to the stream; when its reader went away (``doit | head``), the
        build goes on and its output goes to devnull (as doit's own would not)."""
        try:
            self.outstream.write(text)
        except BrokenPipeError:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), self.outstream.fileno())

    def made(self) -> None:
        """An output of a batch was made."""
        self.counts["built"] += 1

    def execute_task(self, task: Any) -> None:
        meta = task.meta or {}
        if "batch" in meta and not meta.get("orphans"):
            return  # its outputs have their own lines; it prunes nothing
        super().execute_task(task)

    def add_success(self, task: Any) -> None:
        if task.actions and task.name.startswith("build:") and task.targets:
            self.counts["built"] += 1
        self._omitted(task)

    def skip_uptodate(self, task: Any) -> None:
        if task.targets:
            self.counts["up to date"] += 1
        self._omitted(task)

    def _omitted(self, task: Any) -> None:
        """Up-to-date outputs that got no task (see :func:`_mode`)."""
        if task.meta:
            self.counts["up to date"] += task.meta.get("up_to_date", 0)

    def complete_run(self) -> None:
        super().complete_run()
        if any(self.counts.values()):
            self.write(
                f"facsimile: {self.counts['built']} built, "
                f"{self.counts['up to date']} up to date\n"
            )
