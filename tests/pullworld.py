"""What the tests of facs publish and facs pull share: a root with one target of two
hosts built and published once (``World``: each test module makes one), its
keys, and ways to look at a destination and damage a store."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from conftest import DODO, facs, write_tree

from facsimile.pull import sign
from facsimile.pull.pull import Request, pull
from facsimile.pull.store import Store


def keypair(where: Path, name: str) -> tuple[Path, str]:
    """An ssh ed25519 key pair like a host's (private file, public line)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(where / name)],
                   check=True)
    return where / name, (where / f"{name}.pub").read_text().strip()


def make_root(base: Path, keys: dict[str, str], extra: dict | None = None) -> Path:
    """A root with one target of two hosts: a shared secret file, a shared plain one,
    and per host a secret and a plain file ({host} fan-out)."""
    root = base / "root"
    write_tree(root, {
        "dodo.py": DODO,
        "define/facsimile.json": {"name": "demo", "generate": {"secret_key": "token:16"},
                                  "deploy": {"postcmd": ["echo reloaded >> ../reloads"]}},
        "define/prod.json": {"targets": {"app": {
            "hosts": ["a1", "a2"], "files": ["etc/**", "hosts/{host}/**"],
            "host_keys": {"a1": keys["a1"], "a2": keys["a2"]}}}},
        "tmpl/_ALL_/etc/app.ini.j2": "secret = {{ state.secret_key }}\n",
        "tmpl/_ALL_/etc/plain.conf.j2": "name = {{ instance.name }}\n",
        "tmpl/_ALL_/hosts/{host}/node.conf.j2": "{{ this.name }} {{ state.secret_key }}\n",
        "tmpl/_ALL_/hosts/{host}/id.conf.j2": "id {{ this.name }}\n",
        **(extra or {}),
    })
    return root


class World:
    """One built and published root, the keys, and a way to pull from a store."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.a1_key, a1 = keypair(base, "a1.key")
        self.a2_key, a2 = keypair(base, "a2.key")
        self.sign_key = base / "sign.key"
        self.public = sign.keygen(self.sign_key)
        self.root = make_root(base, {"a1": a1, "a2": a2})
        self.store = base / "store"
        self.publish()

    def publish(self, *args: str, root: Path | None = None, store: Path | None = None) -> str:
        proc = facs(root or self.root, "publish", "prod", "--to", str(store or self.store),
                    "--sign-key", str(self.sign_key), *args, check=True)
        return proc.stdout

    def secret(self, root: Path | None = None) -> str:
        state = json.loads(((root or self.root) / "state/prod/state.json").read_text())
        return state["generate"]["secret_key"]["value"]

    def pull(self, dest: Path, host: str | None = "a1", *, store: Path | Store | None = None,
             identity: Path | None = None, keys: list[str] | None = None,
             **kw: object) -> tuple[int, list[str]]:
        lines: list[str] = []
        where = store if isinstance(store, Store) else None
        url = str(store or self.store) if where is None else where.url
        ident = identity if identity is not None else (self.a1_key if host != "a2"
                                                       else self.a2_key)
        req = Request(url, "prod", "app", host, str(dest), identities=(str(ident),), **kw)
        code = pull(req, keys or [self.public], lines.append, store=where)
        return code, lines


def tree(dest: Path) -> dict[str, bytes]:
    """The files a pull wrote (its own records aside)."""
    return {p.relative_to(dest).as_posix(): p.read_bytes() for p in sorted(dest.rglob("*"))
            if p.is_file() and ".facsimile" not in p.relative_to(dest).parts}


def copy_store(world: World, tmp_path: Path) -> Path:
    shutil.copytree(world.store, tmp_path / "store")
    return tmp_path / "store"


class Counting(Store):
    """A store that counts the reads and listings a pull makes."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.reads: list[str] = []
        self.lists = 0

    def read(self, rel: str) -> bytes | None:
        self.reads.append(rel)
        return super().read(rel)

    def find(self, prefix: str) -> list[str]:
        self.lists += 1
        return super().find(prefix)


def resign(store: Path, rel: str, key: Path, **changes: object) -> None:
    """Rewrite a manifest with ``changes``, signed with ``key`` (the publisher's)."""
    doc = json.loads((store / rel).read_text())
    (store / rel).write_bytes(sign.envelope({**doc["payload"], **changes},
                                            sign.load_private(key)))


A1 = "prod/app/hosts/a1/manifest.json"
