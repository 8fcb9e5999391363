"""The model through the real `facs` command: roots, definitions, inheritance, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import REPO, facs, write_tree


def show(root: Path, inst: str, *args: str) -> dict:
    proc = facs(root, "show", inst, "--json", *args, check=True)
    return json.loads(proc.stdout)


def explain(root: Path, inst: str, key: str) -> str:
    return facs(root, "show", inst, "--explain", key, check=True).stdout


def one_line_error(root: Path, *args: str) -> str:
    """Run facs expecting an error: exit 1, one line on stderr, no traceback."""
    proc = facs(root, *args)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("facs: error: "), proc.stderr
    return proc.stderr


# ------------------------------------------------------------------------ roots


def test_root_found_from_a_subfolder_and_by_flag(tmp_path: Path) -> None:
    here, other = tmp_path / "here", tmp_path / "other"
    write_tree(here, {"define/facsimile.json": {"name": "here"}, "define/dev.json": {},
                      "deep/er/x.txt": ""})
    write_tree(other, {"define/facsimile.json": {"name": "other", "modules": {"m": {}}},
                       "define/qa.json": {}})
    out = facs(here / "deep/er", "list", check=True).stdout
    assert out.startswith("project here (define/facsimile.json)") and "  dev" in out
    assert "qa" not in out
    # --root overrides the root found from the working directory, before or after the command
    for args in (["--root", str(other), "list"], ["list", "--root", str(other)]):
        out = facs(here / "deep", *args, check=True).stdout
        assert out.startswith("project other") and "  qa" in out and "dev" not in out
    facs(here, "state", "show", "qa", "--root", str(other), check=True)
    assert (other / "state/qa/state.json").is_file() and not (here / "state").exists()


def test_application_repo_with_config_folder(tmp_path: Path) -> None:
    write_tree(tmp_path, {"config/facsimile.json": {"name": "app", "x": 0},
                          "config/define/modules.json": [{"name": "web"}],
                          "config/define/regions/eu.json": {"x": 2},
                          "config/define/dev.json": {"inherit": ["regions/eu"], "y": 1},
                          "config/tmpl/_ALL_/a.txt": "a", "src/pkg/main.py": ""})
    proc = facs(tmp_path / "src/pkg", "list", check=True)
    assert "project app (facsimile.json)" in proc.stdout and "  dev  regions: eu" in proc.stdout
    doc = show(tmp_path / "src", "dev")
    assert doc["instance"]["x"] == 2 and doc["instance"]["y"] == 1
    assert "web" in doc["module"]
    assert "set by: define/regions/eu.json" in explain(tmp_path / "src", "dev", "x")
    # state lives in the tree under config/
    facs(tmp_path / "src", "state", "show", "dev", check=True)
    assert (tmp_path / "config/state/dev/state.json").is_file()
    assert not (tmp_path / "state").exists() and not (tmp_path / "src/state").exists()


def test_no_root_is_one_line(tmp_path: Path) -> None:
    err = one_line_error(tmp_path, "list")
    assert "no facsimile root" in err and str(tmp_path) in err
    err = one_line_error(tmp_path, "--root", str(tmp_path), "show", "dev")
    assert f"{tmp_path} is not a facsimile root" in err


def test_the_repository_example_lists(tmp_path: Path) -> None:
    out = facs(tmp_path, "--root", str(REPO), "list", check=True).stdout
    lines = out.splitlines()
    for name in ("dev", "staging", "prod"):
        assert any(re.fullmatch(rf"  {re.escape(name)}(  regions: .*)?", ln) for ln in lines), out
    assert any(ln.startswith("    prod.ch1") for ln in lines), out
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
    mods = show(tmp_path, "dev")["module"]
    assert sorted(mods) == ["app", "db"]
    assert mods["app"]["username"] == "app" and mods["app"]["port"] == 1
    assert mods["db"]["username"] == "dbuser"
    assert "modules" not in show(tmp_path, "dev")["instance"]


def test_instance_modules_overlay_in_either_form(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "define/facsimile.json": {"name": "p"},
        "define/modules.json": {"app": {"port": 1, "debug": True, "opts": {"a": 1}}},
        "define/regions/eu.json": {"modules": [{"name": "app", "port": 2, "opts": {"b": 2}}]},
        "define/dev.json": {"inherit": ["regions/eu"],
                            "modules": {"app": {"debug": None}, "cron": {}}},
    })
    mods = show(tmp_path, "dev")["module"]
    assert mods["app"]["port"] == 2 and mods["app"]["opts"] == {"a": 1, "b": 2}
    assert "debug" not in mods["app"]  # null deletes a module's key too
    assert mods["cron"]["username"] == "cron"
    assert "module defined in: define/modules.json, define/regions/eu.json" in explain(
        tmp_path, "dev", "module.app.port")


def test_modules_defined_twice_is_an_error(tmp_path: Path) -> None:
    write_tree(tmp_path, {"define/facsimile.json": {"name": "p", "modules": {"a": {}}},
                          "define/modules.json": [{"name": "a"}]})
    err = one_line_error(tmp_path, "list")
    assert "define/facsimile.json at /modules: modules are defined twice" in err


# ------------------------------------------------------------------ inheritance

# prod.ch1 -> regions/ch1 -> regions/eu -> (roles/left, roles/right) -> roles/base -> roles/root:
# five levels of parents, two of them at one level; prod has its own parent roles/core,
# which roles/right inherits too (applied once, at its first place).
# Expected order for prod.ch1:
#   facsimile, core | prod | root, base, left, right, eu, ch1 | prod.ch1
CHAIN = {
    "define/facsimile.json": {"name": "p", "who": "project", "only_project": "project",
                              "root_vs_project": "project"},
    "define/roles/core.json": {"who": "core", "core_vs_prod": "core", "only_core": "core"},
    "define/prod.json": {"inherit": ["roles/core"], "who": "prod", "core_vs_prod": "prod",
                         "prod_vs_root": "prod", "nested": {"x": 1, "y": {"z": 1}}},
    "define/roles/root.json": {"who": "root", "root_vs_project": "root",
                               "prod_vs_root": "root", "root_vs_base": "root"},
    "define/roles/base.json": {"inherit": ["roles/root"], "who": "base",
                               "root_vs_base": "base", "lr": "base"},
    "define/roles/left.json": {"inherit": ["roles/base"], "who": "left", "lr": "left",
                               "left_vs_right": "left", "only_left": "left",
                               "nested": {"q": "left"}},
    "define/roles/right.json": {"inherit": ["roles/base", "roles/core"], "who": "right",
                                "left_vs_right": "right", "right_vs_eu": "right"},
    "define/regions/eu.json": {"inherit": ["roles/left", "roles/right"], "who": "eu",
                               "right_vs_eu": "eu", "eu_vs_ch1": "eu"},
    "define/regions/ch1.json": {"inherit": ["regions/eu"], "who": "ch1", "eu_vs_ch1": "ch1",
                                "ch1_vs_sub": "ch1"},
    "define/prod.ch1.json": {"inherit": ["regions/ch1"], "who": "prod.ch1",
                             "ch1_vs_sub": "prod.ch1", "nested": {"y": {"w": 2}}},
}

#: key -> (value, file that set it) in prod.ch1
WINNERS = {
    "who": ("prod.ch1", "define/prod.ch1.json"),
    "only_project": ("project", "define/facsimile.json"),
    "only_core": ("core", "define/roles/core.json"),
    "core_vs_prod": ("prod", "define/prod.json"),  # core is not applied again via right
    "root_vs_project": ("root", "define/roles/root.json"),
    "prod_vs_root": ("root", "define/roles/root.json"),  # ancestry of prod.ch1 after prod
    "root_vs_base": ("base", "define/roles/base.json"),
    "lr": ("left", "define/roles/left.json"),
    "left_vs_right": ("right", "define/roles/right.json"),  # parents merge left to right
    "only_left": ("left", "define/roles/left.json"),
    "right_vs_eu": ("eu", "define/regions/eu.json"),
    "eu_vs_ch1": ("ch1", "define/regions/ch1.json"),
    "ch1_vs_sub": ("prod.ch1", "define/prod.ch1.json"),
    "nested.y.z": (1, "define/prod.json"),
    "nested.y.w": (2, "define/prod.ch1.json"),
    "nested.q": ("left", "define/roles/left.json"),
}


@pytest.mark.slow
def test_five_deep_chain_with_two_parents(tmp_path: Path) -> None:
    write_tree(tmp_path, CHAIN)
    inst = show(tmp_path, "prod.ch1")["instance"]
    for key, (value, _) in WINNERS.items():
        node = inst
        for part in key.split("."):
            node = node[part]
        assert node == value, key
    assert inst["nested"] == {"x": 1, "y": {"z": 1, "w": 2}, "q": "left"}  # deep merge
    assert inst["name"] == "prod.ch1" and "inherit" not in inst
    out = facs(tmp_path, "show", "prod.ch1", check=True).stdout
    assert out.splitlines()[0] == "# prod.ch1: " + " -> ".join(
        f"define/{n}.json" for n in ("facsimile", "roles/core", "prod", "roles/root",
                                     "roles/base", "roles/left", "roles/right",
                                     "regions/eu", "regions/ch1", "prod.ch1"))
    for key in ("core_vs_prod", "prod_vs_root", "root_vs_base", "left_vs_right",
                "right_vs_eu", "eu_vs_ch1", "nested.y.z", "nested.q"):
        value, file = WINNERS[key]
        out = explain(tmp_path, "prod.ch1", key)
        assert out.splitlines()[:2] == [f"{key} = {json.dumps(value)}", f"set by: {file}"], key
    # prod alone sees only the project, its own parent and itself
    prod = show(tmp_path, "prod")["instance"]
    assert (prod["who"], prod["core_vs_prod"], prod["prod_vs_root"]) == ("prod", "prod", "prod")
    assert "only_left" not in prod and prod["nested"] == {"x": 1, "y": {"z": 1}}
    assert "  prod.ch1  regions: eu, ch1" in facs(tmp_path, "list", check=True).stdout


def test_null_deletes_a_key(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "define/facsimile.json": {"name": "p", "a": {"x": 1, "y": 2}, "l": [1], "s": "x",
                                  "gone": {"deep": 1}},
        "define/prod.json": {"a": {"x": None}, "l": None, "gone": None},
        "define/prod.ch1.json": {"gone": {"back": 2}},
    })
    inst = show(tmp_path, "prod")["instance"]
    assert inst["a"] == {"y": 2} and "l" not in inst and "gone" not in inst and inst["s"] == "x"
    # a later definition can set a deleted key again, without the deleted parts
    assert show(tmp_path, "prod.ch1")["instance"]["gone"] == {"back": 2}
    assert "'a.x' is not set in prod" in one_line_error(
        tmp_path, "show", "prod", "--explain", "a.x")


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
                                  "env": {"A": "1"}, "plain": ["p"]},
        "define/regions/eu.json": {"hosts": ["b"], "plain": ["eu"]},
        "define/dev.json": {"inherit": ["regions/eu"], "hosts": ["c"], "limits": {"x": 2},
                            "vhosts": [{"name": "www", "tls": True}, {"name": "api"}],
                            "env": {"B": "2"}},
    })
    inst = show(tmp_path, "dev")["instance"]
    assert inst["hosts"] == ["a", "b", "c"]
    assert inst["vhosts"] == [{"name": "www", "tls": True, "port": 80}, {"name": "api"}]
    assert inst["limits"] == {"x": 2}
    assert inst["env"] == {"A": "1", "B": "2"}
    assert inst["plain"] == ["eu"]  # without a strategy a list is replaced
    out = explain(tmp_path, "dev", "hosts")
    assert out.splitlines() == [
        'hosts = ["a", "b", "c"]', "set by: define/dev.json",
        "merged from: define/facsimile.json, define/regions/eu.json, define/dev.json",
        "merge strategy: append (define/schema.json)"]
    out = explain(tmp_path, "dev", "vhosts")
    assert "merged from: define/facsimile.json, define/dev.json" in out
    assert "merge strategy: arrayMergeById" in out
    # overwrite replaces: only the last file set it
    out = explain(tmp_path, "dev", "limits")
    assert "set by: define/dev.json" in out and "merged from" not in out
    out = explain(tmp_path, "dev", "plain")
    assert "set by: define/regions/eu.json" in out and "merged from" not in out


def test_an_empty_object_changes_nothing_below_it(tmp_path: Path) -> None:
    write_tree(tmp_path, {"define/facsimile.json": {"name": "p", "a": {"x": 1}},
                          "define/dev.json": {"a": {}}})
    assert show(tmp_path, "dev")["instance"]["a"] == {"x": 1}
    assert "set by: define/facsimile.json" in explain(tmp_path, "dev", "a.x")


def test_subinstance_overlays_its_parent(tmp_path: Path) -> None:
    write_tree(tmp_path, {"define/facsimile.json": {"name": "p"},
                          "define/prod.json": {"db": {"host": "a", "port": 1},
                                               "targets": {"app": {"hosts": ["p1"]}}},
                          "define/prod.ch1.json": {"db": {"host": "b"}}})
    sub = show(tmp_path, "prod.ch1")["instance"]
    assert sub["db"] == {"host": "b", "port": 1}
    assert sub["targets"]["app"]["hosts"] == ["p1"]
    assert show(tmp_path, "prod")["instance"]["db"] == {"host": "a", "port": 1}
    out = facs(tmp_path, "list", check=True).stdout
    assert "  prod\n" in out and "    prod.ch1\n" in out and "      target app: p1" in out


def test_targets_inherit_abstract_definitions(tmp_path: Path) -> None:
    write_tree(tmp_path, {"define/facsimile.json": {"name": "p"},
                          "define/regions/eu.json": {"ntp": "ntp.eu", "tz": "CET"},
                          "define/dev.json": {"targets": {"app": {
                              "inherit": ["regions/eu"], "hosts": ["a1"], "tz": "UTC"}}}})
    app = show(tmp_path, "dev")["instance"]["targets"]["app"]
    assert app["ntp"] == "ntp.eu" and app["tz"] == "UTC" and app["regions"] == ["eu"]
    assert "  target app: a1  regions: eu" in facs(tmp_path, "list", check=True).stdout


def test_edits_between_runs_are_seen(tmp_path: Path) -> None:
    """The resolved model is cached in .facsimile/: an edited parent is never stale."""
    write_tree(tmp_path, {"define/facsimile.json": {"name": "p"},
                          "define/regions/eu.json": {"tz": "CET"},
                          "define/roles/web.json": {"port": 80},
                          "define/dev.json": {"inherit": ["roles/web"], "targets": {"app": {
                              "inherit": ["regions/eu"], "hosts": ["a1"]}}}})
    inst = show(tmp_path, "dev")["instance"]
    assert inst["port"] == 80 and inst["targets"]["app"]["tz"] == "CET"
    write_tree(tmp_path, {"define/regions/eu.json": {"tz": "Europe/Zurich"}})
    assert show(tmp_path, "dev")["instance"]["targets"]["app"]["tz"] == "Europe/Zurich"
    write_tree(tmp_path, {"define/roles/web.json": {"port": 8080}})
    assert show(tmp_path, "dev")["instance"]["port"] == 8080
    write_tree(tmp_path, {"define/qa.json": {"inherit": ["roles/web"]}})
    assert "  qa" in facs(tmp_path, "list", check=True).stdout
    (tmp_path / "define/qa.json").unlink()
    write_tree(tmp_path, {"define/regions/eu.json": {"inherit": ["roles/nope"]}})
    err = one_line_error(tmp_path, "list")
    assert "define/regions/eu.json at /inherit/0: unknown parent 'roles/nope'" in err


# ------------------------------------------------------------------------ errors

VID = {"define/schema.json": {"properties": {"v": {
    "mergeStrategy": "arrayMergeById", "mergeOptions": {"idRef": "name"}}}}}


@pytest.mark.parametrize(("tree", "expected"), [
    ({"define/dev.json": '{\n  "a": 1,\n  "b" 2\n}'},
     "define/dev.json:3:7: Expecting ':' delimiter"),
    ({"define/modules.json": '[\n  {"name": "a"},\n]'},
     "define/modules.json:3:1: Expecting value"),
    ({"define/dev.json": '{"a": 1,\n "a": 2}'}, "define/dev.json:2: duplicate key 'a'"),
    ({"define/dev.json": {"inherit": ["regions/ch2"]}, "define/regions/ch1.json": {}},
     "define/dev.json at /inherit/0: unknown parent 'regions/ch2', did you mean 'regions/ch1'?"),
    ({"define/dev.json": {"targets": {"app": {"inherit": ["regions/ch2"]}}},
      "define/regions/ch1.json": {}},
     "define/dev.json at /targets/app/inherit/0: unknown parent 'regions/ch2', "
     "did you mean 'regions/ch1'?"),
    ({"define/dev.json": {"inherit": ["roles/a"]}, "define/roles/a.json": {"inherit": ["roles/b"]},
      "define/roles/b.json": {"inherit": ["roles/c"]},
      "define/roles/c.json": {"inherit": ["roles/a"]}},
     "at /inherit: inheritance cycle: roles/a -> roles/b -> roles/c -> roles/a"),
    ({"define/dev.json": [1, 2]},
     "define/dev.json: a definition must be a JSON object, not a list"),
    ({"define/dev.json": {}, "define/regions/eu.json": "3"},
     "define/regions/eu.json: a definition must be a JSON object, not a number"),
    ({"define/dev.json": {"inherit": "regions/ch1"}},
     "define/dev.json at /inherit: inherit must be a list of strings, not a string"),
    ({"define/dev.json": {"inherit": [1]}},
     "define/dev.json at /inherit/0: inherit must be a list of strings, not a number"),
    ({"define/dev.json": {"targets": ["a"]}},
     "define/dev.json at /targets: targets must be an object of name: target, not a list"),
    ({"define/dev.json": {"targets": {"app": {"hosts": "a1"}}}},
     "define/dev.json at /targets/app/hosts: hosts must be a list of strings, not a string"),
    ({"define/dev.json": {"generate": {"k": "tokn:16"}}},
     "define/dev.json at /generate/k: unknown generate kind 'tokn' (one of password, token, "
     "uuid, id), did you mean 'token'?"),
    ({"define/dev.json": {"generate": {"k": 16}}},
     "define/dev.json at /generate/k: a generate kind must be a string"),
    ({"define/dev.json": {"generate": ["x"]}},
     "define/dev.json at /generate: generate must be an object of name: kind, not a list"),
    ({"define/dev.json": {"deploy": {"delet": ["x"]}}},
     "define/dev.json at /deploy/delet: unknown key 'delet' in deploy, did you mean 'delete'?"),
    ({"define/dev.json": {"deploy": {"url": 5}}},
     "define/dev.json at /deploy/url: deploy.url must be a string, not a number"),
    ({"define/dev.json": {"deploy": "x"}},
     "define/dev.json at /deploy: deploy must be an object, not a string"),
    ({"define/dev.json": {"delpoy": {}}},
     "define/dev.json at /delpoy: unknown key 'delpoy', did you mean 'deploy'?"),
    ({"define/regions/eu.json": {"tragets": {}}, "define/dev.json": {}},
     "define/regions/eu.json at /tragets: unknown key 'tragets', did you mean 'targets'?"),
    ({**VID, "define/dev.json": {"v": [{"name": 1}, {"name": 1}]}},
     "define/dev.json at /v/1: cannot merge (arrayMergeById): Id '1' was not unique in head"),
    ({**VID, "define/dev.json": {"v": {"name": 1}}},
     "define/dev.json at /v: cannot merge (arrayMergeById): Head is not an array"),
    ({**VID, "define/facsimile.json": {"name": "p", "v": [{"name": "a"}]},
      "define/dev.json": {"v": [{"name": "b"}, {"port": 1}]}},
     "define/dev.json at /v/1: item 1 has no id 'name' for arrayMergeById"),
    ({"define/schema.json": {"properties": {"v": {"mergeStrategy": "apend"}}},
      "define/dev.json": {"v": [1]}},
     "define/schema.json at /properties/v/mergeStrategy: unknown merge strategy 'apend', "
     "did you mean 'append'?"),
    ({"define/prod.ch1.json": {}}, "define/prod.ch1.json: subinstance 'prod.ch1' has no parent"),
    ({"define/regions/eu.json": {"ntp": ["a"]},
      "define/dev.json": {"inherit": ["regions/eu"], "ntp": {"server": "b"}}},
     "define/dev.json at /ntp: an object cannot merge into the list or value a parent set"),
    ({"define/regions/eu.json": {"ntp": ["a"]},
      "define/dev.json": {"targets": {"app": {"inherit": ["regions/eu"], "ntp": {"s": "b"}}}}},
     "define/dev.json at /targets/app/ntp: an object cannot merge into the list"),
    ({"define/modules.json": {"app": {"port": [1]}},
      "define/dev.json": {"modules": {"app": {"port": {"a": 1}}}}},
     "define/dev.json at /modules/app/port: an object cannot merge into the list"),
    ({"define/modules.json": [{"port": 1}]},
     'define/modules.json at /0: each module in a list must be an object with a "name"'),
    # a malformed schema.json: one line naming it and the JSON pointer
    ({"define/schema.json": {"properties": 3}},
     "define/schema.json at /properties: properties must be an object of name: subschema, "
     "not a number"),
    ({"define/schema.json": {"additionalProperties": 3}},
     "define/schema.json at /additionalProperties: a subschema must be an object or a "
     "boolean, not a number"),
    ({"define/schema.json": {"properties": {"modules": 3}}},
     "define/schema.json at /properties/modules: a subschema must be an object or a boolean"),
    ({"define/schema.json": {"properties": {"app": 3}}},
     "define/schema.json at /properties/app: a subschema must be an object or a boolean"),
    ({"define/schema.json": {"items": [{}, "x"]}},
     "define/schema.json at /items/1: a subschema must be an object or a boolean"),
    ({"define/schema.json": {"patternProperties": {"[": {}}}},
     "define/schema.json at /patternProperties/[: pattern '[' does not compile"),
    ({"define/schema.json": {"properties": {"app": {"$ref": "#/nope"}}}},
     "define/schema.json at /properties/app/$ref: $ref '#/nope' points to nothing"),
    ({"define/schema.json": {"properties": {"a": {"$ref": "#/definitions/d"}},
                             "definitions": {"d": {"properties": {"x": 1}}}}},
     "define/schema.json at /definitions/d/properties/x: a subschema must be an object"),
    ({"define/schema.json": {"properties": {"a": {"mergeStrategy": "append",
                                                  "mergeOptions": 1}}}},
     "define/schema.json at /properties/a/mergeOptions: mergeOptions must be an object"),
    # a $ref below "modules" resolves within that subschema (jsonmerge): caught when merging
    ({"define/schema.json": {"properties": {"modules": {"additionalProperties": {
        "properties": {"port": {"$ref": "#/definitions/p"}}}}},
        "definitions": {"p": {"mergeStrategy": "append"}}},
      "define/modules.json": {"app": {"port": [1]}},
      "define/dev.json": {"modules": {"app": {"port": [2]}}}},
     "define/dev.json at /modules/app: cannot merge: a $ref in define/schema.json does not "
     "resolve: Unresolvable JSON pointer: 'definitions/p'"),
    # projects: an object per subproject, with a subproject's keys
    ({"define/facsimile.json": {"name": "r1", "projects": {"b": 3}}},
     "define/facsimile.json at /projects/b: subproject 'b' must be an object, not a number"),
    ({"define/facsimile.json": {"name": "r1", "projects": {"b": {"modules": 3}}}},
     "define/facsimile.json at /projects/b/modules: modules must be a list of objects or an "
     "object, not a number"),
    ({"define/facsimile.json": {"name": "r1", "projects": {"b": {"moduels": []}}}},
     "define/facsimile.json at /projects/b/moduels: unknown key 'moduels', did you mean "
     "'modules'?"),
    ({"define/facsimile.json": {"name": "r1", "projects": {"b": {"tmpl": 3}}}},
     "define/facsimile.json at /projects/b/tmpl: the subproject's tmpl folder must be a "
     "relative path, not a number"),
    ({"define/facsimile.json": {"name": "r1", "projects": ["a", 3]}},
     "define/facsimile.json at /projects/1: projects as a list must be a list of subproject "
     "names, not a number"),
    ({"define/facsimile.json": {"name": "r1", "projects": ["a", "a"]}},
     "define/facsimile.json at /projects/1: subproject 'a' is named twice"),
])
def test_bad_input_is_one_line_naming_the_file(tmp_path: Path, tree: dict, expected: str) -> None:
    write_tree(tmp_path, {"define/facsimile.json": {"name": "p"}, **tree})
    err = one_line_error(tmp_path, "show", "dev")
    assert expected in err


def test_boolean_subschemas_are_schemas(tmp_path: Path) -> None:
    # JSON Schema allows true/false as subschemas; jsonmerge (draft 4) does not: a $ref
    # sends the merge through jsonmerge, which used to fail on them with a traceback
    write_tree(tmp_path, {
        "define/schema.json": {"properties": {"a": True, "b": False,
                                              "v": {"$ref": "#/definitions/app"}},
                               "patternProperties": {"^x": True},
                               "definitions": {"app": {"mergeStrategy": "append"}}},
        "define/facsimile.json": {"name": "p", "a": {"x": 1}, "b": {"x": 1}, "v": [1],
                                  "xy": {"x": 1}},
        "define/dev.json": {"a": {"y": 2}, "b": {"y": 2}, "v": [2], "xy": {"y": 2}},
    })
    inst = show(tmp_path, "dev")["instance"]
    assert inst["v"] == [1, 2]
    assert inst["a"] == inst["b"] == inst["xy"] == {"x": 1, "y": 2}


UNSAFE = [
    # module names and paths would write outside BUILD/<instance>/
    ({"define/modules.json": [{"name": "app"}, {"name": "../../evil"}]},
     "define/modules.json at /1/name: module name '../../evil' is not allowed"),
    ({"define/modules.json": {"app": {}, "../../evil": {}}},
     "define/modules.json at /..~1..~1evil: module name '../../evil' is not allowed"),
    ({"define/modules.json": {"a.b": {}}},
     "define/modules.json at /a.b: module name 'a.b' is not allowed"),
    ({"define/modules.json": [{"name": ""}]},
     "define/modules.json at /0/name: module name '' is not allowed"),
    ({"define/dev.json": {"modules": [{"name": "../evil"}]}},
     "define/dev.json at /modules/0/name: module name '../evil' is not allowed"),
    ({"define/modules.json": [{"name": "app", "genconfig": True,
                               "genconfig_path": "../../escaped.json"}]},
     "define/modules.json at /0/genconfig_path: genconfig_path '../../escaped.json' must be a "
     "relative path"),
    ({"define/modules.json": [{"name": "app", "genconfig": True, "genconfig_path": "/tmp/x"}]},
     "define/modules.json at /0/genconfig_path: genconfig_path '/tmp/x' must be a relative"),
    ({"define/modules.json": [{"name": "app", "genconfig": True, "genconfig_path": ""}]},
     "define/modules.json at /0/genconfig_path: genconfig_path '' must be a relative path"),
    ({"define/modules.json": [{"name": "app", "genconfig": True}],
      "define/dev.json": {"modules": {"app": {"genconfig_path": "etc/../../../x.json"}}}},
     "define/dev.json at /modules/app/genconfig_path: genconfig_path 'etc/../../../x.json'"),
    ({"define/modules.json": [{"name": "app", "service": {"name": "../../d"}}]},
     "define/modules.json at /0/service/name: service.name '../../d' is not allowed"),
    # subprojects build into BUILD/<instance>/<subproject>/
    ({"define/facsimile.json": {"name": "p", "projects": {"../../evil": {}}}},
     "define/facsimile.json at /projects/..~1..~1evil: subproject name '../../evil' is not "
     "allowed"),
    ({"define/facsimile.json": {"name": "p", "projects": [".."]}},
     "define/facsimile.json at /projects/0: subproject name '..' is not allowed"),
    ({"define/facsimile.json": {"name": "p", "projects": {"b": {"modules": [
        {"name": "../../evil"}]}}}},
     "define/facsimile.json at /projects/b/modules/0/name: module name '../../evil'"),
    ({"define/facsimile.json": {"name": "p", "projects": {"b": {"tmpl": "../outside"}}}},
     "define/facsimile.json at /projects/b/tmpl: the subproject's tmpl folder '../outside' "
     "must be a relative path"),
    ({"define/facsimile.json": {"name": "p", "projects": {"b": {"extra": "/etc"}}}},
     "define/facsimile.json at /projects/b/extra: the subproject's extra folder '/etc' must "
     "be a relative path"),
]


@pytest.mark.parametrize(("tree", "expected"), UNSAFE)
def test_names_and_paths_cannot_leave_build(tmp_path: Path, tree: dict, expected: str) -> None:
    from conftest import DODO, doit

    root = tmp_path / "r"
    write_tree(root, {"define/facsimile.json": {"name": "p"}, "define/dev.json": {},
                      "dodo.py": DODO, "tmpl/_ALL_/{module}.conf": "{{ this.name }}\n",
                      "projects/b/tmpl/_ALL_/b.conf": "b\n", **tree})
    assert expected in one_line_error(root, "show", "dev")
    # the build refuses too, and nothing is written outside BUILD/dev/
    before = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert doit(root).returncode != 0
    after = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    made = [p for p in after if p not in before and p.parent.name != "__pycache__"]
    assert all(root / "BUILD" / "dev" in p.parents or root / ".facsimile" in p.parents
               or p.name.startswith(".doit.db") for p in made), made


def test_safe_names_and_paths_still_build(tmp_path: Path) -> None:
    from conftest import DODO, doit

    write_tree(tmp_path, {
        "define/facsimile.json": {"name": "p", "projects": {"bill-ing": {
            "modules": [{"name": "api_1"}], "tmpl": "sub/tmpl"}}},
        "define/modules.json": [{"name": "app-2", "genconfig": True,
                                 "genconfig_path": "etc/conf.d/app.json"}],
        "define/dev.json": {}, "dodo.py": DODO,
        "tmpl/_ALL_/{module}.conf": "{{ this.name }}\n",
        "sub/tmpl/_ALL_/b.conf": "{{ module.api_1.username }}\n",
    })
    doit(tmp_path, check=True)
    build = tmp_path / "BUILD/dev"
    assert (build / "app-2.conf").read_text() == "app-2\n"
    assert json.loads((build / "etc/conf.d/app.json").read_text())["username"] == "app-2"
    assert (build / "bill-ing/b.conf").read_text() == "api_1\n"


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    write_tree(tmp_path, {"define/facsimile.json": {"name": "p"}, "define/dev.json": "{"})
    for args in (["--debug", "list"], ["list", "--debug"]):
        proc = facs(tmp_path, *args)
        assert proc.returncode != 0 and "Traceback" in proc.stderr
        assert "DefinitionError: define/dev.json:1:2:" in proc.stderr


def test_unknown_instance_suggests(tmp_path: Path) -> None:
    write_tree(tmp_path, {"define/facsimile.json": {"name": "p"}, "define/staging.json": {}})
    assert "did you mean 'staging'?" in one_line_error(tmp_path, "show", "stagng")


HELP = {
    (): "list instances and subinstances",
    ("list",): "list instances and subinstances",
    ("show",): "resolved definition",
    ("state",): "show or rotate generated state",
    ("state", "show"): "Secrets are masked unless --reveal",
    ("state", "rotate"): "Give NAME a new value",
    ("build",): "build instances into BUILD/",
    ("plan",): "list stale outputs",
    ("sync",): "push an instance's build",
    ("init",): "create a new facsimile root",
}


@pytest.mark.parametrize("cmd", list(HELP), ids=lambda c: " ".join(c) or "facs")
def test_help(tmp_path: Path, cmd: tuple[str, ...]) -> None:
    proc = facs(tmp_path, *cmd, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: facs {' '.join(cmd)}".rstrip())
    assert HELP[cmd] in " ".join(proc.stdout.split())


def test_init_makes_a_root_that_builds(tmp_path: Path) -> None:
    from conftest import doit

    target = tmp_path / "newproj"
    out = facs(tmp_path, "init", str(target), check=True).stdout
    assert "created" in out
    doit(target, check=True)
    text = (target / "BUILD/dev/etc/app.conf").read_text()
    assert "port = 8000" in text and "region = local" in text
    assert "already has" in one_line_error(tmp_path, "init", str(target))


@pytest.mark.parametrize("key", ["", ".", "a..b", ".a", "a.", "instance."])
def test_explain_needs_a_key(tmp_path: Path, key: str) -> None:
    write_tree(tmp_path, {"define/facsimile.json": {"name": "p", "a": {"b": 1}},
                          "define/dev.json": {}})
    err = one_line_error(tmp_path, "show", "dev", "--explain", key)
    assert f"--explain {key!r} is not a key" in err


def test_init_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("mine\n")
    err = one_line_error(tmp_path, "init", str(tmp_path / "taken"))
    assert f"{tmp_path / 'taken'} exists and is not a folder: nothing written" in err
    err = one_line_error(tmp_path, "init", str(tmp_path / "taken" / "sub"))
    assert "cannot create" in err and "nothing written" in err
    assert (tmp_path / "taken").read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


@pytest.mark.parametrize("args", [("show", "dev", "--json"), ("show", "dev"),
                                  ("plan", "--diff"), ("list",)])
def test_a_closed_pipe_ends_quietly(tmp_path: Path, args: tuple[str, ...]) -> None:
    # `facs plan --diff | head -1`: the reader is gone before facs writes
    import os
    import subprocess
    import sys

    write_tree(tmp_path, {"define/facsimile.json": {"name": "p", "big": ["x" * 70] * 2000},
                          "define/dev.json": {}, "tmpl/_ALL_/a.txt": "{{ instance.big }}\n"})
    env = {k: v for k, v in os.environ.items() if k != "DOIT_CONFIG"}
    proc = subprocess.Popen([sys.executable, "-m", "facsimile.cli", *args], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as `head` does once it has its line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 141, err
    assert err == ""


def test_explain_names_where_module_and_state_values_come_from(tmp_path: Path) -> None:
    write_tree(tmp_path, {"define/facsimile.json": {"name": "p", "generate": {"k": "token"}},
                          "define/modules.json": {"app": {"port": 1}},
                          "define/prod.json": {"modules": {"app": {"port": 2}}}})
    out = explain(tmp_path, "prod", "module.app.port")
    assert "module.app.port = 2" in out
    assert "module defined in: define/modules.json, define/prod.json" in out
    assert "default: the module's name" in explain(tmp_path, "prod", "module.app.username")
    out = explain(tmp_path, "prod", "module.app.password")
    assert out.startswith('module.app.password = "<not generated yet>"')
    assert "generated state: state/prod/state.json" in out
    assert "generated state: state/prod/state.json (family prod)" in explain(
        tmp_path, "prod", "state.k")
    assert not (tmp_path / "state").exists()
    facs(tmp_path, "state", "show", "prod", check=True)
    assert explain(tmp_path, "prod", "module.app.password").startswith(
        'module.app.password = "********"')


def test_version(tmp_path: Path) -> None:
    from facsimile import __version__

    assert facs(tmp_path, "--version", check=True).stdout.strip() == f"facs {__version__}"


@pytest.mark.parametrize("bad", ["a b;id", "h#1", "h?x", "a..b", ".h", "h.", "a/b", "-x"])
@pytest.mark.slow
def test_host_names_sync_would_refuse_are_refused_when_definitions_are_read(
        tmp_path: Path, bad: str) -> None:
    """One rule for host names: a name sync would refuse (it is filled into URLs and
    folder names) is an error naming its definition file, for every command."""
    from conftest import DODO, doit

    write_tree(tmp_path, {
        "define/facsimile.json": {"name": "p"},
        "define/targets/web.json": {"targets": {"web": {"hosts": ["h1", bad]}}},
        "define/dev.json": {"inherit": ["targets/web"]},
        "dodo.py": DODO, "tmpl/_ALL_/a.conf": "a\n",
    })
    expected = (f"define/targets/web.json at /targets/web/hosts/1: {bad!r} is not a valid "
                "host name: use letters, digits, and '.', '-', '_' between them")
    for args in (("list",), ("show", "dev")):
        assert expected in one_line_error(tmp_path, *args)
    proc = doit(tmp_path)
    assert proc.returncode != 0 and expected in proc.stdout + proc.stderr
    assert not (tmp_path / "BUILD").exists()


def test_host_names_sync_accepts_are_accepted(tmp_path: Path) -> None:
    hosts = ["h1", "db-1.example.org", "h_1", "[::1]", "10.0.0.1"]
    write_tree(tmp_path, {"define/facsimile.json": {"name": "p"},
                          "define/dev.json": {"targets": {"web": {"hosts": hosts}}}})
    assert ", ".join(hosts) in facs(tmp_path, "list", check=True).stdout
