"""The model through the real `facs` command: roots, definitions, inheritance, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO, facs, write_tree


def show(root: Path, inst: str, *args: str) -> dict:
    proc = facs(root, "show", inst, "--json", *args, check=True)
    return json.loads(proc.stdout)


def explain(root: Path, inst: str, key: str) -> str:
    return facs(root, "show", inst, "--explain", key, check=True).stdout


# ------------------------------------------------------------------------ roots


def test_root_found_from_a_subfolder_and_by_flag(tmp_path: Path) -> None:
    write_tree(tmp_path, {"define/facsimile.json": {"name": "p"}, "define/dev.json": {},
                          "deep/er/x.txt": ""})
    assert "  dev" in facs(tmp_path / "deep/er", "list", check=True).stdout
    other = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    other.mkdir()
    assert "  dev" in facs(other, "--root", str(tmp_path), "list", check=True).stdout
    assert "  dev" in facs(other, "list", "--root", str(tmp_path), check=True).stdout
    assert "dev" in facs(other, "state", "show", "dev", "--root", str(tmp_path),
                         check=True).stdout


def test_application_repo_with_config_folder(tmp_path: Path) -> None:
    write_tree(tmp_path, {"config/facsimile.json": {"name": "app"},
                          "config/define/dev.json": {"x": 1}, "src/main.py": ""})
    proc = facs(tmp_path / "src", "list", check=True)
    assert "project app (facsimile.json)" in proc.stdout and "  dev" in proc.stdout
    assert show(tmp_path, "dev")["instance"]["x"] == 1


def test_no_root_is_one_line(tmp_path: Path) -> None:
    proc = facs(tmp_path, "list")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "no facsimile root" in proc.stderr


def test_the_repository_example_lists(tmp_path: Path) -> None:
    out = facs(tmp_path, "--root", str(REPO), "list", check=True).stdout
    for name in ("dev", "staging", "prod", "prod.ch1"):
        assert f"  {name}" in out
    assert "target app: app1.prod, app2.prod" in out and "regions: us1, ch1" in out


# --------------------------------------------------------------------- modules


@pytest.mark.parametrize("where", ["list", "object", "project key"])
def test_module_forms(tmp_path: Path, where: str) -> None:
    mods_list = [{"name": "app", "port": 1}, {"name": "db", "username": "dbuser"}]
    mods_obj = {"app": {"port": 1}, "db": {"username": "dbuser"}}
    tree: dict = {"define/dev.json": {}}
    if where == "list":
        tree |= {"define/facsimile.json": {"name": "p"}, "define/modules.json": mods_list}
    elif where == "object":
        tree |= {"define/facsimile.json": {"name": "p"}, "define/modules.json": mods_obj}
    else:
        tree |= {"define/facsimile.json": {"name": "p", "modules": mods_obj}}
    write_tree(tmp_path, tree)
    mods = show(tmp_path, "dev", "--reveal")["module"]
    assert mods["app"]["username"] == "app" and mods["app"]["port"] == 1
    assert mods["db"]["username"] == "dbuser"
    assert "modules" not in show(tmp_path, "dev")["instance"]


# ------------------------------------------------------------------ inheritance

CHAIN = {
    "define/facsimile.json": {"name": "p", "level": "project", "a": 0, "keep": "project"},
    "define/roles/base.json": {"level": "base", "a": 1, "b": 1, "base_only": True},
    "define/roles/left.json": {"inherit": ["roles/base"], "level": "left", "b": 2, "c": 2},
    "define/roles/right.json": {"inherit": ["roles/base"], "level": "right", "c": 3, "d": 3},
    "define/regions/eu.json": {"inherit": ["roles/left", "roles/right"], "level": "eu",
                               "d": 4, "e": 4},
    "define/prod.json": {"inherit": ["regions/eu"], "level": "prod", "e": 5,
                         "nested": {"x": 1, "y": {"z": 1}}},
    "define/prod.ch1.json": {"level": "ch1", "nested": {"y": {"w": 2}}},
}


def test_five_deep_chain_with_two_parents(tmp_path: Path) -> None:
    write_tree(tmp_path, CHAIN)
    inst = show(tmp_path, "prod.ch1")["instance"]
    # order: project, base, left, right, eu, prod, ch1 (base applied once, first)
    assert inst["level"] == "ch1"
    assert inst["a"] == 1 and inst["b"] == 2  # left over base
    assert inst["c"] == 3  # right over left
    assert inst["d"] == 4 and inst["e"] == 5 and inst["keep"] == "project"
    assert inst["base_only"] is True
    assert inst["nested"] == {"x": 1, "y": {"z": 1, "w": 2}}  # deep merge
    assert inst["name"] == "prod.ch1"
    out = facs(tmp_path, "show", "prod.ch1", check=True).stdout
    assert ("define/facsimile.json -> define/roles/base.json -> define/roles/left.json -> "
            "define/roles/right.json -> define/regions/eu.json -> define/prod.json -> "
            "define/prod.ch1.json") in out
    assert "set by: define/roles/right.json" in explain(tmp_path, "prod.ch1", "c")
    assert "set by: define/prod.ch1.json" in explain(tmp_path, "prod.ch1", "nested.y.w")
    assert "set by: define/prod.json" in explain(tmp_path, "prod.ch1", "nested.y.z")
    assert show(tmp_path, "prod")["instance"]["level"] == "prod"


def test_null_deletes_a_key(tmp_path: Path) -> None:
    write_tree(tmp_path, {"define/facsimile.json": {"name": "p", "a": {"x": 1, "y": 2}},
                          "define/dev.json": {"a": {"x": None}}})
    assert show(tmp_path, "dev")["instance"]["a"] == {"y": 2}


def test_schema_strategies(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "define/schema.json": {"properties": {
            "hosts": {"mergeStrategy": "append"},
            "vhosts": {"mergeStrategy": "arrayMergeById", "mergeOptions": {"idRef": "name"}},
            "limits": {"mergeStrategy": "overwrite"},
            "env": {"mergeStrategy": "objectMerge"},
        }},
        "define/facsimile.json": {"name": "p", "hosts": ["a"], "limits": {"x": 1, "y": 1},
                                  "vhosts": [{"name": "www", "tls": False, "port": 80}],
                                  "env": {"A": "1"}},
        "define/regions/eu.json": {"hosts": ["b"]},
        "define/dev.json": {"inherit": ["regions/eu"], "hosts": ["c"], "limits": {"x": 2},
                            "vhosts": [{"name": "www", "tls": True}, {"name": "api"}],
                            "env": {"B": "2"}},
    })
    inst = show(tmp_path, "dev")["instance"]
    assert inst["hosts"] == ["a", "b", "c"]
    assert inst["vhosts"] == [{"name": "www", "tls": True, "port": 80}, {"name": "api"}]
    assert inst["limits"] == {"x": 2}
    assert inst["env"] == {"A": "1", "B": "2"}
    out = explain(tmp_path, "dev", "hosts")
    assert "merged from: define/facsimile.json, define/regions/eu.json, define/dev.json" in out
    assert "merge strategy: append" in out


def test_subinstance_overlays_its_parent(tmp_path: Path) -> None:
    write_tree(tmp_path, {"define/facsimile.json": {"name": "p"},
                          "define/prod.json": {"db": {"host": "a", "port": 1}},
                          "define/prod.ch1.json": {"db": {"host": "b"}}})
    assert show(tmp_path, "prod.ch1")["instance"]["db"] == {"host": "b", "port": 1}
    out = facs(tmp_path, "list", check=True).stdout
    assert "  prod\n" in out and "    prod.ch1" in out


# ------------------------------------------------------------------------ errors


def one_line_error(root: Path, *args: str) -> str:
    proc = facs(root, *args)
    assert proc.returncode == 1, proc.stdout
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


@pytest.mark.parametrize(("tree", "expected"), [
    ({"define/dev.json": '{\n  "a": 1,\n  "b" 2\n}'},
     "define/dev.json:3:7: Expecting ':' delimiter"),
    ({"define/dev.json": {"inherit": ["regions/ch2"]}, "define/regions/ch1.json": {}},
     "define/dev.json at /inherit/0: unknown parent 'regions/ch2', did you mean 'regions/ch1'?"),
    ({"define/dev.json": {"inherit": ["roles/a"]}, "define/roles/a.json": {"inherit": ["roles/b"]},
      "define/roles/b.json": {"inherit": ["roles/a"]}},
     "inheritance cycle: roles/a -> roles/b -> roles/a"),
    ({"define/dev.json": [1, 2]},
     "define/dev.json: a definition must be a JSON object, not a list"),
    ({"define/dev.json": {"inherit": "regions/ch1"}},
     "define/dev.json at /inherit: inherit must be a list of strings, not a string"),
    ({"define/dev.json": {"targets": ["a"]}},
     "define/dev.json at /targets: targets must be an object"),
    ({"define/dev.json": {"generate": {"k": "tokn:16"}}},
     "define/dev.json at /generate/k: unknown generate kind 'tokn'"),
    ({"define/dev.json": {"generate": ["x"]}},
     "define/dev.json at /generate: generate must be an object"),
    ({"define/dev.json": {"deploy": {"delet": ["x"]}}},
     "define/dev.json at /deploy/delet: unknown key 'delet' in deploy, did you mean 'delete'?"),
    ({"define/dev.json": {"deploy": "x"}},
     "define/dev.json at /deploy: deploy must be an object, not a string"),
    ({"define/dev.json": {"delpoy": {}}},
     "define/dev.json at /delpoy: unknown key 'delpoy', did you mean 'deploy'?"),
    ({"define/schema.json": {"properties": {"v": {"mergeStrategy": "arrayMergeById"}}},
      "define/dev.json": {"v": [{"id": 1}, {"id": 1}]}},
     "define/dev.json"),
    ({"define/prod.ch1.json": {}}, "subinstance 'prod.ch1' has no parent instance"),
    ({"define/regions/eu.json": {"ntp": ["a"]},
      "define/dev.json": {"inherit": ["regions/eu"], "ntp": {"server": "b"}}},
     "define/dev.json at /ntp: an object cannot merge into the list or value a parent set"),
])
def test_bad_input_is_one_line_naming_the_file(tmp_path: Path, tree: dict, expected: str) -> None:
    write_tree(tmp_path, {"define/facsimile.json": {"name": "p"}, **tree})
    err = one_line_error(tmp_path, "show", "dev")
    assert expected in err


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    write_tree(tmp_path, {"define/facsimile.json": {"name": "p"}, "define/dev.json": "{"})
    proc = facs(tmp_path, "--debug", "list")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_unknown_instance_suggests(tmp_path: Path) -> None:
    write_tree(tmp_path, {"define/facsimile.json": {"name": "p"}, "define/staging.json": {}})
    assert "did you mean 'staging'?" in one_line_error(tmp_path, "show", "stagng")


@pytest.mark.parametrize("cmd", [[], ["list"], ["show"], ["state"], ["state", "show"],
                                 ["state", "rotate"], ["build"], ["plan"], ["sync"], ["init"]])
def test_help(tmp_path: Path, cmd: list[str]) -> None:
    proc = facs(tmp_path, *cmd, "--help")
    assert proc.returncode == 0
    assert "usage: facs" in proc.stdout and len(proc.stdout.splitlines()) > 3


def test_init_makes_a_root_that_builds(tmp_path: Path) -> None:
    from conftest import doit

    target = tmp_path / "newproj"
    out = facs(tmp_path, "init", str(target), check=True).stdout
    assert "created" in out
    doit(target, check=True)
    text = (target / "BUILD/dev/etc/app.conf").read_text()
    assert "port = 8000" in text and "region = local" in text
    assert "already has" in one_line_error(tmp_path, "init", str(target))


def test_explain_names_where_module_and_state_values_come_from(tmp_path: Path) -> None:
    write_tree(tmp_path, {"define/facsimile.json": {"name": "p", "generate": {"k": "token"}},
                          "define/modules.json": {"app": {"port": 1}},
                          "define/prod.json": {"modules": {"app": {"port": 2}}}})
    out = explain(tmp_path, "prod", "module.app.port")
    assert "module.app.port = 2" in out
    assert "module defined in: define/modules.json, define/prod.json" in out
    out = explain(tmp_path, "prod", "module.app.password")
    assert '"********"' in out and "generated state: state/prod/state.json" in out
    assert "generated state: state/prod/state.json (family prod)" in explain(
        tmp_path, "prod", "state.k")
    assert not (tmp_path / "state").exists()


def test_version(tmp_path: Path) -> None:
    from facsimile import __version__

    assert facs(tmp_path, "--version", check=True).stdout.strip() == f"facs {__version__}"
