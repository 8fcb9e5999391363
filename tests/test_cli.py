"""The ``facs`` command line itself: a command group given no action, and
``facs state show`` (its location, its JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import facs, write_tree
from servers import sshd  # noqa: F401  (fixture)


def test_state_without_an_action_prints_its_own_usage(tmp_path: Path) -> None:
    proc = facs(tmp_path, "state")
    assert proc.returncode == 1
    assert proc.stdout.startswith("usage: facs state ")
    assert "rotate" in proc.stdout and "facs init" not in proc.stdout


def test_facs_without_a_command_prints_the_usage(tmp_path: Path) -> None:
    proc = facs(tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.startswith("usage: facs ") and "COMMAND" in proc.stdout


def state_root(tmp_path: Path, state: dict) -> Path:
    root = tmp_path / "root"
    write_tree(root, {
        "define/facsimile.json": {"name": "shop", "state": state,
                                  "generate": {"node": "id"}},
        "define/modules.json": {"db": {}},
        "define/dev.json": {},
    })
    return root


@pytest.mark.parametrize("kind", ["file", "sftp"])
def test_state_show_names_remote_state_by_its_url_and_prints_masked_json(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    base = tmp_path / "remote"
    if kind == "file":
        state: dict = {"url": f"file://{base}"}
    else:
        server = request.getfixturevalue("sshd")
        state = {"url": f"sftp://{server.user}@127.0.0.1:{server.port}{base}",
                 "ssh": {"key": str(server.key), "known_hosts": str(server.known_hosts)}}
    root = state_root(tmp_path, state)
    url = f"{state['url']}/dev/state.json"
    text = facs(root, "state", "show", "dev", check=True).stdout
    assert text.splitlines()[0] == f"# {url} (family dev)"
    doc = json.loads(facs(root, "state", "show", "dev", "--json", check=True).stdout)
    kept = json.loads((base / "dev/state.json").read_text())  # made by the first show
    secret = kept["modules"]["db"]["value"]
    assert doc == {"format": 1, "instance": "dev", "family": "dev", "location": url,
                   "values": [{"path": "module.db.password", "kind": "password",
                               "value": "********"},
                              {"path": "state.node", "kind": "id",
                               "value": kept["generate"]["node"]["value"]}]}
    shown = json.loads(facs(root, "state", "show", "dev", "--json", "--reveal",
                            check=True).stdout)
    assert shown["values"][0]["value"] == secret and secret not in text


def test_state_show_json_of_local_state_gives_its_path_below_the_root(tmp_path: Path) -> None:
    root = state_root(tmp_path, {})
    doc = json.loads(facs(root, "state", "show", "dev", "--json", check=True).stdout)
    assert doc["location"] == "state/dev/state.json" and (root / doc["location"]).is_file()
    assert facs(root, "state", "show", "dev", check=True).stdout.startswith(
        "# state/dev/state.json (family dev)\n")
