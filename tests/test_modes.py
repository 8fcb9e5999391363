"""File modes: secret-reading outputs are 0600 in BUILD/ and at every destination,
``modes`` globs override, and a change of either re-chmods exactly what it must."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conftest import doit, facs, mtimes, write_tree

TREE = {
    "define/facsimile.json": {"name": "shop", "modules": {"app": {}}},
    "define/dev.json": {"targets": {"web": {"hosts": ["h1"]}}},
    "define/prod.json": {"targets": {"web": {"hosts": ["h1"]}},
                         "generate": {"api_key": "token:16", "node": "uuid"}},
    "tmpl/_ALL_/etc/app/app.ini.j2": "password = {{ module.app.password }}\n",
    "tmpl/_ALL_/etc/app/plain.ini.j2": "name = {{ module.app.name }}\n",
    "tmpl/_ALL_/etc/whole.json.j2": "{{ module.app | tojson }}\n",
    "tmpl/prod/etc/node.conf.j2": "node = {{ state.node }}\n",
    "tmpl/prod/etc/api.conf.j2": "key = {{ state.api_key }}\n",
    "tmpl/_ALL_/etc/private.txt.j2": "nothing secret\n",
    "extra/_ALL_/share/logo.txt": "LOGO\n",
    "dodo.py": "from facsimile.dodo import *  # noqa: F403\n",
}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def plan(root: Path) -> tuple[int, dict[str, list[str]]]:
    proc = facs(root, "plan", "--json")
    assert proc.returncode in (0, 2), proc.stderr
    return proc.returncode, {s["path"]: s["reasons"] for s in json.loads(proc.stdout)["stale"]}


def set_modes(root: Path, name: str, modes: dict[str, str] | None) -> None:
    path = root / f"define/{name}.json"
    data = json.loads(path.read_text())
    if modes is None:
        data.pop("modes", None)
    else:
        data["modes"] = modes
    path.write_text(json.dumps(data))


@pytest.fixture
def built(tmp_path: Path) -> Path:
    write_tree(tmp_path, TREE)
    for rel in ("etc/app/app.ini.j2", "etc/app/plain.ini.j2", "etc/whole.json.j2"):
        os.chmod(tmp_path / "tmpl/_ALL_" / rel, 0o644)
    os.chmod(tmp_path / "tmpl/_ALL_/etc/private.txt.j2", 0o600)
    doit(tmp_path, check=True)
    return tmp_path


def test_secret_reading_outputs_are_0600(built: Path) -> None:
    b = built / "BUILD"
    assert mode(b / "dev/etc/app/app.ini") == 0o600  # a 0644 template reading a password
    assert mode(b / "dev/etc/whole.json") == 0o600  # the whole module, password included
    assert mode(b / "prod/etc/api.conf") == 0o600  # a token
    assert mode(b / "prod/etc/node.conf") == 0o644  # a uuid is no secret
    assert mode(b / "dev/etc/app/plain.ini") == 0o644  # the module's name only
    assert mode(b / "dev/etc/private.txt") == 0o600  # a 0600 template keeps its mode
    assert mode(b / "dev/share/logo.txt") == 0o644
    assert plan(built) == (0, {})


@pytest.mark.slow
def test_sync_puts_the_build_modes_and_a_mode_change(built: Path) -> None:
    facs(built, "sync", "dev", check=True)
    dest = built / "DEPLOY/dev/h1"
    assert mode(dest / "etc/app/app.ini") == 0o600
    assert mode(dest / "etc/app/plain.ini") == 0o644
    set_modes(built, "dev", {"etc/app/*.ini": "0640"})
    proc = doit(built, "sync:dev", check=True)
    assert mode(built / "BUILD/dev/etc/app/app.ini") == 0o640
    assert mode(dest / "etc/app/app.ini") == 0o640
    assert mode(dest / "etc/app/plain.ini") == 0o640
    assert "2 put" in proc.stdout, proc.stdout


@pytest.mark.slow
def test_modes_glob_wins_and_a_change_rechmods_exactly_what_it_must(built: Path) -> None:
    before = mtimes(built / "BUILD")
    set_modes(built, "dev", {"etc/app/*.ini": "0640", "etc/app/app.ini": "0660"})
    code, stale = plan(built)
    assert code == 2
    assert stale == {
        "BUILD/dev/etc/app/app.ini": ["mode changed: 0600 -> 0660 (instance.modes)"],
        "BUILD/dev/etc/app/plain.ini": ["mode changed: 0644 -> 0640 (instance.modes)"],
    }
    proc = doit(built, check=True)
    assert "2 built" in proc.stdout, proc.stdout
    b = built / "BUILD/dev"
    assert mode(b / "etc/app/app.ini") == 0o660  # the most specific glob
    assert mode(b / "etc/app/plain.ini") == 0o640
    assert mode(b / "etc/whole.json") == 0o600
    assert mtimes(built / "BUILD") == before  # chmod only: no content was rewritten
    assert plan(built) == (0, {})
    assert "0 built" in doit(built, check=True).stdout
    # a change of modes that changes no output's mode: nothing to do, and it stays so
    set_modes(built, "dev", {"etc/app/*.ini": "0640", "etc/app/app.ini": "0660",
                             "nomatch/**": "0600"})
    assert plan(built) == (0, {})
    assert plan(built) == (0, {})
    # back to no modes: the rule and the template's modes again
    set_modes(built, "dev", None)
    assert plan(built)[1] == {
        "BUILD/dev/etc/app/app.ini": ["mode changed: 0660 -> 0600 (instance.modes)"],
        "BUILD/dev/etc/app/plain.ini": ["mode changed: 0640 -> 0644 (instance.modes)"],
    }
    doit(built, check=True)
    assert mode(b / "etc/app/app.ini") == 0o600 and mode(b / "etc/app/plain.ini") == 0o644
    assert plan(built) == (0, {})


@pytest.mark.slow
def test_project_modes_reach_every_instance(built: Path) -> None:
    set_modes(built, "facsimile", {"share/*.txt": "640"})
    _, stale = plan(built)
    assert set(stale) == {"BUILD/dev/share/logo.txt", "BUILD/prod/share/logo.txt"}
    doit(built, check=True)
    assert mode(built / "BUILD/prod/share/logo.txt") == 0o640


@pytest.mark.slow
def test_a_template_that_starts_reading_a_password(built: Path) -> None:
    path = built / "tmpl/_ALL_/etc/app/plain.ini.j2"
    path.write_text("name = {{ module.app.name }}\npw = {{ module.app.password }}\n")
    doit(built, check=True)
    assert mode(built / "BUILD/dev/etc/app/plain.ini") == 0o600
    assert plan(built) == (0, {})


@pytest.mark.slow
def test_chmod_of_a_template_or_in_build(built: Path) -> None:
    os.chmod(built / "tmpl/_ALL_/etc/app/plain.ini.j2", 0o640)
    os.chmod(built / "tmpl/_ALL_/etc/app/app.ini.j2", 0o640)  # reads a secret: no matter
    _, stale = plan(built)
    assert stale == {
        f"BUILD/{i}/etc/app/plain.ini":
            ["mode changed: 0644 -> 0640 (the mode of tmpl/_ALL_/etc/app/plain.ini.j2)"]
        for i in ("dev", "prod")}
    doit(built, check=True)
    assert mode(built / "BUILD/dev/etc/app/plain.ini") == 0o640
    os.chmod(built / "BUILD/dev/etc/app/app.ini", 0o644)
    assert plan(built)[1] == {
        "BUILD/dev/etc/app/app.ini": ["mode modified in BUILD: 0644 (built 0600)"]}
    doit(built, check=True)
    assert mode(built / "BUILD/dev/etc/app/app.ini") == 0o600
    assert plan(built) == (0, {})


@pytest.mark.parametrize(("modes", "message"), [
    ("0640", "modes must be an object"),
    ({"etc/*": "0999"}, "bad mode '0999'"),
    ({"etc/*": 420}, "bad mode 420"),
    ({"etc/*": "0200"}, "bad mode '0200'"),
    ({"../etc/*": "0640"}, "would escape the destination"),
])
@pytest.mark.slow
def test_bad_modes_are_definition_errors(built: Path, modes: object, message: str) -> None:
    path = built / "define/dev.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "modes": modes}))
    proc = facs(built, "plan")
    assert proc.returncode == 1
    assert "define/dev.json" in proc.stderr and "/modes" in proc.stderr, proc.stderr
    assert message in proc.stderr, proc.stderr


@pytest.mark.parametrize("env", [{"FACSIMILE_FAST": "0"}, {"FACSIMILE_JOBS": "1"}])
@pytest.mark.slow
def test_modes_change_without_batches(built: Path, env: dict[str, str]) -> None:
    set_modes(built, "prod", {"etc/*.conf": "0640"})
    proc = doit(built, env=env, check=True)
    assert "2 built" in proc.stdout, proc.stdout
    assert mode(built / "BUILD/prod/etc/api.conf") == 0o640
    assert mode(built / "BUILD/prod/etc/node.conf") == 0o640
    assert plan(built) == (0, {})
    assert "0 built" in doit(built, env=env, check=True).stdout


@pytest.mark.parametrize("umask", [0o077, 0o027])
def test_modes_are_exact_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    """A new output (made in place) and a replaced one (through a temporary file)
    get exactly their mode: the umask neither takes bits a mode asks for nor
    leaves bits it does not."""
    write_tree(tmp_path, TREE)
    old = os.umask(umask)
    try:
        os.chmod(tmp_path / "tmpl/_ALL_/etc/private.txt.j2", 0o600)
        for rel in ("tmpl/_ALL_/etc/app/app.ini.j2", "tmpl/_ALL_/etc/app/plain.ini.j2",
                    "tmpl/prod/etc/node.conf.j2", "extra/_ALL_/share/logo.txt"):
            os.chmod(tmp_path / rel, 0o644)
        b = tmp_path / "BUILD"
        want = {"dev/etc/app/app.ini": 0o600, "dev/etc/app/plain.ini": 0o644,
                "prod/etc/api.conf": 0o600, "prod/etc/node.conf": 0o644,
                "dev/etc/private.txt": 0o600, "dev/share/logo.txt": 0o644}
        doit(tmp_path, check=True)  # every output new
        assert {rel: mode(b / rel) for rel in want} == want
        for rel in ("etc/app/app.ini.j2", "etc/app/plain.ini.j2"):
            path = tmp_path / "tmpl/_ALL_" / rel
            path.write_text(path.read_text() + "# changed\n")
        proc = doit(tmp_path, check=True)  # two of them replaced in each instance
        assert "4 built" in proc.stdout, proc.stdout
        assert {rel: mode(b / rel) for rel in want} == want
    finally:
        os.umask(old)
