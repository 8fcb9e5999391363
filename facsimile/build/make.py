"""Making one output: render (or copy, or generate) its bytes, write them only
when they changed, and return its :class:`~facsimile.build.record.Record`.

Also clearing the way when an old output stands where a new one must go, and
keeping every state value out of an error message.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import render as R
from ..atomic import create_new, write_atomic
from ..define.checks import Check
from ..digest import bytes_digest, digest
from ..errors import BuildError, TemplateError
from ..mask import scrub
from ..render.tracking import segment
from .digests import Digests
from .modes import mode_record
from .outputs import Output, Outputs
from .record import Record
from .validate import run_checks, source_label


class Maker:
    """Makes outputs, one at a time, in whichever process calls it."""

    def __init__(self, outputs: Outputs, digests: Digests, index: R.LayerIndex) -> None:
        self.outputs = outputs
        self.digests = digests
        self.index = index
        self.project = outputs.project
        self._env: Any = None
        sandbox = self.project.data.get("sandbox", False)
        if not isinstance(sandbox, bool):  # checked on every run, not on the first render
            raise BuildError(f"sandbox must be true or false, not {sandbox!r}",
                             file=self.project.root.project_file)
        self._sandbox = sandbox
        self._checked: set[str] = set()  # folders of BUILD/ seen not to be links
        #: (template, *loaded) -> the files and names of a record (see _render)
        self._loaded: dict[tuple[Any, ...], tuple[dict[str, str], dict[str, str]]] = {}

    @property
    def env(self) -> Any:
        """The run's Jinja2 environment, made when first needed."""
        if self._env is None:
            self._env = R.make_environment(self.index, sandbox=self._sandbox)
        return self._env

    def prepare(self, todo: list[tuple[str, list[str]]]) -> None:
        """Make the environment and compile the templates of ``todo`` (instance, its
        outputs to make) now: before helper processes are forked, so that they share
        one import of Jinja2 and one compiled copy of each template."""
        env = self.env
        names = set()
        # each instance has a search path of its own, mostly of folders it has not got:
        # the same templates through the folders that hold files are loaded once
        held: dict[tuple[str, ...], tuple[str, ...]] = {}
        for instance, rels in todo:
            inst = self.project.instances.get(instance)
            if inst is None:
                continue
            outputs = self.outputs.outputs(inst)
            for rel in rels:
                o = outputs.get(rel)
                if o is None or o.kind != "tmpl":
                    continue
                search = self.outputs.search(inst, o.sub)
                folders = held.get(search)
                if folders is None:
                    folders = held[search] = tuple(f for f in search if self.index.files(f))
                names.add((o.name, folders))
        R.compile_templates(env, names)

    def build_one(self, instance: str, rel: str, absent: bool = False) -> Record:
        """Make one output; returns what it was made from.

        ``absent``: the file was not there when the run began (no need to look).
        A file that cannot be read or written (a full disk, a read-only folder) is
        a :class:`~facsimile.errors.BuildError` naming it.
        """
        try:
            return self._build_one(instance, rel, absent)
        except OSError as exc:
            raise os_error(exc, self.project.root.base,
                           f"{self.outputs.build_dir}{instance}{os.sep}{rel}") from None

    def _build_one(self, instance: str, rel: str, absent: bool) -> Record:
        """:meth:`build_one`, its errors not yet named."""
        inst = self.project.instances[instance]
        o = self.outputs.outputs(inst)[rel]
        digests = self.digests
        src_rel = self.outputs.src(o)
        source: int | None = None  # the mode of the file it is made from
        if o.kind == "genconfig":
            secret = True  # it holds the module's password
            mod = digests.context(inst, write=True, sub=o.sub)["module"][o.name]
            data = genconfig_bytes(mod)
            # one digest per key, so that a plan names the key that changed
            k = digests.key(write=True)
            values = {f"module.{o.name}.{segment(n)}": digest(v, k)
                      for n, v in sorted(mod.items())}
            values[f"module.{o.name}[keys]"] = digest(sorted(mod), k)
            record = Record(src_rel, {}, values=values,
                            context=digests.context_digest(inst, write=True, sub=o.sub))
        elif o.kind == "version":
            secret = False
            version = digests.context(inst, write=True)["project"]["version"]
            data = version_bytes(version)
            record = Record(src_rel, {},
                            values={"project.version": digest(version, digests.key(write=True))},
                            context=digests.context_digest(inst, write=True))
        elif o.kind == "extra":
            secret, source = False, digests.mode(o.source)
            data = Path(o.source).read_bytes()
            record = Record(src_rel, {src_rel: bytes_digest(data)})
        else:
            source = digests.mode(o.source)
            data, record, reads = self._render(inst, o, src_rel)
            secret = not digests.secret_reads(inst, o.sub).isdisjoint(reads)
        record.mode = mode_record(digests.mode_rules(inst), o.rel, secret, source)
        mode = record.mode[0]
        out = self.outputs.out_str(o)
        check = None
        rules = digests.check_rules(inst)
        if rules.digest:
            checks = rules.match(o.rel)
            record.checks = [rules.digest, [c.text for c in checks]]
            if checks:
                check = self._checker(inst, o, checks, data)
        self._unlink_parents(o)
        try:
            written = write_if_changed(out, data, mode, absent=absent, check=check)
        except (NotADirectoryError, IsADirectoryError):
            self.clear_way(o)  # an old output stands where this one must go
            written = write_if_changed(out, data, mode, check=check)
        record.output = [*written, bytes_digest(data, digests.key(write=True))]
        return record

    def _checker(self, inst: Any, o: Output, checks: tuple[Check, ...],
                 data: bytes) -> Callable[[str], None]:
        """What checks ``data`` at the path it is written to, before it is moved
        into place (:mod:`facsimile.build.validate`)."""
        state = self.digests.state(inst, write=True)
        source = source_label(self.outputs.src(o), o.kind)
        root = str(self.project.root.base)

        def check(path: str) -> None:
            run_checks(checks, path, data, shown=f"BUILD/{o.instance}/{o.rel}", source=source,
                       root=root, mask=lambda text: scrub(text, state))

        return check

    def data(self, inst: Any, o: Output, *, write: bool) -> bytes:
        """The bytes ``o`` would be made of; ``write=False``: the check's view (state
        as it is on disk, nothing generated or written), for ``facs plan``."""
        ctx = self.digests.context(inst, write=write, sub=o.sub)
        if o.kind == "genconfig":
            return genconfig_bytes(ctx["module"][o.name])
        if o.kind == "version":
            return version_bytes(ctx["project"]["version"])
        if o.kind == "extra":
            return Path(o.source).read_bytes()
        return R.render(self.env, o.name, self.outputs.search(inst, o.sub), ctx,
                        self.project.root.base, this=o.this).data

    def _render(self, inst: Any, o: Output, src_rel: str) -> tuple[bytes, Record, Any]:
        """A template's bytes, the record of what the render loaded and read, and the
        context paths it read."""
        digests = self.digests
        ctx = digests.context(inst, write=True, sub=o.sub)
        try:
            r = R.render(self.env, o.name, self.outputs.search(inst, o.sub), ctx,
                         self.project.root.base, this=o.this)
        except TemplateError as exc:
            read = sorted(digests.secret_reads(inst, o.sub).intersection(
                getattr(exc, "reads", ())))
            message = (withheld(exc, read[-1], self.project.root.base) if read
                       else scrub(exc.message, digests.state(inst, write=True)))
            raise TemplateError(message, file=exc.file, line=exc.line) from None
        key = (o.name, *r.loaded.items())
        loaded = self._loaded.get(key)
        if loaded is None:  # the same templates load the same files all run long
            rels = {path: self.outputs.rel(path) for path in r.loaded.values()}
            loaded = self._loaded[key] = (
                {rel: digests.fdigest(rel) for rel in rels.values()},
                {n: rels[p] for n, p in r.loaded.items() if n != o.name})
        return r.data, Record(
            src_rel,
            dict(loaded[0]),
            names=dict(loaded[1]),
            values=digests.read_digests(inst.name, o.sub, r.reads),
            context=digests.context_digest(inst, write=True, sub=o.sub),
        ), r.reads

    def _unlink_parents(self, o: Output) -> None:
        """Remove a symbolic link standing where one of ``o``'s folders goes in
        BUILD/ (a write never follows one); each folder is looked at once a run."""
        checked = self._checked
        base = f"{self.outputs.build_dir}{o.instance}"
        path = base
        for part in ("", *o.rel.split("/")[:-1]):
            path = f"{path}{os.sep}{part}" if part else path
            if path in checked:
                continue
            if os.path.islink(path):
                os.unlink(path)
            checked.add(path)

    def clear_way(self, o: Output) -> None:
        """Remove what stands in ``o``'s way in BUILD/: a file where one of its folders
        must be (a template that became a folder of templates), or a folder where
        its file must be (the other way round). Neither is an output any more;
        when one is, the two outputs cannot both exist and that is an error."""
        import shutil

        outputs = self.outputs.outputs(self.project.instances[o.instance])
        src = self.outputs.src
        base = f"{self.outputs.build_dir}{o.instance}"
        if os.path.lexists(base) and not os.path.isdir(base):
            os.unlink(base)  # a file where the instance's folder goes: no output makes it
            return
        parts = o.rel.split("/")
        for i in range(1, len(parts)):
            rel = "/".join(parts[:i])
            path = f"{base}{os.sep}{rel}"
            if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
                if rel in outputs:
                    raise BuildError(
                        f"{src(outputs[rel])} makes BUILD/{o.instance}/{rel}, which "
                        f"{src(o)} needs as a folder: rename one of them")
                os.unlink(path)
                return
        path = f"{base}{os.sep}{o.rel}"
        if os.path.isdir(path) and not os.path.islink(path):
            inside = next((r for r in outputs if r.startswith(o.rel + "/")), None)
            if inside is not None:
                raise BuildError(
                    f"{src(o)} makes BUILD/{o.instance}/{o.rel}, which "
                    f"{src(outputs[inside])} needs as a folder: rename one of them")
            shutil.rmtree(path)


def write_if_changed(path: Path | str, data: bytes, mode: int, *,
                     absent: bool = False,
                     check: Callable[[str], None] | None = None) -> tuple[int, int]:
    """Write ``data`` unless the file already holds it; keep ``mode``.

    Returns the file's ``(mtime_ns, size)``. A file that is there is replaced
    atomically (:func:`facsimile.atomic.write_atomic`: a reader sees the old bytes
    or the new, and a secret is never readable by others, not even half-written).
    ``absent``: the caller saw no file there, so it is not looked at first, and
    the file is made in place (:func:`facsimile.atomic.create_new`: no temporary
    file to rename; a failed write removes it); were one made since, it is
    replaced atomically.
    ``check``: run on the temporary file before the rename (or on the file
    itself when it already holds ``data``); what it raises keeps the old file.
    """
    target = str(path)
    if absent and check is None:
        with contextlib.suppress(FileExistsError):  # else made since: replaced below
            st = create_new(target, data, mode)
            return st.st_mtime_ns, st.st_size
    elif not absent:
        try:
            st = os.lstat(target)  # a link there is replaced, never written through
            if (stat.S_ISREG(st.st_mode) and st.st_size == len(data)
                    and _read(target) == data):
                if check is not None:
                    check(target)
                if st.st_mode & 0o7777 != mode:
                    os.chmod(target, mode)
                return st.st_mtime_ns, st.st_size
        except FileNotFoundError:
            pass
    st = write_atomic(target, data, mode, check=check)
    return st.st_mtime_ns, st.st_size


def genconfig_bytes(module: dict[str, Any]) -> bytes:
    """A module's genconfig: its definition as JSON."""
    return (json.dumps(module, indent=2, sort_keys=True) + "\n").encode()


def version_bytes(version: Any) -> bytes:
    """The project version file."""
    return f"{version}\n".encode()


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def os_error(exc: OSError, base: Path, output: str | None = None) -> BuildError:
    """``exc`` as one line naming the file, relative to the root ``base``: the
    ``output`` being made when the failed file is in BUILD/ (its temporary file,
    a folder of it), else the file that could not be read."""
    from ..render import rel_to

    failed = str(exc.filename or output or "")
    build = f"{base}{os.sep}BUILD{os.sep}"
    if output and (not exc.filename or failed.startswith(build)):
        return BuildError(f"cannot write {rel_to(base, output)}: {exc.strerror or exc}")
    verb = "remove" if output is None else "read"
    return BuildError(f"cannot {verb} {rel_to(base, failed)}: {exc.strerror or exc}")


def withheld(exc: TemplateError, secret: str, base: Path) -> str:
    """The message of a render that failed after reading a secret: no value it
    evaluated (a slice or a filter of the secret would show), only what failed
    and the template's line as written."""
    kind = getattr(exc, "kind", "") or "UndefinedError"
    text = ""
    if exc.file and exc.line:
        with contextlib.suppress(OSError, UnicodeDecodeError, IndexError):
            lines = (base / exc.file).read_text(encoding="utf-8").splitlines()
            text = f": {lines[exc.line - 1].strip()[:200]}"
    return (f"{kind} in a render that read {secret} (its message is not shown, it may "
            f"hold the value){text}")
