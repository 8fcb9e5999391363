"""Which outputs an instance has: the files of its template and extra layers
(a later layer's replacing an earlier one's), fan-out templates, generated
module configs and the project version file; and where each is written.

Also the template search path of an instance (or subproject), which rendering
and the check both resolve names through, with the layers of source
checkouts interleaved (:mod:`.checkouts`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import NamedTuple

from .. import checkout as C
from .. import define as D
from ..errors import BuildError
from ..project import Project
from ..render import LIB, LayerIndex
from ..render.tracking import segment
from .checkouts import Checkout, checkout_of

#: what a file name on a destination cannot hold (sftp takes ``\\`` as a separator)
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\]")
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


class Outputs:
    """The outputs of a project's instances, found once per run."""

    def __init__(self, project: Project, index: LayerIndex) -> None:
        self.project = project
        self.root = project.root
        self.index = index
        self.prefix = str(self.root.base) + os.sep
        self.build_dir = str(self.root.build) + os.sep
        self._outputs: dict[str, dict[str, Output]] = {}
        self._layers: dict[tuple[str, str, str | None], dict[str, Output]] = {}
        self._search: dict[tuple[str, str | None], tuple[str, ...]] = {}
        self._checkouts: dict[tuple[str, str], Checkout] = {}
        self._prefixes: dict[str, dict[str, str]] = {}

    def checkouts(self, inst: D.Instance) -> list[Checkout]:
        """The instance's source checkouts (cloned now if missing), each found once per run."""
        out = []
        for src in self.project.sources(inst):
            folder = C.ensure(src, self.root.src)
            key = (str(folder), src.tmpl)
            found = self._checkouts.get(key)
            if found is None:
                names = {layer for i in self.project.instances.values() for layer in i.layers}
                found = self._checkouts[key] = checkout_of(src.name, folder, src.tmpl, names,
                                                           self.index)
            out.append(found)
        return out

    def tmpl_layers(self, inst: D.Instance, sub: str | None = None) -> list[str]:
        """Template layer folders, lowest first: flat checkouts' folders, then per layer
        each checkout's folder of that layer below ``tmpl/<layer>``."""
        if sub is not None:
            folder = self.project.subprojects()[sub]["tmpl"]
            return [str(folder / layer) for layer in inst.layers]
        return self._interleaved(inst, str(self.root.tmpl), "tmpl")

    def extra_layers(self, inst: D.Instance) -> list[str]:
        """Extra layer folders, lowest first, interleaved as :meth:`tmpl_layers`."""
        return self._interleaved(inst, str(self.root.extra), "extra")

    def _interleaved(self, inst: D.Instance, base: str, kind: str) -> list[str]:
        """``kind`` ("tmpl" or "extra") layer folders, lowest first: flat checkouts'
        template folders, then per layer each checkout's folder and ``base``'s."""
        cos = self.checkouts(inst)
        out = [co.tmpl for co in cos if co.flat] if kind == "tmpl" else []
        for layer in inst.layers:
            out += [f"{getattr(co, kind)}{os.sep}{layer}" for co in cos
                    if kind == "extra" or not co.flat]
            out.append(f"{base}{os.sep}{layer}")
        return out

    def search(self, inst: D.Instance, sub: str | None = None) -> tuple[str, ...]:
        """Template search path: the layers, highest first, then ``tmpl/_lib``, then each
        layered checkout's ``_lib`` (cached; strings, since it keys a cache on every
        template load and a Path hashes slowly)."""
        key = (inst.name, sub)
        found = self._search.get(key)
        if found is None:
            libs = [] if sub is not None else [
                f"{co.tmpl}{os.sep}{LIB}" for co in reversed(self.checkouts(inst)) if not co.flat]
            found = (*reversed(self.tmpl_layers(inst, sub)), str(self.root.tmpl / LIB), *libs)
            self._search[key] = found
        return found

    def checkout_prefixes(self, inst: D.Instance) -> dict[str, str]:
        """``{source name: "SRC/<name>-<version>/"}`` of the instance's checkouts (cached)."""
        found = self._prefixes.get(inst.name)
        if found is None:
            found = self._prefixes[inst.name] = {
                co.name: self.rel(co.folder) + "/" for co in self.checkouts(inst)}
        return found

    def rel(self, path: str) -> str:
        """``path`` relative to the root, by string (hot path)."""
        return path[len(self.prefix):] if path.startswith(self.prefix) else path

    def src(self, o: Output) -> str:
        """What an output is made from, as the user names it."""
        if o.kind == "genconfig":
            return f"genconfig of module {o.name}"
        if o.kind == "version":
            return "project version"
        return self.rel(o.source)

    def out_str(self, o: Output) -> str:
        """Where ``o`` is written."""
        return f"{self.build_dir}{o.instance}{os.sep}{o.rel}"

    def outputs(self, inst: D.Instance) -> dict[str, Output]:
        """Every output of ``inst`` by path, sorted: later layers replace earlier ones."""
        found = self._outputs.get(inst.name)
        if found is not None:
            return found
        if self.project.sources(inst):
            tmpl, extra = self._layer_files(inst.layers, self.tmpl_layers(inst),
                                            self.extra_layers(inst))
        else:
            tmpl, extra = self._layer_files(inst.layers, (), ())
        if any("{" in rel for rel in tmpl):
            tmpl = self._fan_out(inst, tmpl)
        gen = self._generated(inst)
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

    def _generated(self, inst: D.Instance) -> dict[str, Output]:
        """Outputs made from the model, not a file: module configs, the version file."""
        gen = {}
        for mname, mdata in inst.modules.items():
            if mdata.get("genconfig"):
                rel = str(mdata.get("genconfig_path") or f"etc/{mname}.json")
                if _UNSAFE.search(rel):
                    raise BuildError(f"module {mname}: genconfig_path {rel!r}: a destination "
                                     "cannot hold a file name with a control character or "
                                     "a backslash", file=self.project.defs.modules_file)
                gen[rel] = Output("", rel, "genconfig", mname, str(self.root.project_file),
                                  f"module.{mname}")
        if self.project.data.get("version") is not None:
            rel = f"etc/{self.project.name}.version"
            gen[rel] = Output("", rel, "version", self.project.name,
                              str(self.root.project_file), "project.version")
        return gen

    def _layer_files(self, layers: list[str], tmpl_folders: Sequence[str],
                     extra_folders: Sequence[str]) -> tuple[dict[str, Output], dict[str, Output]]:
        """Templates and extra files of a stack of layers, by output path, a later
        layer's replacing an earlier one's; the outputs name no instance yet.
        ``tmpl_folders``, ``extra_folders``: the folders when source checkouts add
        some (lowest first), else empty: ``tmpl/<layer>`` and ``extra/<layer>``."""
        tmpl: dict[str, Output] = {}
        extra: dict[str, Output] = {}
        base = {"tmpl": str(self.root.tmpl), "extra": str(self.root.extra)}
        for folder in tmpl_folders or [f"{base['tmpl']}{os.sep}{layer}" for layer in layers]:
            tmpl.update(self._folder_outputs(folder, "tmpl", None))
        for folder in extra_folders or [f"{base['extra']}{os.sep}{layer}" for layer in layers]:
            extra.update(self._folder_outputs(folder, "extra", None))
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
            files = self.index.files(folder)
            if _UNSAFE.search("".join(files)):
                bad = next(p for r, p in files.items() if _UNSAFE.search(r))
                raise BuildError(f"{self.rel(bad)!r}: a destination cannot hold a file name "
                                 "with a control character (a newline, a tab...) or a "
                                 "backslash: rename it")
            for rel, path in files.items():
                out = prefix + (rel[:-3] if kind == "tmpl" and rel.endswith(".j2") else rel)
                found[out] = Output("", out, kind, rel, path, sub=sub)
        return found

    def _fan_out(self, inst: D.Instance, tmpl: dict[str, Output]) -> dict[str, Output]:
        """Templates named with ``{module}``, ``{host}`` or ``{daemon}``: one output per
        item (a subproject's template fans out over its own modules and daemons)."""
        from ..project import daemons

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
                items = [(m, f"module.{segment(m)}") for m in modules]
            elif key == "{host}":
                items = [(h, f"hosts.{segment(h)}") for h, _ in inst.hosts]
            else:
                items = [(d, f"daemons.{segment(d)}") for d, _ in daemons(modules)]
            for name, path in items:
                new = rel.replace(key, name)
                out[new] = Output(o.instance, new, o.kind, o.name, o.source, path, o.sub)
        return out
