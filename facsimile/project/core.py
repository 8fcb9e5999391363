"""The loaded project: definitions resolved, state at hand, template contexts.

:class:`Project` is public: ``facsimile.json`` may name a subclass with
``"class": "module.path:ClassName"`` to add template context, generated kinds
or doit tasks (see docs/pages/definitions.md, "Class overrides").
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .. import define as D
from .. import state as S
from ..errors import DefinitionError
from .cache import load_model, model_digests
from .daemons import daemons, uiid
from .override import project_class


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
        defs, instances, digests = load_model(root, cache)
        klass = project_class(root, defs, Project) if "class" in defs.project.data else cls
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
        raw = {k: v for k, v in self.defs.project.data.items()
               if k not in ("inherit", "modules", "state")}
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
        """What ``inst`` asks for: its modules' passwords and daemon ids, its
        ``generate`` entries, and those of every subproject's modules."""
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

    @property
    def store(self) -> S.StateStore:
        """Where the root's state lives (``"state"`` of facsimile.json), made once."""
        found = self.__dict__.get("_store")
        if found is None:
            found = self.__dict__["_store"] = S.open_store(
                self.root.state, self.root.base, self.defs.project.data.get("state"))
        return found

    def state(self, inst: D.Instance, *, write: bool) -> S.State:
        """The family's state. ``write=False`` never writes."""
        key = (inst.family, write)
        read = self._states.get((inst.family, False))
        if write and key not in self._states and read is not None and not read.generated:
            # read in this run and complete: writing would add nothing (and read it again)
            self._states[key] = read
        if key not in self._states:
            self._states[key] = S.load(
                self.store,
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
        own = self.subprojects()[sub]["modules"] if sub else inst.modules
        ctx = {
            "instance": inst.data,
            "module": {m: _module_context(m, d, state, sub) for m, d in own.items()},
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
            name: {"instance_name": name, "uiid": uiid(state, name, sub), "module": owner}
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
        from ..checkout import DEFAULT_TMPL, Source

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


def _module_context(mname: str, mdata: Mapping[str, Any], state: S.State,
                    sub: str | None) -> dict[str, Any]:
    """One module as templates see it: its definition, name, username, password,
    and its daemons under ``service.instances``."""
    m = dict(mdata)
    m["name"] = mname
    m.setdefault("username", mname)
    pw = state.module_password(f"{sub}/{mname}" if sub else mname)
    if pw is not None:
        m["password"] = pw
    if isinstance(m.get("service"), dict):
        m["service"] = dict(m["service"])
        m["service"]["instances"] = [
            {"instance_name": name, "uiid": uiid(state, name, sub)}
            for name, owner in daemons({mname: mdata})
        ]
    return m
