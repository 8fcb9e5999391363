"""Make bench/example-app.bundle: the small git repository of the worked example's
``app`` module, whose templates live with its code (config/facsimile/tmpl/).

A git bundle is a whole repository in one file, so the example builds from a
fresh clone with no network: ``git clone --branch v1.0 bench/example-app.bundle``.
Run this again to change the module's templates (and bump the tag).

    python bench/make_example_repo.py
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUNDLE = HERE / "example-app.bundle"
FILES = {
    "README.md": "The shop app. Its deployment templates live in config/facsimile/tmpl.\n",
    "config/facsimile/tmpl/etc/app/features.ini.j2": (
        "# from the app's own repository, version {{ module.app.version }}\n"
        "[features]\n"
        "checkout_v2 = {{ 'on' if instance.name.startswith('prod') else 'off' }}\n"
        "region = {{ instance.region.name if instance.region is defined else 'none' }}\n"
    ),
}


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=facsimile", "-c", "user.email=facsimile@localhost",
                    *args], cwd=cwd, check=True, capture_output=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "app"
        for rel, text in FILES.items():
            path = repo / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        git("init", "-q", "-b", "main", str(repo), cwd=Path(tmp))
        git("add", "-A", cwd=repo)
        git("commit", "-q", "-m", "app v1.0", "--date", "2026-01-01T00:00:00Z", cwd=repo)
        git("tag", "v1.0", cwd=repo)
        BUNDLE.unlink(missing_ok=True)
        git("bundle", "create", str(BUNDLE), "--all", cwd=repo)
    print(f"wrote {BUNDLE}")


if __name__ == "__main__":
    main()
