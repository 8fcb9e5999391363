"""Hostile or damaged inputs: names that become paths, secrets in definitions,
the project class's import, the model cache, and the one-line errors."""

from __future__ import annotations

import hashlib
import hmac
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import DODO, doit, facs, run, write_tree

BASE: dict[str, Any] = {
    "dodo.py": DODO,
    "define/facsimile.json": {"name": "demo"},
    "define/dev.json": {},
    "tmpl/_ALL_/a.txt.j2": "a\n",
}


@pytest.fixture
def base(tmp_path: Path) -> Path:
    write_tree(tmp_path, BASE)
    return tmp_path


def one_line_error(proc: Any, file: str) -> None:
    """Exit 1, one line on stderr naming ``file``, no traceback anywhere."""
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text
    assert "Traceback" not in text, text
    assert proc.stderr.strip().count("\n") == 0 and file in proc.stderr, text


# ------------------------------------------------------------ names that become paths


@pytest.mark.parametrize(("data", "pointer"), [
    ({"name": "../../../tmp/x", "version": "1"}, "/name"),
    ({"name": "demo", "version": "1/../../../x"}, "/version"),
    ({"name": "demo", "version": {"a": 1}}, "/version"),
    ({"name": "demo", "class": "../evil:Shop"}, "/class"),
    ({"name": "demo", "modules": {"app": {"repo": "r", "version": "../../x"}}},
     "/modules/app/version"),
])
def test_project_names_and_versions_that_would_leave_build_are_refused(
        base: Path, data: dict[str, Any], pointer: str) -> None:
    write_tree(base, {"define/facsimile.json": data})
    proc = doit(base)
    one_line_error(proc, f"define/facsimile.json at {pointer}")
    assert not (base / "BUILD").exists() or not list((base / "BUILD").rglob("*.version"))


# ------------------------------------------------------------ credentials in definitions

DEPLOY = {"url": "sftp://deployer:hunter2pw@web1/srv",
          "s3": {"key": "AKIAKEYID", "secret": "s3secretvalue"},
          "ssh": {"password": "sshpassvalue"},
          "storage_options": {"password": "optpassvalue"}}
SECRETS = ("hunter2pw", "AKIAKEYID", "s3secretvalue", "sshpassvalue", "optpassvalue",
           "statesecret")


@pytest.mark.parametrize("args", [(), ("--json",), ("--explain", "deploy.s3.secret"),
                                  ("--explain", "deploy.url")])
@pytest.mark.slow
def test_show_masks_credentials_given_in_definitions(base: Path, args: tuple[str, ...]) -> None:
    write_tree(base, {"define/facsimile.json": {
        # a file:// URL: the s3 settings are still masked, and show reaches no server
        "name": "demo", "state": {"url": f"file://{base}/remote", "s3": {"secret": "statesecret"}}},
        "define/dev.json": {"deploy": DEPLOY}})
    proc = facs(base, "show", "dev", *args, check=True)
    assert not [s for s in SECRETS if s in proc.stdout], proc.stdout
    assert "********" in proc.stdout
    shown = facs(base, "show", "dev", "--reveal", *args, check=True).stdout
    assert any(s in shown for s in SECRETS)


# ------------------------------------------------------------ the project class

SHOP = """
import facsimile


class Shop(facsimile.Project):
    def extra_context(self, inst):
        return {"where": WHERE}
"""
TRAP = "open({marker!r}, 'w').write('imported')\nraise SystemExit('imported ' + __file__)\n"


def test_the_class_comes_from_the_root_before_its_parent(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_tree(root, {**BASE, "define/facsimile.json": {"name": "demo", "class": "shopext:Shop"},
                      "shopext.py": SHOP.replace("WHERE", "'root'"),
                      "tmpl/_ALL_/a.txt.j2": "{{ where }}\n"})
    write_tree(tmp_path, {"shopext.py": SHOP.replace("WHERE", "'parent'")})
    doit(root, check=True)
    assert (root / "BUILD/dev/a.txt").read_text() == "root\n"
    (root / "shopext.py").unlink()
    (root / "BUILD/dev/a.txt").unlink()
    doit(root, check=True)
    assert (root / "BUILD/dev/a.txt").read_text() == "parent\n"


@pytest.mark.slow
def test_a_library_name_beside_the_root_is_never_imported(tmp_path: Path) -> None:
    root = tmp_path / "root"
    marker = tmp_path / "imported"
    write_tree(root, {**BASE, "define/facsimile.json": {"name": "demo", "class": "shopext:Shop"},
                      "shopext.py": SHOP.replace("WHERE", "'root'"),
                      "tmpl/_ALL_/a.txt.j2": "{{ where }}\n",
                      "jinja2.py": TRAP.format(marker=str(marker)),
                      "markupsafe.py": TRAP.format(marker=str(marker))})
    write_tree(tmp_path, {"jinja2.py": TRAP.format(marker=str(marker))})
    # -P: not the working directory on sys.path, as for the installed facs script
    proc = run([sys.executable, "-P", "-m", "facsimile.cli", "build"], cwd=root, check=True)
    assert "1 built" in proc.stdout
    assert (root / "BUILD/dev/a.txt").read_text() == "root\n"
    facs(root, "plan", check=False)
    assert not marker.exists()
    # plain doit puts the folder of dodo.py (the root) on sys.path itself; the parent
    # is never put there
    (root / "jinja2.py").unlink()
    (root / "markupsafe.py").unlink()
    (root / "BUILD/dev/a.txt").unlink()
    doit(root, check=True)
    assert not marker.exists()


# ------------------------------------------------------------ the model cache


def mac_key(root: Path) -> bytes:
    key = bytes.fromhex((root / "state/.digest-key").read_text().strip())
    return hashlib.blake2b(key, person=b"model.pickle").digest()


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.mark.slow
def test_a_crafted_model_cache_is_not_unpickled(base: Path) -> None:
    doit(base, check=True)
    facs(base, "list", check=True)
    cache = base / ".facsimile/model.pickle"
    assert cache.is_file()
    marker = base / "pwned"
    cache.write_bytes(b"\0" * 32 + pickle.dumps(_Evil(str(marker))))
    proc = facs(base, "list", check=True)
    assert "dev" in proc.stdout and not marker.exists()
    cache.write_bytes(pickle.dumps(_Evil(str(marker))))  # the old format: no MAC at all
    facs(base, "list", check=True)
    assert not marker.exists()
    assert cache.read_bytes()[32:].startswith(b"\x80")  # rebuilt, authenticated


@pytest.mark.parametrize("payload", [5, (9, {}, 5), ("k", {}, ("a", {}, {})), [1, 2, 3]])
@pytest.mark.slow
def test_an_authentic_cache_of_the_wrong_shape_is_rebuilt(base: Path, payload: Any) -> None:
    doit(base, check=True)
    facs(base, "list", check=True)
    body = pickle.dumps(payload)
    (base / ".facsimile/model.pickle").write_bytes(
        hmac.digest(mac_key(base), body, "sha256") + body)
    proc = facs(base, "list", check=True)
    assert "dev" in proc.stdout and "Traceback" not in proc.stderr
    assert doit(base, check=True).returncode == 0


def test_no_cache_is_written_without_a_digest_key(base: Path) -> None:
    facs(base, "list", check=True)
    assert not (base / ".facsimile/model.pickle").exists()


# ------------------------------------------------------------ the one-line catalogue

DEEP_CHAIN = {f"define/c/{i}.json": {"inherit": [f"c/{i + 1}"]} for i in range(2999)}
DEEP_CHAIN["define/c/2999.json"] = {}
DEEP_CHAIN["define/dev.json"] = {"inherit": ["c/0"]}

CATALOGUE: list[tuple[str, dict[str, Any], str]] = [
    ("nested 100,000 deep", {"define/dev.json": "[" * 100000 + "]" * 100000},
     "define/dev.json"),
    ("nested 150 deep", {"define/dev.json": '{"a":' * 150 + "1" + "}" * 150},
     "define/dev.json"),
    ("NaN", {"define/dev.json": '{\n  "a":\n  NaN\n}\n'}, "define/dev.json:3"),
    ("Infinity", {"define/dev.json": '{"a": [1, -Infinity]}'}, "define/dev.json:1"),
    ("NaN in the project", {"define/facsimile.json": '{"name": "demo", "x": NaN}'},
     "define/facsimile.json:1"),
    ("inheritance 3,000 deep", DEEP_CHAIN, "define/dev.json at /inherit"),
    ("schema $ref to itself", {"define/schema.json": {"$ref": "#"}},
     "define/schema.json at /$ref"),
    ("schema $ref cycle", {"define/schema.json": {
        "properties": {"a": {"$ref": "#/definitions/b"}},
        "definitions": {"b": {"$ref": "#/definitions/c"}, "c": {"$ref": "#/definitions/b"}}}},
     "define/schema.json at /properties/a/$ref"),
    ("version an object", {"define/facsimile.json": {"name": "demo", "version": {"a": 1}}},
     "define/facsimile.json at /version"),
]


@pytest.mark.parametrize(("tree", "file"), [c[1:] for c in CATALOGUE],
                         ids=[c[0] for c in CATALOGUE])
@pytest.mark.parametrize("command", ["doit", "list", "plan"])
@pytest.mark.slow
def test_bad_definitions_are_one_line(base: Path, tree: dict[str, Any], file: str,
                                      command: str) -> None:
    write_tree(base, tree)
    proc = doit(base) if command == "doit" else facs(base, command)
    one_line_error(proc, file)


DOIT_DB: list[tuple[str, Any]] = [
    ("truncated", '{\n"build:dev/a.txt":{"_values_:"'),
    ("a list", "[]"),
    ("binary", b"\xff\xfe\x00\x01"),
    ("empty", ""),
    ("a folder", None),
]
DOIT_DB_RECORDS: list[tuple[str, Any]] = [
    ("a record a number", '{"build:dev/a.txt": 5}'),
    ("values a list", '{"build:dev/a.txt": {"_values_:": [1]}}'),
    ("deps a number", '{"build:dev/a.txt": {"deps:": 3}}'),
]


def _damage(root: Path, content: Any) -> None:
    db = root / ".doit.db"
    if db.exists():
        db.unlink()
    if content is None:
        db.mkdir()
    elif isinstance(content, bytes):
        db.write_bytes(content)
    else:
        db.write_text(content)


@pytest.mark.parametrize("content", [c[1] for c in DOIT_DB], ids=[c[0] for c in DOIT_DB])
@pytest.mark.parametrize("command", [("build",), ("list", "--all"), ("build", "-n", "2"),
                                     ("dumpdb",)])
@pytest.mark.slow
def test_a_damaged_doit_db_is_one_line_through_doit(base: Path, content: Any,
                                                    command: tuple[str, ...]) -> None:
    doit(base, check=True)
    _damage(base, content)
    one_line_error(doit(base, *command), ".doit.db")


@pytest.mark.parametrize("content", [c[1] for c in DOIT_DB + DOIT_DB_RECORDS],
                         ids=[c[0] for c in DOIT_DB + DOIT_DB_RECORDS])
@pytest.mark.slow
def test_a_damaged_doit_db_is_one_line_through_facs_plan(base: Path, content: Any) -> None:
    doit(base, check=True)
    _damage(base, content)
    one_line_error(facs(base, "plan"), ".doit.db")


@pytest.mark.parametrize("content", [c[1] for c in DOIT_DB_RECORDS],
                         ids=[c[0] for c in DOIT_DB_RECORDS])
def test_doit_db_records_of_the_wrong_shape_are_one_line(base: Path, content: Any) -> None:
    doit(base, check=True)
    _damage(base, content)
    one_line_error(doit(base), ".doit.db")


def test_a_digest_key_folder_leaves_listing_alone(base: Path) -> None:
    (base / "state/.digest-key").mkdir(parents=True)
    assert "dev" in facs(base, "list", check=True).stdout


def test_doit_dumpdb_prints_the_json_records(base: Path) -> None:
    doit(base, check=True)
    proc = doit(base, "dumpdb")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "build:dev/a.txt ->" in proc.stdout
    json.loads((base / ".doit.db").read_text())


# ------------------------------------------------------------ masking without a bounded history


def _diffs(root: Path, instance: str) -> str:
    """What ``facs plan --diff``, ``plan --json`` and ``sync --dry-run --diff`` print."""
    out = [facs(root, "plan", "--diff"), facs(root, "plan", "--json", "--diff"),
           facs(root, "sync", instance, "--dry-run", "--diff")]
    for proc in out:
        assert "Traceback" not in proc.stderr, proc.stderr
    return "".join(p.stdout + p.stderr for p in out)


def _synced(tmp_path: Path, **more: Any) -> Path:
    """test_sync's root (instance dev, ``etc/db.ini`` holds its password), synced
    to two local folders."""
    from test_sync import make_root

    root = make_root(tmp_path, {"url": f"file://{tmp_path}/dest/{{host}}"}, **more)
    facs(root, "sync", "dev", check=True)
    return root


@pytest.mark.slow
def test_a_removed_instance_s_values_are_masked_in_plan_and_sync_diffs(tmp_path: Path) -> None:
    root = _synced(tmp_path)
    secret = (root / "BUILD/dev/etc/db.ini").read_text().split("= ")[1].strip()
    # the instance is renamed, its build folder too: family dev has no definition now
    (root / "define/dev.json").rename(root / "define/new.json")
    (root / "BUILD/dev").rename(root / "BUILD/new")
    plan = facs(root, "plan", "--diff").stdout + facs(root, "plan", "--json", "--diff").stdout
    assert "BUILD/new/etc/db.ini" in plan and secret not in plan, plan
    doit(root, check=True)
    old = (tmp_path / "dest/h1/etc/db.ini").read_bytes()
    for host in ("h1", "h2"):  # handed over to the new instance, as the refusal says
        (tmp_path / "dest" / host / ".facsimile/manifest.json").unlink()
    facs(root, "sync", "new", check=True)
    # the old file, from a backup, with a line of its own
    (tmp_path / "dest/h1/etc/db.ini").write_bytes(old + b"restored\n")
    out = _diffs(root, "new")
    assert "-restored" in out and " password = ********" in out, out
    assert secret not in out, out


@pytest.mark.slow
def test_a_value_rotated_five_times_is_masked_in_every_diff(tmp_path: Path) -> None:
    root = _synced(tmp_path)
    first = (root / "BUILD/dev/etc/db.ini").read_text().split("= ")[1].strip()
    for _ in range(5):
        facs(root, "state", "rotate", "dev", "db", check=True)
    state = (root / "state/dev/state.json").read_text()
    assert first not in state  # only three replaced values are kept in clear
    # a new line: the old one is no pattern of the new rendering
    write_tree(root, {"tmpl/_ALL_/etc/db.ini": "[db]\npass: {{ module.db.password }}\n"})
    out = _diffs(root, "dev")
    assert "-password = ********" in out, out
    assert first not in out, out
    doit(root, check=True)
    out = facs(root, "sync", "dev", "--dry-run", "--diff").stdout
    assert "-password = ********" in out and first not in out, out


@pytest.mark.slow
def test_a_short_id_is_masked_where_it_is_a_value(tmp_path: Path) -> None:
    root = _synced(tmp_path, generate={"node": "id"})
    write_tree(root, {"tmpl/_ALL_/etc/node.ini": "node_id = {{ state.node }}\nreplicas = 7\n"})
    doit(root, check=True)
    facs(root, "sync", "dev", check=True)
    node = json.loads((root / "state/dev/state.json").read_text())["generate"]["node"]["value"]
    assert (root / "BUILD/dev/etc/node.ini").read_text().startswith(f"node_id = {node}\n")
    facs(root, "state", "rotate", "dev", "node", check=True)
    write_tree(root, {"tmpl/_ALL_/etc/node.ini": "node: {{ state.node }}\nreplicas = 8\n"})
    out = _diffs(root, "dev")
    assert "-node_id = ********" in out and "+node: ********" in out, out
    assert f"node_id = {node}" not in out, out
    assert "-replicas = 7" in out and "+replicas = 8" in out, out  # no value of state
    doit(root, check=True)
    out = facs(root, "sync", "dev", "--dry-run", "--diff").stdout
    assert "-node_id = ********" in out and f"node_id = {node}" not in out, out


# ------------------------------------------------------------ the JSON caches of .facsimile/


def _cache_body(path: Path) -> dict[str, Any]:
    """A cache's JSON, after its HMAC line."""
    text = path.read_text()
    return json.loads(text if text.startswith("{") else text.split("\n", 1)[1])


def _craft(path: Path, doc: dict[str, Any], how: str) -> None:
    """Write ``doc`` as the cache: as plain JSON, or under the HMAC line it had."""
    body = json.dumps(doc, sort_keys=True)
    mac = path.read_text().split("\n", 1)[0] if how == "old mac" else None
    path.write_text(body if mac is None or mac.startswith("{") else f"{mac}\n{body}")


@pytest.mark.parametrize("how", ["plain", "old mac"])
def test_a_crafted_verified_cache_skips_no_mode_check(base: Path, how: str) -> None:
    from facsimile.build.modes import modes_digest

    doit(base, check=True)
    doit(base, check=True)  # a no-op: every output of dev is verified
    modes = {"a.txt": "0640"}
    write_tree(base, {"define/dev.json": {"modes": modes}})
    cache = base / ".facsimile/verified.json"
    # what the check would note once every output is found up to date under these modes
    _craft(cache, {**_cache_body(cache), "dev|modes": modes_digest(modes)}, how)
    doit(base, check=True)
    assert (base / "BUILD/dev/a.txt").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("how", ["plain", "old mac"])
def test_a_crafted_state_cache_cannot_hide_a_rotation(base: Path, how: str) -> None:
    write_tree(base, {"define/facsimile.json": {"name": "demo", "generate": {"tok": "token"}},
                      "tmpl/_ALL_/a.txt.j2": "{{ state.tok }}\n"})
    doit(base, check=True)
    doit(base, check=True)  # a no-op: the family's state digest is cached
    cache, state = base / ".facsimile/state.json", base / "state/dev/state.json"
    before, doc = (base / "BUILD/dev/a.txt").read_text(), _cache_body(cache)
    facs(base, "state", "rotate", "dev", "tok", check=True)
    st = state.stat()
    # the rotated file's stamp, with the digest of the state before it
    doc["dev"] = [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, *doc["dev"][-2:]]
    _craft(cache, doc, how)
    assert facs(base, "plan").returncode == 2
    doit(base, check=True)
    assert (base / "BUILD/dev/a.txt").read_text() != before
