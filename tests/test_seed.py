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


@pytest.mark.slow
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


@pytest.mark.slow
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


def _git(cwd: Path, *args: str) -> None:
    import subprocess

    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                   check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A real git repository with templates at tag v1 and v2."""
    r = tmp_path / "apprepo"
    write_tree(r, {"config/facsimile/tmpl/etc/app-src.conf.j2": "v1 {{ instance.name }}\n"})
    _git(r.parent, "init", "-q", str(r))
    _git(r, "add", "-A")
    _git(r, "commit", "-qm", "one")
    _git(r, "tag", "v1")
    write_tree(r, {"config/facsimile/tmpl/etc/app-src.conf.j2": "v2 {{ instance.name }}\n"})
    _git(r, "commit", "-qam", "two")
    _git(r, "tag", "v2")
    return r


@pytest.mark.slow
def test_source_checkout_templates_and_version_file(seed: Path, repo: Path) -> None:
    write_tree(seed, {
        "define/facsimile.json": {"name": "shop", "version": "3.1"},
        "define/modules.json": {"app": {"repo": str(repo), "version": "v1"}},
        "tmpl/_ALL_/etc/own.conf": "own\n",
    })
    proc = doit(seed, check=True)
    assert ".  checkout:app" in proc.stdout
    assert (seed / "SRC/app-v1/config/facsimile/tmpl").is_dir()
    assert (seed / "BUILD/dev/etc/app-src.conf").read_text() == "v1 dev\n"
    assert (seed / "BUILD/dev/etc/shop.version").read_text() == "3.1\n"
    # a new version: new checkout, the output changes with it
    write_tree(seed, {"define/modules.json": {"app": {"repo": str(repo), "version": "v2"}}})
    assert "template changed: SRC/app-v2/" in facs(seed, "plan", "dev").stdout
    doit(seed, check=True)
    assert (seed / "BUILD/dev/etc/app-src.conf").read_text() == "v2 dev\n"


@pytest.mark.slow
def test_missing_and_moved_tags_are_clear_errors(seed: Path, repo: Path) -> None:
    write_tree(seed, {"define/modules.json": {"app": {"repo": str(repo), "version": "v7"}}})
    proc = doit(seed)
    assert proc.returncode != 0
    assert "tag 'v7' not found" in proc.stderr and "define/modules.json" in proc.stderr
    assert not (seed / "SRC/app-v7").exists()
    write_tree(seed, {"define/modules.json": {"app": {"repo": str(repo), "version": "v1"}}})
    doit(seed, check=True)
    _git(repo, "tag", "-f", "v1", "v2")  # move the tag: a build does not ask the remote
    doit(seed, check=True)
    proc = facs(seed, "checkout", "--verify")
    assert proc.returncode != 0
    assert "tag 'v1'" in proc.stderr and "moved" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_subprojects_build_under_their_folder(seed: Path) -> None:
    write_tree(seed, {
        "define/facsimile.json": {"name": "shop", "region": "eu",
                                  "projects": {"billing": {"modules": [{"name": "api"}],
                                                           "currency": "CHF"}}},
        "projects/billing/tmpl/_ALL_/etc/billing.conf.j2": (
            "{{ project.name }} {{ project.currency }} {{ instance.region }} "
            "{{ module.api.username }} {{ module.api.password }} {{ module | join(',') }}\n"),
        "projects/billing/tmpl/prod/etc/prod-only.conf": "prod {{ instance.name }}\n",
        "tmpl/_ALL_/etc/main.conf": "{{ module | sort | join(',') }}\n",
    })
    doit(seed, check=True)
    state = json.loads((seed / "state/dev/state.json").read_text())
    pw = state["modules"]["billing/api"]["value"]
    assert (seed / "BUILD/dev/billing/etc/billing.conf").read_text() == (
        f"billing CHF eu api {pw} api\n")
    assert (seed / "BUILD/prod/billing/etc/prod-only.conf").read_text() == "prod prod\n"
    assert not (seed / "BUILD/dev/billing/etc/prod-only.conf").exists()
    assert (seed / "BUILD/dev/etc/main.conf").read_text() == "app,worker\n"
    facs(seed, "state", "rotate", "dev", "billing/api", check=True)
    proc = facs(seed, "plan", "dev")
    assert "BUILD/dev/billing/etc/billing.conf: state changed: module.api.password" in proc.stdout
    assert proc.stdout.count("BUILD/") == 1


def test_daemon_instances_keep_their_uiids(seed: Path) -> None:
    write_tree(seed, {
        "define/modules.json": {"worker": {"service": {"n_instances": 2}},
                                "app": {"service": {"n_instances": 1, "name": "shopd"}}},
        "tmpl/_ALL_/run/{daemon}.service.j2": "{{ this.instance_name }} {{ this.uiid }}\n",
        "tmpl/_ALL_/daemons.txt": "{% for d in module.worker.service.instances %}"
                                  "{{ d.instance_name }}={{ d.uiid }} {% endfor %}\n",
    })
    doit(seed, check=True)
    files = set(mtimes(seed / "BUILD/dev/run"))
    assert files == {"workerd.0.service", "workerd.1.service", "shopd.0.service"}

    def uiids() -> dict[str, int]:
        out = {}
        for f in (seed / "BUILD/dev/run").iterdir():
            name, uiid = f.read_text().split()
            out[name] = int(uiid)
        return out

    first = uiids()
    assert len(set(first.values())) == 3 and all(0 < v < 256 for v in first.values())
    text = (seed / "BUILD/dev/daemons.txt").read_text()
    assert f"workerd.0={first['workerd.0']} workerd.1={first['workerd.1']}" in text
    # growing keeps the first uiids; the new one gets a new, unused uiid
    write_tree(seed, {"define/modules.json": {
        "worker": {"service": {"n_instances": 3}},
        "app": {"service": {"n_instances": 1, "name": "shopd"}}}})
    doit(seed, check=True)
    grown = uiids()
    assert {k: grown[k] for k in first} == first
    assert grown["workerd.2"] not in first.values()
    # shrinking keeps the rest, and the removed daemon's file goes away
    write_tree(seed, {"define/modules.json": {
        "worker": {"service": {"n_instances": 1}},
        "app": {"service": {"n_instances": 1, "name": "shopd"}}}})
    doit(seed, check=True)
    assert uiids() == {"workerd.0": first["workerd.0"], "shopd.0": first["shopd.0"]}


def test_subproject_fans_out_over_its_own_modules_and_daemons(seed: Path) -> None:
    write_tree(seed, {
        "define/facsimile.json": {"name": "shop", "projects": {"billing": {"modules": [
            {"name": "api", "service": {"n_instances": 2}}, {"name": "ledger"}]}}},
        "define/modules.json": {"app": {"service": {"n_instances": 1}}},
        "projects/billing/tmpl/_ALL_/etc/{module}.conf": "{{ this.name }}\n",
        "projects/billing/tmpl/_ALL_/run/{daemon}.service": "{{ this.uiid }}\n",
        "tmpl/_ALL_/run/{daemon}.service": "{{ this.uiid }}\n",
    })
    doit(seed, check=True)
    built = set(mtimes(seed / "BUILD/dev"))
    assert {"billing/etc/api.conf", "billing/etc/ledger.conf"} <= built
    assert not {"billing/etc/app.conf", "billing/etc/worker.conf"} & built
    assert {p for p in built if p.startswith("billing/run/")} == {
        "billing/run/apid.0.service", "billing/run/apid.1.service"}
    assert {p for p in built if p.startswith("run/")} == {"run/appd.0.service"}
    uiids = [int((seed / "BUILD/dev" / p).read_text()) for p in built if "/run/" in f"/{p}"]
    assert len(set(uiids)) == 3 and all(0 < u < 256 for u in uiids)


def test_two_fan_out_placeholders_in_one_path_are_an_error(seed: Path) -> None:
    write_tree(seed, {"tmpl/_ALL_/etc/{host}-{module}.conf": "x\n"})
    proc = doit(seed)
    assert proc.returncode != 0
    assert "tmpl/_ALL_/etc/{host}-{module}.conf" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_every_version_in_use_is_verified(seed: Path, repo: Path) -> None:
    write_tree(seed, {
        "define/modules.json": {"app": {"repo": str(repo), "version": "v2"}},
        "define/prod.json": {"modules": {"app": {"version": "v1"}},
                             "targets": {"web": {"hosts": ["p1"]}}},
    })
    doit(seed, check=True)
    assert (seed / "BUILD/dev/etc/app-src.conf").read_text() == "v2 dev\n"
    assert (seed / "BUILD/prod/etc/app-src.conf").read_text() == "v1 prod\n"
    _git(repo, "tag", "-f", "v1", "v2")  # prod's tag moves, dev's does not
    facs(seed, "checkout", "--verify", "dev", check=True)
    proc = facs(seed, "checkout", "--verify")
    assert proc.returncode != 0
    assert "tag 'v1'" in proc.stderr and "moved" in proc.stderr


@pytest.mark.slow
def test_checkout_uses_the_users_git_settings(seed: Path, repo: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    home = tmp_path / "home"
    home.mkdir()
    # a URL that resolves only through the user's ~/.gitconfig (as with insteadOf mirrors)
    (home / ".gitconfig").write_text(
        f'[url "{repo}"]\n\tinsteadOf = https://git.invalid/app.git\n')
    write_tree(seed, {"define/modules.json": {
        "app": {"repo": "https://git.invalid/app.git", "version": "v1"}}})
    proc = subprocess.run([sys.executable, "-m", "doit"], cwd=seed, capture_output=True,
                          text=True, env={**os.environ, "HOME": str(home)}, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (seed / "BUILD/dev/etc/app-src.conf").read_text() == "v1 dev\n"
