"""The no-op record: a build or plan with nothing to do, answered from ``stat`` alone.

A run that ends with every output of its instances up to date (a build with no
failure, or a plan that found nothing stale) writes ``.facsimile/noop.json``:
the ``(size, mtime_ns, ctime_ns, inode)`` of every file and folder it depends on
(``define/``, ``tmpl/``, ``extra/``, the layer folders of checkouts and
subprojects, ``state/``, ``dodo.py``, ``.doit.db``, every output and folder of
``BUILD/``, the Python files of every module loaded, the class module's too),
the environment (Python, ``FACSIMILE_*``, ``DOIT_*``, the umask), and per
instance its number of outputs and the lines a plan printed. Its first line is
a MAC (keyed BLAKE2b) of the rest keyed from the root's digest key, like the other caches.

The next plain ``doit``, ``doit build:<instance>``, ``facs build [INSTANCE...]``
or ``facs plan [--json] [INSTANCE...]`` reads it before importing anything
else of facsimile (:func:`answer_doit`, :func:`answer_facs`): when every stat
is as recorded it prints what the full check would print and exits. Anything
else (a stat that differs, a damaged or forged record, no key, other options)
goes the full way, silently. A folder's stat changes when an entry is added or
removed, so a new template or a stray file in ``BUILD/`` is seen too. An entry
changed less than :data:`SETTLE_NS` before the record was written could change
again within the same timestamp, so such a record is not written.

This module imports only the standard library: it runs before doit's tasks,
Jinja2 or the definitions are loaded. ``FACSIMILE_NOOP_RECORD=0`` (or
``FACSIMILE_FAST=0``) turns it off.
"""

from __future__ import annotations

import json
import os
import sys
import time
from array import array

try:  # the keyed BLAKE2b MAC without loading OpenSSL (hashlib, hmac): part of a no-op
    from _blake2 import blake2b
    from _operator import _compare_digest as compare_digest
except ImportError:  # pragma: no cover - another Python
    from hashlib import blake2b
    from hmac import compare_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

FORMAT = 1
RECORD = os.path.join(".facsimile", "noop.json")
OFF_VARS = ("FACSIMILE_NOOP_RECORD", "FACSIMILE_FAST")
DEBUG_VAR = "FACSIMILE_DEBUG_FASTNOOP"  # set: the fast answer says so on stderr
SETTLE_NS = 100_000_000  # entries newer than this when written make no record
COARSE_SETTLE_NS = 2_100_000_000  # the same on a file system of whole-second times
_SKIP_DIRS = (".git", ".hg", ".svn", "__pycache__")
_ROOT_FILES = ("facsimile.json", "dodo.py", ".doit.db", "doit.cfg", "pyproject.toml")

_ABSENT = (-1, -1, -1, -1)
_DIR_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0)


def enabled() -> bool:
    """Neither ``FACSIMILE_NOOP_RECORD`` nor ``FACSIMILE_FAST`` is ``0`` (false, no, off)."""
    return all(os.environ.get(v, "").strip().lower() not in ("0", "false", "no", "off")
               for v in OFF_VARS)


def _env() -> list[Any]:
    """What of the process, besides files, a build depends on."""
    mask = os.umask(0o022)
    os.umask(mask)
    skip = (DEBUG_VAR, *OFF_VARS)
    env = sorted([k, v] for k, v in os.environ.items()
                 if k.startswith(("FACSIMILE_", "DOIT_")) and k not in skip)
    return [FORMAT, sys.version, sys.executable, mask, env]


def find_base(start: str | None = None) -> str | None:
    """The root's base folder above ``start`` (the working directory), as
    :func:`facsimile.define.find_root` finds it."""
    here = os.path.realpath(start or os.getcwd())
    while True:
        if os.path.isfile(os.path.join(here, "define", "facsimile.json")):
            return here
        if os.path.isfile(os.path.join(here, "config", "facsimile.json")):
            return os.path.join(here, "config")
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def _mac_key(base: str) -> bytes | None:
    """The record's HMAC key, from the root's digest key (plain, or sealed and opened
    with this run's identity); None when there is none or it cannot be read."""
    state = os.path.join(base, "state")
    try:
        with open(os.path.join(state, ".digest-key"), encoding="ascii") as fh:
            key: bytes | None = bytes.fromhex(fh.read().strip())
    except FileNotFoundError:
        if not os.path.exists(os.path.join(state, "digest-key.age")):
            return None
        try:
            from pathlib import Path

            from .state.digest import stored_key
            key = stored_key(Path(state))
        except Exception:
            return None
    except (OSError, ValueError):
        return None
    if not key or len(key) != 32:
        return None
    return blake2b(key, person=b"facsimile noop").digest()


def _mac(key: bytes, body: bytes) -> bytes:
    """The record's MAC: keyed BLAKE2b of its body, in hex."""
    return blake2b(body, key=key).hexdigest().encode()


def _read(base: str, key: bytes) -> dict[str, Any] | None:
    """The record of ``base`` when it is there, authentic and of this environment."""
    try:
        with open(os.path.join(base, RECORD), "rb") as fh:
            mac, _, body = fh.read().partition(b"\n")
    except OSError:
        return None
    if not compare_digest(mac, _mac(key, body)):
        return None
    try:
        rec = json.loads(body)
    except ValueError:
        return None
    if not isinstance(rec, dict) or rec.get("env") != _env():
        return None
    return rec


def stats(base: str, tree: dict[str, list[str]]) -> array[int]:
    """``(size, mtime_ns, ctime_ns, inode)`` of every entry of ``tree`` (folder, relative
    to ``base`` unless absolute -> names in it), in order; -1s for one not there.
    Each folder is opened once and its entries are looked up in it."""
    out: array[int] = array("q")
    ext, lstat = out.extend, os.lstat
    for folder, names in tree.items():
        path = folder if folder[:1] == "/" else f"{base}/{folder}" if folder else base
        try:
            fd = os.open(path, _DIR_FLAGS)
        except OSError:
            ext(_ABSENT * len(names))
            continue
        try:
            for name in names:
                try:
                    st = lstat(name, dir_fd=fd)
                except OSError:
                    ext(_ABSENT)
                    continue
                ext((st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
        finally:
            os.close(fd)
    return out


def _holds(base: str, rec: dict[str, Any]) -> bool:
    """Whether every recorded entry has the stat recorded."""
    try:
        now = blake2b(stats(base, rec["tree"]).tobytes()).hexdigest()
    except (KeyError, TypeError, AttributeError, ValueError):
        return False
    return compare_digest(now, str(rec.get("stats")))


def _valid(base: str | None) -> dict[str, Any] | None:
    """The record of ``base`` when it holds now, else None."""
    if base is None or not enabled():
        return None
    key = _mac_key(base)
    rec = _read(base, key) if key else None
    return rec if rec is not None and _holds(base, rec) else None


def _instances(rec: dict[str, Any], names: list[str]) -> list[str] | None:
    """The instances ``names`` select (all when none) if the record covers each."""
    counts = rec.get("counts")
    if not isinstance(counts, dict) or not isinstance(rec.get("all"), list):
        return None
    chosen = list(dict.fromkeys(names)) if names else rec["all"]
    return chosen if all(n in counts for n in chosen) else None


def _finish(text: str, code: int) -> None:
    """Print ``text``, say so on stderr when asked, and end the process with ``code``."""
    sys.stdout.write(text)
    sys.stdout.flush()
    if os.environ.get(DEBUG_VAR):
        sys.stderr.write("facsimile: no-op answered from .facsimile/noop.json\n")
        sys.stderr.flush()
    os._exit(code)


def _summary(rec: dict[str, Any], chosen: list[str]) -> str:
    total = sum(int(rec["counts"][n]) for n in chosen)
    return f"facsimile: 0 built, {total} up to date\n" if total else ""


def is_doit(argv: list[str]) -> bool:
    """Whether this process is the ``doit`` command (``doit``, ``python -m doit``)
    loading the root's ``dodo.py``."""
    first = argv[0] if argv else ""
    return "doit.doit_cmd" in sys.modules and (
        os.path.basename(first) == "doit"
        or first.endswith(os.path.join("doit", "__main__.py")))


def answer_doit(argv: list[str]) -> None:
    """In plain ``doit`` (``argv``: its arguments), print the no-op's summary and exit
    when the record holds; return otherwise. Only ``[run] [build|build:<instance>...]``."""
    args = argv[1:] if argv[:1] == ["run"] else list(argv)
    if not all(a == "build" or (a.startswith("build:") and "/" not in a) for a in args):
        return
    base = find_base()
    rec = _valid(base)
    names = [] if not args or "build" in args else [a[6:] for a in args]
    chosen = None if rec is None else _instances(rec, names)
    if rec is not None and chosen is not None:
        _finish(_summary(rec, chosen), 0)
    _begin(base)


def is_facs(argv: list[str]) -> bool:
    """Whether this process is the ``facs`` command (``facs``, ``python -m facsimile.cli``)."""
    orig = getattr(sys, "orig_argv", [])
    if "-m" in orig:
        i = orig.index("-m")
        return orig[i + 1:i + 2] == ["facsimile.cli"]
    return os.path.basename(argv[0] if argv else "") == "facs"


def answer_facs(argv: list[str]) -> None:
    """In ``facs`` (``argv``: its arguments), answer ``build [INSTANCE...]`` and
    ``plan [--json] [INSTANCE...]`` from the record and exit when it holds."""
    if not argv or argv[0] not in ("build", "plan"):
        return
    command, rest = argv[0], argv[1:]
    as_json = command == "plan" and "--json" in rest
    names = [a for a in rest if a != "--json"] if command == "plan" else rest
    if any(a.startswith("-") for a in names):
        return
    base = find_base()
    rec = _valid(base)
    chosen = None if rec is None else _instances(rec, names)
    if rec is not None and chosen is not None:
        if command == "build":
            _finish(_summary(rec, chosen), 0)
        answer = rec.get("plans", {}).get(plan_key(names, as_json))
        if isinstance(answer, list) and len(answer) == 2:
            _finish(str(answer[1]), int(answer[0]))
    _begin(base)


def plan_key(names: Iterable[str], as_json: bool) -> str:
    """The key of a plan's answer: the instances it names and its format."""
    return json.dumps([list(names), as_json])


# ------------------------------------------------------------------ writing


def _walk(folder: str, tree: dict[str, list[str]], base: str) -> bool:
    """Every folder and file below ``folder`` into ``tree``; False when it holds a
    link to a folder (then no record: the files behind it would not be seen)."""
    _add(tree, base, *os.path.split(folder))
    stack = [folder]
    while stack:
        path = stack.pop()
        try:
            entries = list(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                if e.name in _SKIP_DIRS:
                    continue
                stack.append(e.path)
            _add(tree, base, path, e.name)
            if e.is_symlink():
                real = os.path.realpath(e.path)
                if os.path.isdir(real):
                    return False
                _add(tree, base, *os.path.split(real))
    return True


def _add(tree: dict[str, list[str]], base: str, folder: str, name: str) -> None:
    """Add ``folder/name`` (``folder`` relative to ``base`` when inside it)."""
    if folder == base:
        folder = ""
    elif folder.startswith(base + os.sep):
        folder = folder[len(base) + 1:].replace(os.sep, "/")
    names = tree.setdefault(folder, [])
    if name not in names[-1:]:
        names.append(name)


_begun: tuple[str, dict[str, list[str]], str] | None = None


def _sources(base: str) -> dict[str, list[str]] | None:
    """The sources a run reads (definitions, templates, extras, checkouts, subprojects,
    the root's files but the database), as a tree for :func:`stats`."""
    tree: dict[str, list[str]] = {}
    for top in ("define", "tmpl", "extra", "SRC", "projects"):
        if not _walk(os.path.join(base, top), tree, base):
            return None
    for name in _ROOT_FILES:
        if name != ".doit.db":
            _add(tree, base, base, name)
    return tree


def _begin(base: str | None) -> None:
    """A full run starts: note its sources' stats, so that a record is written only
    when none changed while it ran (an edit then may not be in what it built)."""
    global _begun
    tree = _sources(base) if base is not None and enabled() else None
    _begun = None if tree is None or base is None else \
        (base, tree, blake2b(stats(base, tree).tobytes()).hexdigest())


def _unchanged_since_begun(base: str) -> bool:
    return _begun is not None and _begun[0] == base and \
        blake2b(stats(base, _begun[1]).tobytes()).hexdigest() == _begun[2]


def _code(tree: dict[str, list[str]], base: str) -> None:
    """The Python files of every module loaded (facsimile, its libraries, the class
    module): an upgrade or an edit of one goes the full way."""
    for mod in list(sys.modules.values()):
        path = getattr(mod, "__file__", None)
        if isinstance(path, str) and os.path.isabs(path):
            _add(tree, base, *os.path.split(path))


def record(base: str, folders: Iterable[str], counts: dict[str, int], every: list[str],
           plan: tuple[str, int, str] | None = None) -> None:
    """Write (or extend) the record after a run that left every output of the instances
    in ``counts`` (name -> its number of outputs) up to date. ``folders``: the layer
    folders the run listed; ``every``: all instance names; ``plan``: (key, exit code,
    text) of a plan that found nothing to do. Best effort: never fails a run."""
    try:
        _record(base, folders, counts, every, plan)
    except Exception:  # the record only saves time
        pass


def _record(base: str, folders: Iterable[str], counts: dict[str, int], every: list[str],
            plan: tuple[str, int, str] | None) -> None:
    key = _mac_key(base)
    if key is None or not _unchanged_since_begun(base):
        return
    tree: dict[str, list[str]] = {}
    for top in ("define", "tmpl", "extra", "state", "BUILD", *sorted(set(folders))):
        if not _walk(os.path.join(base, top), tree, base):
            return
    for name in ("SRC", *_ROOT_FILES):
        _add(tree, base, base, name)
    _code(tree, base)
    rec: dict[str, Any] = {"env": _env(), "all": sorted(every), "counts": dict(counts),
                           "plans": {}}
    old = _read(base, key)
    if old is not None and old.get("all") == rec["all"] and _holds(base, old):
        for folder, names in old["tree"].items():  # all as it was: this run adds to it
            have = tree.setdefault(folder, [])
            seen = set(have)
            have.extend(n for n in names if n not in seen)
        rec["counts"] = {**old.get("counts", {}), **counts}
        rec["plans"] = dict(old.get("plans", {}))
    if plan is not None:
        rec["plans"][plan[0]] = [plan[1], plan[2]]
    now = stats(base, tree)
    stamps = [t for i in range(0, len(now), 4) for t in now[i + 1:i + 3] if t >= 0]
    coarse = bool(stamps) and all(t % 1_000_000 == 0 for t in stamps)
    if stamps and max(stamps) > time.time_ns() - (COARSE_SETTLE_NS if coarse else SETTLE_NS):
        return  # an entry this new may change again within its timestamp
    rec["tree"], rec["stats"] = tree, blake2b(now.tobytes()).hexdigest()
    body = json.dumps(rec, separators=(",", ":")).encode()
    from .atomic import write_atomic

    os.makedirs(os.path.join(base, ".facsimile"), exist_ok=True)
    write_atomic(os.path.join(base, RECORD), _mac(key, body) + b"\n" + body)


def write_record(build: Any, chosen: list[str], plan: tuple[str, int, str] | None = None) -> None:
    """Record that every output of the instances ``chosen`` is up to date, for a
    :class:`facsimile.build.Build` whose run found or left them so. Not for a
    project with tasks of its own (a no-op runs them) nor remote state."""
    from .state.files import Local

    project = build.project
    if not enabled() or list(project.tasks()) or not isinstance(project.store.backend, Local):
        return
    counts = {n: len(build.outputs(project.instances[n])) for n in chosen}
    record(str(build.root.base), list(build.index.folders), counts, list(project.instances),
           plan)


def forget(base: str) -> None:
    """Remove the record (a run that did not end up to date)."""
    try:
        os.unlink(os.path.join(base, RECORD))
    except OSError:
        pass
