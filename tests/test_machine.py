"""What programs and editors read: ``facs list --json`` and ``facs build
--json`` (versioned shapes), ``facs schema`` (validated against every worked
example) and ``facs completion``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
from conftest import DODO, REPO, facs, write_tree

from facsimile.cli.meta import completion_script
from facsimile.schema import definition_schema

TREE = {
    "dodo.py": DODO,
    "define/facsimile.json": {"name": "demo", "app": {"port": 80}},
    "define/dev.json": {"targets": {"app": {"hosts": ["h1"], "files": ["etc/**"]}}},
    "define/dev.eu.json": {},
    "tmpl/_ALL_/etc/a.conf.j2": "port = {{ instance.app.port }}\n",
    "tmpl/_ALL_/etc/b.conf.j2": "b\n",
}


def _examples() -> list[Path]:
    """The repository's definition files (schema.json is jsonmerge's, not one)."""
    files = sorted((REPO / "define").glob("*.json")) + sorted((REPO / "define").glob("*/*.json"))
    return [f for f in files if f.name != "schema.json"]


def test_list_json(tmp_path: Path) -> None:
    write_tree(tmp_path, TREE)
    doc = json.loads(facs(tmp_path, "list", "--json", check=True).stdout)
    assert doc["format"] == 1 and doc["project"] == "demo"
    dev, eu = doc["instances"]
    assert dev["name"] == "dev" and dev["parent"] is None
    assert dev["targets"] == {"app": {"hosts": ["h1"], "files": ["etc/**"], "regions": []}}
    assert eu["name"] == "dev.eu" and eu["parent"] == "dev" and eu["family"] == "dev"


def test_build_json_made_then_failed(tmp_path: Path) -> None:
    write_tree(tmp_path, TREE)
    proc = facs(tmp_path, "build", "--json", "dev")
    doc = json.loads(proc.stdout)  # stdout is the document alone
    assert proc.returncode == 0 and doc["format"] == 1 and doc["ok"]
    assert {m["output"] for m in doc["made"]} == {"dev/etc/a.conf", "dev/etc/b.conf"}
    assert doc["counts"]["built"] == 2 and doc["failed"] == []
    write_tree(tmp_path, {"tmpl/_ALL_/etc/a.conf.j2": "{{ instance.app.prot }}\n"})
    proc = facs(tmp_path, "build", "--json", "dev")
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and not doc["ok"] and doc["exit"] == 1
    assert doc["counts"] == {"built": 0, "deleted": 0, "failed": 1, "up_to_date": 1}
    (failed,) = doc["failed"]
    assert failed["output"] == "dev/etc/a.conf"
    assert "did you mean instance.app.port?" in failed["message"]
    write_tree(tmp_path, {"tmpl/_ALL_/etc/a.conf.j2": "fixed\n"})
    doc = json.loads(facs(tmp_path, "build", "--json", "dev", check=True).stdout)
    assert [m["output"] for m in doc["made"]] == ["dev/etc/a.conf"]
    assert doc["made"][0]["reasons"]


def test_schema_accepts_every_worked_example() -> None:
    schema = json.loads(facs(REPO, "schema", check=True).stdout)
    jsonschema.Draft202012Validator.check_schema(schema)
    modules = {"$ref": "#/$defs/modules", "$defs": schema["$defs"]}
    examples = _examples()
    assert len(examples) >= 8
    for path in examples:
        data = json.loads(path.read_text())
        jsonschema.validate(data, modules if path.name == "modules.json" else schema,
                            cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("bad", [
    {"inherit": "roles/production"},
    {"targets": {"app": {"hosts": "app1"}}},
    {"deploy": {"url": "file:///x", "delpoy": True}},
    {"deploy": {"jobs": "4"}},
    {"generate": {"key": "tokn:32"}},
    {"modes": {"etc/*": "0999"}},
    {"modules": [{"port": 1}]},
    {"state": {"recipients": "age1abc"}},
])
def test_schema_refuses_a_bad_definition(bad: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, definition_schema(), cls=jsonschema.Draft202012Validator)


def test_schema_allows_free_template_data() -> None:
    jsonschema.validate({"app": {"anything": [1, {"x": None}]}, "vhosts": []},
                        definition_schema(), cls=jsonschema.Draft202012Validator)


def test_completion_scripts_name_the_commands() -> None:
    pytest.importorskip("shtab")
    commands = ("list", "show", "state", "build", "plan", "sync", "init", "schema",
                "completion")
    for shell in ("bash", "zsh"):
        script = completion_script(shell)
        for name in commands:
            assert name in script, (shell, name)
    assert "--explain" in completion_script("bash")
    if shutil.which("bash"):
        proc = subprocess.run(["bash", "-n"], input=completion_script("bash"), text=True,
                              capture_output=True)
        assert proc.returncode == 0, proc.stderr


def test_completion_command_prints_the_script(tmp_path: Path) -> None:
    pytest.importorskip("shtab")
    proc = facs(tmp_path, "completion", "zsh", check=True)
    assert proc.stdout.startswith("#compdef facs")
