"""Make bench/example-app.bundle: the small git repository of the worked example's
``app`` module, whose templates live with its code, in the root's layers
(config/facsimile/tmpl/_ALL_/, config/facsimile/tmpl/prod/; see docs/pages/templates.md,
"Templates in the application repository").

A git bundle is a whole repository in one file, so the example builds from a
fresh clone with no network: ``git clone --branch v1.0 bench/example-app.bundle``.
Run this again to change the module's templates (and bump the tag).

    python bench/make_example_repo.py
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUNDLE = HERE / "example-app.bundle"
DATE = "2026-01-01T00:00:00Z"  # of the commit: the same files make the same bundle
FILES = {
    "README.md": ("The shop app. Its deployment templates live in config/facsimile/tmpl,\n"
                  "in layers: _ALL_/ for every instance, prod/ for prod and prod.ch1.\n"),
    "config/facsimile/tmpl/_ALL_/etc/app/features.ini.j2": (
        "# from the app's own repository, version {{ module.app.version }}\n"
        "[features]\n"
        "checkout_v2 = {{ 'on' if instance.name.startswith('prod') else 'off' }}\n"
        "region = {{ instance.region.name if instance.region is defined else 'none' }}\n"
    ),
    "config/facsimile/tmpl/prod/etc/app/cache.ini.j2": (
        "# from the app's own repository: production instances only\n"
        "[cache]\n"
        "{% for v in instance.vhosts %}{{ v.name }} = {{ 'on' if v.cache else 'off' }}\n"
        "{% endfor %}"
    ),
}


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=facsimile", "-c", "user.email=facsimile@localhost",
                    *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_COMMITTER_DATE": DATE})


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "app"
        for rel, text in FILES.items():
            path = repo / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git("init", "-q", "-b", "main", str(repo), cwd=Path(tmp))
        git("add", "-A", cwd=repo)
        git("commit", "-q", "-m", "app v1.0", "--date", DATE, cwd=repo)
        git("tag", "v1.0", cwd=repo)
        BUNDLE.unlink(missing_ok=True)
        git("bundle", "create", str(BUNDLE), "--all", cwd=repo)
    print(f"wrote {BUNDLE}")


if __name__ == "__main__":
    main()
