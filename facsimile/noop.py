"""The no-op record: a build or plan with nothing to do, answered from ``stat`` alone.

A run that ends with every output of its instances up to date (a build with no
failure, or a plan that found nothing stale) writes ``.facsimile/noop.record``
(:mod:`facsimile.build.stamp`): every file and folder it depended on (inputs,
state, outputs, the Python modules loaded) with the digest of their
``(size, mtime_ns, ctime_ns, inode)``, the environment (Python, ``FACSIMILE_*``,
``DOIT_*``, the umask), each instance's number of outputs and the answers of
plans. Its first line is a MAC (keyed BLAKE2b) of the rest, keyed from the
root's digest key, like the other caches of ``.facsimile/``; the rest is in
:mod:`marshal`'s format (read only once the MAC is right; quicker to load
than JSON, whose module alone costs a no-op 1.5 ms).

The next plain ``doit``, ``doit build[:<instance>]``, ``facs build [INSTANCE...]``
or ``facs plan [--json] [INSTANCE...]`` reads it before importing anything
else of facsimile (:func:`answer_doit`, :func:`answer_facs`): when every stat
is as recorded it prints what the full way would print and exits. Anything
else (a stat that differs, a damaged or forged record, no key, other commands
or options) goes the full way, silently. A folder's stat changes when an entry
is added or removed, so a new template or a stray file in ``BUILD/`` is seen.

What a project class reads besides the files above (another file, the clock,
other environment variables) is not seen: a project whose context depends on
such things sets ``FACSIMILE_NOOP_RECORD=0``.

This module imports only the standard library (not even OpenSSL): it runs
before doit's tasks, Jinja2 or the definitions are loaded.
``FACSIMILE_NOOP_RECORD=0`` (or ``FACSIMILE_FAST=0``) turns it off.
"""

from __future__ import annotations

import marshal
import os
import sys
from array import array

try:  # the keyed BLAKE2b MAC without loading OpenSSL (hashlib, hmac): part of a no-op
    from _blake2 import blake2b
    from _operator import _compare_digest as compare_digest
except ImportError:  # pragma: no cover - another Python
    from hashlib import blake2b
    from hmac import compare_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

FORMAT = 5
RECORD = os.path.join(".facsimile", "noop.record")
OFF_VARS = ("FACSIMILE_NOOP_RECORD", "FACSIMILE_FAST")
DEBUG_VAR = "FACSIMILE_DEBUG_FASTNOOP"  # set: the fast answer says so on stderr
ROOT_FILES = ("facsimile.json", "dodo.py", ".doit.db", "doit.cfg", "pyproject.toml")

_ABSENT = (-1, -1, -1, -1)
_DIR_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | getattr(os, "O_DIRECTORY", 0)


def enabled() -> bool:
    """Neither ``FACSIMILE_NOOP_RECORD`` nor ``FACSIMILE_FAST`` is ``0`` (false, no, off)."""
    return all(os.environ.get(v, "").strip().lower() not in ("0", "false", "no", "off")
               for v in OFF_VARS)


def env() -> list[Any]:
    """What of the process, besides files, a build depends on."""
    mask = os.umask(0o022)
    os.umask(mask)
    skip = (DEBUG_VAR, *OFF_VARS)
    found = sorted([k, v] for k, v in os.environ.items()
                   if k.startswith(("FACSIMILE_", "DOIT_")) and k not in skip)
    return [FORMAT, sys.version, sys.executable, mask, found]


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


def mac_key(base: str) -> bytes | None:
    """The record's MAC key, from the root's digest key (plain, or sealed and opened
    with this run's identity); None when there is none or it cannot be read."""
    state = os.path.join(base, "state")
    try:
        with open(os.path.join(state, ".digest-key"), "rb") as fh:
            key: bytes | None = bytes.fromhex(fh.read().strip().decode("ascii"))
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


def mac(key: bytes, body: bytes) -> bytes:
    """The record's MAC: keyed BLAKE2b of its body, in hex."""
    return blake2b(body, key=key).hexdigest().encode()


def read(base: str, key: bytes) -> dict[str, Any] | None:
    """The record of ``base`` when it is there, authentic and of this environment."""
    try:
        with open(os.path.join(base, RECORD), "rb") as fh:
            given, _, body = fh.read().partition(b"\n")
    except OSError:
        return None
    if not compare_digest(given, mac(key, body)):
        return None
    try:
        rec = marshal.loads(body)  # authentic: written by this project's build
    except (ValueError, EOFError, TypeError):
        return None
    if not isinstance(rec, dict) or rec.get("env") != env():
        return None
    return rec


def stats(base: str, tree: dict[str, list[str]], *, split: bool = False) -> array[int]:
    """``(size, mtime_ns, ctime_ns, inode)`` of every entry of ``tree`` (a folder,
    relative to ``base`` unless absolute, -> paths below it, ``.`` for itself), in
    order; -1s for one not there. Each folder is opened once and its paths are
    looked up from it (one call each). ``split``: a long tree is shared out among
    forked processes, one per core (only where nothing else of the process runs:
    the answer of a no-op); the result is the same."""
    parts = _parts(list(tree.items()), _cores() if split else 1)
    children = _spawn(base, parts[1:])
    try:
        return _collect(_stats(base, parts[0]), children)
    finally:
        _stop(children)


def _stats(base: str, items: Iterable[tuple[str, list[str]]]) -> array[int]:
    out: array[int] = array("q")
    ext, lstat = out.extend, os.lstat
    for folder, names in items:
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


SPLIT_MIN = 3000  # entries each process of a split stats at least (a fork costs ~0.5 ms)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


Items = list[tuple[str, list[str]]]


def _parts(items: Items, cores: int, lead: int = 0) -> list[Items]:
    """``items`` cut, in order, into up to ``cores`` parts of about the same number of
    entries and of at least :data:`SPLIT_MIN` each (a folder's names may be cut).
    ``lead``: entries the first part's process stats besides its part (it gets that
    many fewer)."""
    total = sum(len(names) for _, names in items)
    n = min(cores, (total + lead) // SPLIT_MIN) if hasattr(os, "fork") else 1
    if n < 2:
        return [items]
    parts: list[Items] = [[]]
    room = -(-(total + lead) // n)
    left = max(0, room - lead)
    for folder, names in items:
        while len(names) > left and len(parts) < n:
            if left:
                parts[-1].append((folder, names[:left]))
                names = names[left:]
            parts.append([])
            left = room
        parts[-1].append((folder, names))
        left -= len(names)
    return parts


Child = tuple[int, int, Items]  # pid, the read end of its pipe, its part


def _spawn(base: str, parts: list[Items]) -> list[Child]:
    """A forked child for each of ``parts``, that stats it (:func:`_stats`), sends the
    result through a pipe and ends without running anything else."""
    children: list[Child] = []
    for part in parts:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(r)
                view = memoryview(_stats(base, part).tobytes())
                while view:
                    view = view[os.write(w, view):]
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        children.append((pid, r, part))
    return children


def _collect(out: array[int], children: list[Child]) -> array[int]:
    """``out`` followed by each child's stats, in order; each child is waited for (and
    taken off ``children``). A child that fails sends less than its share: then the
    stats say -2 for the part's entries (no stat is -2: the record does not hold, and
    the full way follows)."""
    while children:
        pid, r, part = children.pop(0)
        chunks = []
        try:
            while chunk := os.read(r, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(r)
            _, status = os.waitpid(pid, 0)
        data = b"".join(chunks)
        want = 4 * sum(len(names) for _, names in part)
        if status or len(data) != want * out.itemsize:
            out.extend([-2] * want)
        else:
            out.frombytes(data)
    return out


def _stop(children: list[Child]) -> None:
    """Children not collected (the answer was known before their part was needed):
    killed and waited for."""
    for pid, r, _ in children:
        os.close(r)
        try:
            os.kill(pid, 9)  # SIGKILL, without importing signal
        except OSError:
            pass
        os.waitpid(pid, 0)
    children.clear()


def digest(found: array[int]) -> str:
    """The digest of :func:`stats`."""
    return blake2b(found.tobytes()).hexdigest()


Tree = dict[str, list[str]]  # folder -> the paths below it (see :func:`stats`)


def sources_and_outputs(tree: Tree) -> tuple[Tree, Tree]:
    """``tree`` cut in two: the sources (definitions, templates, extras, state, the
    root's files, the code; about a tenth of the entries, and what an edit changes)
    and ``BUILD/``. The record keeps a digest of each, and a change of a source is
    seen without a ``stat`` of any output."""
    head: Tree = {}
    outputs: Tree = {}
    for folder, names in tree.items():
        (outputs if folder == "BUILD" or folder.startswith("BUILD/") else head)[folder] = names
    return head, outputs


def holds(base: str, rec: dict[str, Any], *, split: bool = False) -> bool:
    """Whether every recorded entry has the stat recorded: the sources first, then
    ``BUILD/``. ``split``: the sources are statted here while forked children (one
    per core but this one, see :func:`stats`) stat their share of ``BUILD/``; they
    are stopped as soon as a source is found changed."""
    children: list[Child] = []
    try:
        head, outputs = sources_and_outputs(rec["tree"])
        lead = sum(len(names) for names in head.values())
        parts = _parts(list(outputs.items()), _cores() if split else 1, lead)
        children = _spawn(base, parts[1:])
        if not compare_digest(digest(_stats(base, head.items())), str(rec.get("head"))):
            return False
        now = digest(_collect(_stats(base, parts[0]), children))
    except (KeyError, TypeError, AttributeError, ValueError):
        return False
    finally:
        _stop(children)
    return compare_digest(now, str(rec.get("stats")))


def _valid(base: str | None) -> dict[str, Any] | None:
    """The record of ``base`` when it holds now, else None."""
    if base is None or not enabled():
        return None
    key = mac_key(base)
    rec = read(base, key) if key else None
    return rec if rec is not None and holds(base, rec, split=True) else None


def _instances(rec: dict[str, Any], names: list[str]) -> list[str] | None:
    """The instances ``names`` select (all when none) if the record covers each."""
    counts = rec.get("counts")
    if not isinstance(counts, dict) or not isinstance(rec.get("all"), list):
        return None
    chosen = list(dict.fromkeys(names)) if names else rec["all"]
    return chosen if all(n in counts for n in chosen) else None


def _finish(text: str, code: int) -> None:
    """Print ``text``, say so on stderr when asked, and end the process with ``code``
    (at once: nothing else of the process is to run, nor to be cleaned up)."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
        if os.environ.get(DEBUG_VAR):
            sys.stderr.write("facsimile: no-op answered from .facsimile/noop.record\n")
            sys.stderr.flush()
    except OSError:  # the reader went away (``doit | head``): nothing left to tell
        pass
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
    if all(a == "build" or (a.startswith("build:") and "/" not in a) for a in args):
        names = [] if not args or "build" in args else [a[6:] for a in args]
        _answer(names, lambda rec, chosen: (_summary(rec, chosen), 0) if rec["dodo"] is True
                else None)


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

    def plan(rec: dict[str, Any], chosen: list[str]) -> tuple[str, int] | None:
        found = rec["plans"].get(plan_key(names, as_json))
        return None if found is None else (str(found[1]), int(found[0]))

    _answer(names, (lambda rec, chosen: (_summary(rec, chosen), 0)) if command == "build"
            else plan)


def _answer(names: list[str], text: Callable[[dict[str, Any], list[str]],
                                             tuple[str, int] | None]) -> None:
    """Print ``text(record, instances)`` and exit when the record holds and has an
    answer; else note where the full way starts (:func:`_begin`) and return."""
    base = find_base()
    try:
        rec = _valid(base)
        chosen = None if rec is None else _instances(rec, names)
        found = None if rec is None or chosen is None else text(rec, chosen)
    except Exception:  # a record of another shape: the full way
        found = None
    if found is not None:
        _finish(*found)
    _begin(base)


def plan_key(names: Iterable[str], as_json: bool) -> str:
    """The key of a plan's answer: the instances it names and its format."""
    return "\n".join(["json" if as_json else "text", *names])


def _begin(base: str | None) -> None:
    """The full way follows: note the stats of what it is to read (see
    :func:`facsimile.build.stamp.begin`)."""
    if base is not None and enabled():
        try:
            from .build.stamp import begin

            begin(base)
        except Exception:  # no record then; the full way says what is wrong
            pass
