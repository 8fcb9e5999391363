"""The rest of the seed's model: overlays, genconfig, fan-out, class overrides."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from conftest import DODO, doit, facs, mtimes, write_tree

BASE = {
    "dodo.py": DODO,
    "define/facsimile.json": {"name": "shop"},
    "define/modules.json": {"app": {"db": {"name": "app"}, "port": 80}, "worker": {}},
    "define/dev.json": {"targets": {"web": {"hosts": ["w1", "w2"]}, "db": {"hosts": ["d1"]}}},
    "define/prod.json": {"modules": {"app": {"db": {"name": "app_prod"}}, "extra": {"x": 1}},
                         "targets": {"web": {"hosts": ["p1"]}}},
}


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    write_tree(tmp_path, BASE)
    return tmp_path


def test_module_overlay_by_name(seed: Path) -> None:
    write_tree(seed, {"tmpl/_ALL_/db.txt": "{{ module.app.db.name }} {{ module.app.port }} "
                                            "{{ module | sort | join(',') }}\n"})
    doit(seed, check=True)
    assert (seed / "BUILD/dev/db.txt").read_text() == "app 80 app,worker\n"
    # prod changes one nested key, keeps the others, and adds a module
    assert (seed / "BUILD/prod/db.txt").read_text() == "app_prod 80 app,extra,worker\n"
    shown = json.loads(facs(seed, "show", "prod", "--json", check=True).stdout)
    assert shown["module"]["extra"]["password"] == "********"


def test_genconfig_writes_module_config(seed: Path) -> None:
    write_tree(seed, {"define/modules.json": {
        "app": {"genconfig": True, "port": 80},
        "worker": {"genconfig": True, "genconfig_path": "conf/w.json"},
    }})
    doit(seed, check=True)
    path = seed / "BUILD/dev/etc/app.json"
    cfg = json.loads(path.read_text())
    state = json.loads((seed / "state/dev/state.json").read_text())
    assert cfg["username"] == "app" and cfg["port"] == 80
    assert cfg["password"] == state["modules"]["app"]["value"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (seed / "BUILD/dev/conf/w.json").exists()
    before = mtimes(seed / "BUILD")
    facs(seed, "state", "rotate", "dev", "worker", check=True)
    doit(seed, check=True)
    after = mtimes(seed / "BUILD")
    assert {k for k in after if after[k] != before.get(k)} == {"dev/conf/w.json"}
    proc = facs(seed, "plan")
    assert proc.returncode == 0


def test_fan_out_per_host_and_module(seed: Path) -> None:
    write_tree(seed, {
        "tmpl/_ALL_/hosts/{host}/node.conf": "{{ this.name }} {{ this.target }}\n",
        "tmpl/_ALL_/etc/{module}.conf.j2": "{{ this.name }}:{{ this.username }}\n",
    })
    doit(seed, check=True)
    files = set(mtimes(seed / "BUILD/dev"))
    assert {"hosts/w1/node.conf", "hosts/w2/node.conf", "hosts/d1/node.conf",
            "etc/app.conf", "etc/worker.conf"} <= files
    assert (seed / "BUILD/dev/hosts/d1/node.conf").read_text() == "d1 db\n"
    assert (seed / "BUILD/prod/etc/extra.conf").read_text() == "extra:extra\n"
    # adding a host adds its output, removing one removes it
    write_tree(seed, {"define/dev.json": {"targets": {"web": {"hosts": ["w1", "w3"]}}}})
    before = mtimes(seed / "BUILD/dev")
    proc = facs(seed, "plan", "dev")
    assert "BUILD/dev/hosts/w3/node.conf: new" in proc.stdout
    assert "BUILD/dev/hosts/w2/node.conf: orphan" in proc.stdout
    doit(seed, check=True)
    after = mtimes(seed / "BUILD/dev")
    assert "hosts/w3/node.conf" in after and "hosts/w2/node.conf" not in after
    assert after["hosts/w1/node.conf"] == before["hosts/w1/node.conf"]


def test_fan_out_reads_are_tracked(seed: Path) -> None:
    write_tree(seed, {"tmpl/_ALL_/etc/{module}.conf": "{{ this.port | default(0) }}\n"})
    doit(seed, check=True)
    before = mtimes(seed / "BUILD")
    write_tree(seed, {"define/modules.json": {"app": {"db": {"name": "app"}, "port": 81},
                                              "worker": {}}})
    doit(seed, check=True)
    after = mtimes(seed / "BUILD")
    assert {k for k in after if after[k] != before[k]} == {"dev/etc/app.conf",
                                                           "prod/etc/app.conf"}


CLASS = '''
import facsimile


class Shop(facsimile.Project):
    def _init_linux(self):
        self.booted = "linux"

    def extra_context(self, inst):
        return {"booted": getattr(self, "booted", "no"), "answer": 42}

    def generators(self):
        kinds = super().generators()
        kinds["password"] = lambda n: "x" * (n or 8)
        return kinds
'''


def test_class_override(seed: Path) -> None:
    write_tree(seed, {
        "define/facsimile.json": {"name": "shop", "class": "shopext:Shop"},
        "shopext.py": CLASS,
        "tmpl/_ALL_/a.txt": "{{ booted }} {{ answer }} {{ module.app.password }}\n",
    })
    doit(seed, check=True)
    assert (seed / "BUILD/dev/a.txt").read_text() == "linux 42 xxxxxxxx\n"


@pytest.mark.parametrize(("spec", "message"), [
    ("nomodule:Shop", "cannot import 'nomodule'"),
    ("shopext:Nope", "has no class 'Nope'"),
    ("shopext", "must look like 'module.path:ClassName'"),
])
def test_bad_class_is_a_clear_error(seed: Path, spec: str, message: str) -> None:
    write_tree(seed, {"define/facsimile.json": {"name": "shop", "class": spec},
                      "shopext.py": CLASS})
    proc = facs(seed, "list")
    assert proc.returncode == 1
    assert message in proc.stderr and "define/facsimile.json" in proc.stderr
    assert "Traceback" not in proc.stderr
