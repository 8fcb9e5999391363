"""``facs init DIR``: a new facsimile root with a small working example."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import FacsimileError

FILES: dict[str, str] = {
    "dodo.py": "from facsimile.dodo import *\n",
    # state/ is not listed: facsimile keeps state/.gitignore (everything while the
    # state is plain, only locks, temp files and a plain digest key once it is sealed)
    # __pycache__/: Python compiles dodo.py and a class module of the root there
    ".gitignore": "BUILD/\nSRC/\nDEPLOY/\n.facsimile/\n.doit.db\n__pycache__/\n",
    "state/.gitignore": "# plain state holds secrets: never commit it\n*\n",
    "define/facsimile.json": json.dumps(
        {"name": "{name}", "app": {"port": 8080}, "generate": {"secret_key": "token:32"}},
        indent=2) + "\n",
    "define/modules.json": json.dumps([{"name": "app"}], indent=2) + "\n",
    "define/regions/local.json": json.dumps({"region": {"name": "local"}}, indent=2) + "\n",
    "define/dev.json": json.dumps(
        {"inherit": ["regions/local"], "app": {"port": 8000},
         "targets": {"app": {"hosts": ["localhost"]}}}, indent=2) + "\n",
    "tmpl/_lib/header.inc": "# {{ project.name }} {{ instance.name }}: made by facsimile\n",
    "tmpl/_ALL_/etc/app.conf.j2": (
        '{% include "header.inc" %}\n'
        "port = {{ instance.app.port }}\n"
        "region = {{ instance.region.name }}\n"
        "user = {{ module.app.username }}\n"
        "password = {{ module.app.password }}\n"
        "secret_key = {{ state.secret_key }}\n"
    ),
}


def init(folder: Path) -> list[Path]:
    """Write the example into ``folder``; refuse to overwrite anything."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FacsimileError(f"{folder} exists and is not a folder: nothing written")
    existing = [rel for rel in FILES if (folder / rel).exists()]
    if existing:
        raise FacsimileError(f"{folder} already has {', '.join(existing)}: nothing written")
    made = []
    for rel, text in FILES.items():
        path = folder / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text.replace("{name}", folder.resolve().name))
            if rel.endswith("app.conf.j2"):
                path.chmod(0o600)
        except OSError as exc:
            done = f" (written before: {len(made)} files)" if made else ": nothing written"
            raise FacsimileError(
                f"cannot create {exc.filename or path}: {exc.strerror or exc}{done}"
            ) from exc
        made.append(path)
    return made
