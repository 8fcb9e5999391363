"""Source checkouts: ``SRC/<module>-<version>/``, a git clone at a version tag.

Shared by all instances ("version tags are enough"). A clone is made into a
temporary folder and renamed into place, so a failed clone leaves nothing.
:func:`verify` refuses a checkout whose tag has moved since it was made; it asks the
remote, so it runs on `facs sync` and `facs checkout --verify`, not on a build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import FacsimileError

DEFAULT_TMPL = "config/facsimile/tmpl"


class CheckoutError(FacsimileError, RuntimeError):
    """A repository or tag cannot be checked out, or a tag moved."""


@dataclass(frozen=True)
class Source:
    """One module's (or the project's) source: where from, which tag, where to."""

    name: str
    repo: str
    version: str
    tmpl: str  # template folder inside the checkout
    defined_in: str  # definition file, for errors

    def path(self, src_dir: Path) -> Path:
        return src_dir / f"{self.name}-{self.version}"


def _git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=600,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},  # keep the user's git settings
        )
    except FileNotFoundError as exc:
        raise CheckoutError("git is not installed; it is needed for source checkouts") from exc


def ensure(src: Source, src_dir: Path) -> Path:
    """The checkout of ``src``, cloned now if it is not there yet."""
    parts = src.tmpl.replace("\\", "/").split("/")
    if src.tmpl.startswith(("/", "\\", "~")) or ".." in parts or ":" in parts[0]:
        raise CheckoutError(f"the \"tmpl\" of {src.name}, {src.tmpl!r}, must be a folder "
                            "inside its checkout (relative, without ..)", file=src.defined_in)
    dest = src.path(src_dir)
    if dest.is_dir():
        return dest
    src_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=src_dir))
    try:
        proc = _git("clone", "--quiet", "--depth", "1", "--branch", src.version,
                    "--", src.repo, str(tmp / "c"))
        if proc.returncode != 0:
            err = proc.stderr.strip().splitlines()
            reason = err[-1] if err else f"git exited {proc.returncode}"
            if "not found in upstream" in proc.stderr:
                reason = f"tag {src.version!r} not found"
            raise CheckoutError(
                f"cannot check out {src.name} {src.version} from {src.repo}: {reason}",
                file=src.defined_in,
            )
        if not _is_tag(tmp / "c", src.version):
            raise CheckoutError(
                f"{src.version!r} is a branch of {src.repo}, not a tag: versions must be tags",
                file=src.defined_in,
            )
        (tmp / "c").rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _is_tag(repo: Path, version: str) -> bool:
    proc = _git("tag", "--list", version, cwd=repo)
    return proc.returncode == 0 and proc.stdout.strip() == version


def verify(src: Source, src_dir: Path) -> None:
    """Refuse a checkout whose tag now points elsewhere (or no longer exists), or whose
    remote cannot be read: one line naming the module, its repository and its tag."""
    dest = src.path(src_dir)
    head = _git("rev-parse", "HEAD", cwd=dest)
    if head.returncode != 0:
        raise CheckoutError(f"{src.name}: SRC/{dest.name} is not a git checkout; remove it",
                            file=src.defined_in)
    remote = _git("ls-remote", "--tags", "--", src.repo,
                  f"refs/tags/{src.version}", f"refs/tags/{src.version}^{{}}")
    if remote.returncode != 0:
        err = remote.stderr.strip().splitlines()  # git's first line says why
        why = err[0].removeprefix("fatal: ") if err else f"git exited {remote.returncode}"
        raise CheckoutError(f"{src.name}: cannot read tag {src.version!r} of {src.repo}: "
                            f"{why}", file=src.defined_in)
    refs = dict(reversed(line.split("\t", 1)) for line in remote.stdout.splitlines() if line)
    now = refs.get(f"refs/tags/{src.version}^{{}}") or refs.get(f"refs/tags/{src.version}")
    if now is None:
        raise CheckoutError(f"{src.name}: tag {src.version!r} no longer exists in {src.repo}",
                            file=src.defined_in)
    if now != head.stdout.strip():
        raise CheckoutError(
            f"{src.name}: tag {src.version!r} of {src.repo} moved: SRC/{dest.name} is at "
            f"{head.stdout.strip()[:12]}, the tag now at {now[:12]}; remove "
            f"SRC/{dest.name} to check out the new one, or give the new code a new tag",
            file=src.defined_in,
        )
