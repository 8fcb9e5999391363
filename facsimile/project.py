"""A loaded project: definitions resolved, state at hand, template contexts.

:class:`Project` is public: ``facsimile.json`` may name a subclass with
``"class": "module.path:ClassName"`` to add template context, generated kinds
or doit tasks (see the README, "Class overrides").
"""

from __future__ import annotations

import contextlib
import difflib
import os
import pickle
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from . import definitions as D
from . import state as S
from .errors import DefinitionError, FacsimileError

CACHE_FORMAT = 7  # 7: provenance made when asked


class Project:
    """Definitions of one root, resolved once, plus state and contexts on demand.

    Override in a subclass named by ``"class"`` in ``facsimile.json``:
    :meth:`extra_context`, :meth:`generators`, :meth:`tasks`, and methods
    ``_init_<system>`` run on load (``platform.system().lower()``).
    """

    def __init__(
        self,
        root: D.Root,
        defs: D.Definitions,
        instances: dict[str, D.Instance],
        digests: dict[str, str] | None = None,
    ):
        self.root = root
        self.defs = defs
        self.instances = instances
        self.digests = digests if digests is not None else model_digests(defs, instances)
        self._states: dict[tuple[str, bool], S.State] = {}

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, root: D.Root | str | Path | None = None, *, cache: bool = True) -> Project:
        """Load (from the model cache when no definition file changed) and init."""
        if root is None:
            root = D.find_root()
        elif not isinstance(root, D.Root):
            root = D.open_root(root)
        defs, instances, digests = _load_model(root, cache)
        klass = _project_class(root, defs) if "class" in defs.project.data else cls
        project = klass(root, defs, instances, digests)
        project._run_init()
        return project

    def _run_init(self) -> None:
        import platform

        hook = getattr(self, f"_init_{platform.system().lower()}", None)
        if callable(hook):
            hook()

    # ------------------------------------------------------------------ accessors

    @property
    def name(self) -> str:
        return str(self.defs.project.data.get("name") or self.root.base.name)

    @property
    def data(self) -> dict[str, Any]:
        """The project document as templates see it (``project``)."""
        raw = {k: v for k, v in self.defs.project.data.items() if k not in ("inherit", "modules")}
        raw["name"] = self.name
        return raw

    def instance(self, name: str) -> D.Instance:
        """The resolved instance ``name``; an unknown name gets a suggestion."""
        try:
            return self.instances[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self.instances), n=1)
            hint = f", did you mean {close[0]!r}?" if close else ""
            known = ", ".join(sorted(self.instances)) or "none"
            raise DefinitionError(f"unknown instance {name!r}{hint} (instances: {known})") \
                from None

    def select(self, names: Iterable[str] | None) -> list[D.Instance]:
        """The named instances (all when none are named)."""
        names = list(names or [])
        if not names:
            return [self.instances[n] for n in sorted(self.instances)]
        return [self.instance(n) for n in dict.fromkeys(names)]  # each once, in order

    # ------------------------------------------------------------------ state

    def generators(self) -> dict[str, S.Generator]:
        """Generated kinds: name -> ``f(arg) -> value``. Override to add kinds."""
        return dict(S.GENERATORS)

    def wants(self, inst: D.Instance) -> list[S.Want]:
        wants = S.wants_for(inst.modules, inst.data.get("generate", {}))
        wants += [S.Want("daemons", name, "id") for name, _ in daemons(inst.modules)]
        for sub, spec in self.subprojects().items():
            wants += [S.Want("modules", f"{sub}/{m}", "password") for m in sorted(spec["modules"])]
            wants += [S.Want("daemons", f"{sub}/{name}", "id")
                      for name, _ in daemons(spec["modules"])]
        return wants

    def subprojects(self) -> dict[str, dict[str, Any]]:
        """``projects`` of facsimile.json: name -> modules, tmpl and extra folders, data."""
        cached = self.__dict__.get("_subprojects")
        if cached is not None:
            return cached
        raw = self.defs.project.data.get("projects") or {}
        if isinstance(raw, list):
            raw = {name: {} for name in raw}
        out = {}
        for name, spec in raw.items():
            spec = dict(spec or {})
            where = self.defs.project.path
            modules = D.normalize_modules(spec.pop("modules", {}), where,
                                          f"/projects/{name}/modules")
            base = self.root.base
            out[name] = {
                "modules": modules,
                "tmpl": base / str(spec.pop("tmpl", f"projects/{name}/tmpl")),
                "extra": base / str(spec.pop("extra", f"projects/{name}/extra")),
                "data": {**spec, "name": name},
            }
        self.__dict__["_subprojects"] = out
        return out

    def family_wants(self, family: str) -> list[S.Want]:
        """What every instance of the family asks for (subinstances share state)."""
        families = self.__dict__.get("_families")
        if families is None:
            families = {}
            for inst in self.instances.values():
                families.setdefault(inst.family, []).append(inst)
            self.__dict__["_families"] = families
        seen: dict[tuple[str, str], S.Want] = {}
        for inst in families.get(family, []):
            for w in self.wants(inst):
                seen.setdefault((w.section, w.name), w)
        return list(seen.values())

    def state(self, inst: D.Instance, *, write: bool) -> S.State:
        """The family's state. ``write=False`` never touches the disk."""
        key = (inst.family, write)
        read = self._states.get((inst.family, False))
        if write and key not in self._states and read is not None and not read.generated:
            # read in this run and complete: writing would add nothing (and read it again)
            self._states[key] = read
        if key not in self._states:
            self._states[key] = S.load(
                self.root.state,
                inst.family,
                self.family_wants(inst.family),
                write=write,
                shown_root=self.root.base,
                generators=self.generators(),
            )
        return self._states[key]

    # ------------------------------------------------------------------ context

    def extra_context(self, inst: D.Instance) -> dict[str, Any]:
        """More names for templates. Override in a project class."""
        return {}

    def context(
        self, inst: D.Instance, state: S.State, sub: str | None = None
    ) -> dict[str, Any]:
        """The plain template context: instance, module, project, state, targets, hosts.

        For a subproject ``sub``, ``module`` and ``project`` are the subproject's.
        """
        modules = {}
        own = self.subprojects()[sub]["modules"] if sub else inst.modules
        for mname, mdata in own.items():
            m = dict(mdata)
            m["name"] = mname
            m.setdefault("username", mname)
            pw = state.module_password(f"{sub}/{mname}" if sub else mname)
            if pw is not None:
                m["password"] = pw
            if isinstance(m.get("service"), dict):
                m["service"] = dict(m["service"])
                m["service"]["instances"] = [
                    {"instance_name": name, "uiid": _uiid(state, name, sub)}
                    for name, owner in daemons({mname: mdata})
                ]
            modules[mname] = m
        ctx = {
            "instance": inst.data,
            "module": modules,
            "project": self.subprojects()[sub]["data"] if sub else self.data,
            "state": state.generate_values(),
            "targets": inst.targets,
            "hosts": {
                h: {"name": h, "target": t,
                    "region": ((inst.targets[t].get("regions") or inst.regions or [None])[-1])}
                for h, t in inst.hosts
            },
        }
        ctx["daemons"] = {
            name: {"instance_name": name, "uiid": _uiid(state, name, sub), "module": owner}
            for name, owner in daemons(own)
        }
        extra = self.extra_context(inst)
        if extra:
            ctx.update(extra)
        return ctx

    def context_digest(self, inst: D.Instance, state: str, sub: str | None = None) -> str:
        """A digest of everything :meth:`context` puts in, without building it.

        The definitions' part is computed when they are resolved (and cached with
        them); ``state`` is the family's (:func:`facsimile.state.data_digest`); a
        project class's extra context is digested as it is.
        """
        import hashlib
        import json

        parts = [self.digests[inst.name], self.digests[""], sub or "", state]
        extra = self.extra_context(inst)
        if extra:
            parts.append(json.dumps(extra, sort_keys=True, default=str))
        return hashlib.blake2b("\0".join(parts).encode(), digest_size=8).hexdigest()

    def secret_paths(
        self, state: S.State, *, every: bool = False, sub: str | None = None
    ) -> set[str]:
        """Context paths that hold state values (every one, or only secret kinds)."""
        out = set()
        for path, kind in state.kinds().items():
            if sub and path.startswith(f"module.{sub}/"):
                path = "module." + path[len(f"module.{sub}/"):]
            if every or kind.split(":")[0] in S.SECRET_KINDS:
                out.add(path)
        return out

    def sources(self, inst: D.Instance) -> list[Any]:
        """Source checkouts the instance uses: the project's, then each module's."""
        from .checkout import DEFAULT_TMPL, Source

        cache = self.__dict__.setdefault("_sources", {})
        if inst.name in cache:
            return cache[inst.name]
        out = []
        items = [(self.name, self.defs.project.data, self.defs.project.path)]
        items += [(m, d, self.defs.modules_file) for m, d in sorted(inst.modules.items())]
        for name, data, where in items:
            if data.get("repo") and data.get("version"):
                repo = str(data["repo"])
                if "://" not in repo and not repo.startswith(("/", "git@")):
                    repo = str((self.root.base / repo).resolve())
                out.append(Source(name, repo, str(data["version"]),
                                  str(data.get("tmpl") or DEFAULT_TMPL), where))
        cache[inst.name] = out
        return out

    # ------------------------------------------------------------------ tasks

    def tasks(self) -> Iterable[Mapping[str, Any]]:
        """Extra doit task dicts (each with a ``name``); override in a project class."""
        return ()


# ---------------------------------------------------------------------- model cache


def _stat_key(files: list[Path]) -> list[tuple[int, int]]:
    out = []
    for f in files:
        st = f.stat()
        out.append((st.st_mtime_ns, st.st_size))
    return out


def model_digests(defs: D.Definitions, instances: dict[str, D.Instance]) -> dict[str, str]:
    """Per instance a digest of its resolved data, modules and targets; "" for the project."""
    import hashlib
    import json

    def dig(value: Any) -> str:
        data = json.dumps(value, sort_keys=True, default=str).encode()
        return hashlib.blake2b(data, digest_size=8).hexdigest()

    out = {name: dig([i.data, i.modules, i.targets]) for name, i in instances.items()}
    out[""] = dig([defs.project.data, defs.modules])
    return out


def _load_model(
    root: D.Root, use_cache: bool
) -> tuple[D.Definitions, dict[str, D.Instance], dict[str, str]]:
    """Definitions and resolved instances, from the cache where their files are unchanged.

    When only instance or abstract definition files changed (not the project,
    modules or schema, and no file came or went), only the instances whose
    inheritance chain names a changed file are resolved again.
    """
    from . import __version__

    files = D.definition_files(root)
    stats = {str(f): s for f, s in zip(files, _stat_key(files), strict=True)}
    key = (CACHE_FORMAT, __version__)
    cache_file = root.cache / "model.pickle"
    cached = None
    if use_cache:
        with contextlib.suppress(Exception):
            with open(cache_file, "rb") as fh:
                cached_key, cached_stats, payload = pickle.load(fh)
            if cached_key == key:
                cached = (cached_stats, payload)
    if cached is not None:
        old_stats, (defs, instances, digests) = cached
        if old_stats == stats:
            return defs, instances, digests
        changed = [Path(f) for f in stats if old_stats.get(f) != stats[f]]
        fixed = {str(root.project_file), str(root.define / D.MODULES_FILE),
                 str(root.define / D.SCHEMA_FILE)}
        if set(old_stats) == set(stats) and not fixed & {str(c) for c in changed}:
            names = set(D.reload_changed(root, defs, changed))
            resolver = D.Resolver(defs)
            for name, inst in list(instances.items()):
                if names & set(inst.uses):
                    instances[name] = resolver.instance(name)
            for name, inst in instances.items():
                if names & set(inst.uses):
                    digests[name] = model_digests(defs, {name: inst})[name]
            _write_cache(cache_file, (key, stats, (defs, instances, digests)))
            return defs, instances, digests
    defs = D.load(root)
    instances = D.resolve_all(defs)
    digests = model_digests(defs, instances)
    if use_cache:
        _write_cache(cache_file, (key, stats, (defs, instances, digests)))
    return defs, instances, digests


def _write_cache(path: Path, payload: Any) -> None:
    """Best effort: a cache that cannot be written only costs time."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".model.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _project_class(root: D.Root, defs: D.Definitions) -> type[Project]:
    """The class named by ``"class": "module.path:ClassName"``, importable from the root."""
    import importlib
    import sys

    spec = defs.project.data["class"]
    where = {"file": defs.project.path, "pointer": "/class"}
    modname, _, clsname = spec.partition(":")
    if not modname or not clsname:
        raise DefinitionError(f"class {spec!r} must look like 'module.path:ClassName'", **where)
    for folder in (str(root.base), str(root.base.parent)):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    try:
        module = importlib.import_module(modname)
    except Exception as exc:
        raise DefinitionError(
            f"cannot import {modname!r} for class {spec!r}: {type(exc).__name__}: {exc}", **where
        ) from exc
    klass = getattr(module, clsname, None)
    if not isinstance(klass, type) or not issubclass(klass, Project):
        raise DefinitionError(
            f"{spec!r} is not a subclass of facsimile.Project"
            if klass is not None
            else f"module {modname!r} has no class {clsname!r}",
            **where,
        )
    return klass


def daemons(modules: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """``(daemon name, module)`` for each daemon instance: ``service.n_instances``
    copies named ``<module>d.0`` ... (``service.name`` replaces ``<module>d``)."""
    out = []
    for mname, mdata in sorted(modules.items()):
        service = mdata.get("service")
        if not isinstance(service, Mapping):
            continue
        n = service.get("n_instances", 1)
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= 255:
            raise DefinitionError(
                f"module {mname}: service.n_instances must be a whole number from 0 to 255",
                pointer=f"/modules/{mname}/service/n_instances",
            )
        stem = str(service.get("name") or f"{mname}d")
        out += [(f"{stem}.{i}", mname) for i in range(n)]
    return out


def _uiid(state: S.State, name: str, sub: str | None = None) -> int | None:
    """The daemon's uiid; a subproject's daemons are kept as ``<sub>/<name>``."""
    value = state.value("daemons", f"{sub}/{name}" if sub else name)
    if value is not None and value >= 256:
        raise DefinitionError(
            f"daemon {name}: no uiid below 256 is left in family {state.family} "
            "(the seed's limit); give the family fewer ids",
        )
    return value


def mask(value: Any, paths: set[str], prefix: str = "") -> Any:
    """A copy of ``value`` with every path in ``paths`` replaced by ``********``."""
    if isinstance(value, dict):
        return {
            k: S.MASK if f"{prefix}{k}" in paths else mask(v, paths, f"{prefix}{k}.")
            for k, v in value.items()
        }
    return value


__all__ = ["FacsimileError", "Project", "mask"]
