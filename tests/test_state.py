"""Generated state through the real `facs` command: made once, kept, shared, safe."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import DODO, facs, run, write_tree

GEN = {"pw": "password", "pw40": "password:40", "tok": "token", "tok8": "token:8",
       "cluster": "uuid", "node": "id", "node2": "id"}

TREE = {
    "define/facsimile.json": {"name": "p", "generate": GEN},
    "define/modules.json": [{"name": "app"}, {"name": "db", "username": "dbuser"}],
    "define/prod.json": {},
    "define/prod.ch1.json": {"generate": {"ch1_only": "token:16", "ch1_id": "id"}},
    "define/dev.json": {},
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    write_tree(tmp_path, TREE)
    return tmp_path


def state_file(root: Path, family: str) -> Path:
    return root / "state" / family / "state.json"


def values(root: Path, inst: str) -> dict[str, str]:
    """``{path: value}`` from `facs state show INST --reveal`."""
    out = facs(root, "state", "show", inst, "--reveal", check=True).stdout
    result = {}
    for line in out.splitlines():
        if line.startswith("#"):
            continue
        path, _kind, value = line.split("  ", 2)
        result[path] = value
    return result


def test_kinds_have_their_formats(root: Path) -> None:
    v = values(root, "prod")
    assert re.fullmatch(r"[A-Za-z0-9]{24}", v["state.pw"])
    assert re.fullmatch(r"[A-Za-z0-9]{40}", v["state.pw40"])
    assert re.fullmatch(r"[0-9a-f]{64}", v["state.tok"])
    assert re.fullmatch(r"[0-9a-f]{16}", v["state.tok8"])
    assert re.fullmatch(r"[0-9a-f]{32}", v["state.ch1_only"])  # the subinstance's own entry
    assert uuid.UUID(v["state.cluster"]).version == 4
    ids = [int(v[k]) for k in ("state.node", "state.node2", "state.ch1_id")]
    assert len(set(ids)) == 3 and all(0 < i < 256 for i in ids)
    for m in ("app", "db"):
        assert re.fullmatch(r"[A-Za-z0-9]{24}", v[f"module.{m}.password"])
    assert v["module.app.password"] != v["module.db.password"]
    assert len({v["state.pw"], v["state.pw40"], v["module.app.password"]}) == 3
    f = state_file(root, "prod")
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    stored = json.loads(f.read_text())
    assert stored["generate"]["tok8"] == {"kind": "token:8", "value": v["state.tok8"]}
    assert stored["modules"]["app"]["value"] == v["module.app.password"]
    # usernames default to the module's name; the template context has them with the password
    mods = json.loads(facs(root, "show", "prod", "--json", "--reveal", check=True).stdout)["module"]
    assert mods["app"]["username"] == "app" and mods["db"]["username"] == "dbuser"
    assert mods["app"]["password"] == v["module.app.password"]


@pytest.mark.slow
def test_values_are_kept_across_runs_and_rebuilds(root: Path) -> None:
    write_tree(root, {"dodo.py": DODO, "tmpl/_ALL_/a.txt": "{{ module.app.password }}\n"})
    first = values(root, "prod")
    before = state_file(root, "prod").read_bytes()
    assert values(root, "prod") == first
    facs(root, "build", check=True)
    assert (root / "BUILD/prod/a.txt").read_text() == first["module.app.password"] + "\n"
    assert state_file(root, "prod").read_bytes() == before  # nothing new: not rewritten
    dev = values(root, "dev")
    # delete everything but state/, then write the same definitions again
    for entry in root.iterdir():
        if entry.name != "state":
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    write_tree(root, TREE)
    assert values(root, "prod") == first and values(root, "dev") == dev
    assert state_file(root, "prod").read_bytes() == before


def test_subinstance_shares_its_family_state(root: Path) -> None:
    sub = values(root, "prod.ch1")
    parent = values(root, "prod")
    assert sub == parent  # one family, one state, the same values
    assert sub["module.app.password"] == parent["module.app.password"]
    assert not (root / "state" / "prod.ch1").exists()
    dev = values(root, "dev")
    assert dev["module.app.password"] != parent["module.app.password"]
    assert "state.ch1_only" not in dev


@pytest.mark.slow
def test_read_only_commands_never_write_state(root: Path) -> None:
    facs(root, "list", check=True)
    out = facs(root, "show", "prod", check=True).stdout
    assert "# not generated yet (a build makes them): module.app.password" in out
    # values that do not exist yet are not made up: the same answer on every run
    docs = [facs(root, "show", "prod", "--json", "--reveal", check=True).stdout
            for _ in range(2)]
    assert docs[0] == docs[1]
    doc = json.loads(docs[0])
    assert doc["state"]["cluster"] == doc["module"]["app"]["password"] == "<not generated yet>"
    facs(root, "show", "prod.ch1", "--explain", "state.node", check=True)
    facs(root, "plan", "prod")
    assert not (root / "state").exists()


def test_secrets_are_masked_unless_revealed(root: Path) -> None:
    v = values(root, "prod")
    masked = facs(root, "state", "show", "prod", check=True).stdout
    shown = facs(root, "show", "prod", check=True).stdout
    shown_json = facs(root, "show", "prod", "--json", check=True).stdout
    explained = facs(root, "show", "prod", "--explain", "module.app.password", check=True).stdout
    secrets = [v[k] for k in ("state.pw", "state.pw40", "state.tok", "state.tok8",
                              "state.ch1_only", "module.app.password", "module.db.password")]
    for out in (masked, shown, shown_json, explained):
        assert "********" in out
        for secret in secrets:
            assert secret not in out
    # uuids and ids are not secret
    assert v["state.cluster"] in masked and json.loads(shown_json)["state"]["cluster"] == v[
        "state.cluster"]
    revealed = facs(root, "show", "prod", "--reveal", check=True).stdout
    for secret in secrets:
        assert secret in revealed


@pytest.mark.slow
def test_rotate_changes_exactly_that_value(root: Path) -> None:
    before = values(root, "prod")
    stored = json.loads(state_file(root, "prod").read_text())
    out = facs(root, "state", "rotate", "prod", "tok", check=True).stdout
    assert "rotated state.tok of family prod" in out
    after = values(root, "prod")
    assert after["state.tok"] != before["state.tok"]
    assert re.fullmatch(r"[0-9a-f]{64}", after["state.tok"])
    assert {k: v for k, v in after.items() if k != "state.tok"} == {
        k: v for k, v in before.items() if k != "state.tok"}
    now = json.loads(state_file(root, "prod").read_text())
    now["generate"].pop("tok")
    stored["generate"].pop("tok")
    assert now == stored
    assert stat.S_IMODE(state_file(root, "prod").stat().st_mode) == 0o600
    # a module's password, through a subinstance name (same family)
    facs(root, "state", "rotate", "prod.ch1", "app", check=True)
    again = values(root, "prod")
    assert again["module.app.password"] != before["module.app.password"]
    assert again["module.db.password"] == before["module.db.password"]
    assert values(root, "dev")["module.app.password"] != again["module.app.password"]
    # ids are never reused: a rotated id is a new number, and later ids are new too
    facs(root, "state", "rotate", "prod", "node", check=True)
    used = {int(before[k]) for k in ("state.node", "state.node2", "state.ch1_id")}
    node = int(values(root, "prod")["state.node"])
    assert node not in used
    write_tree(root, {"define/prod.json": {"generate": {"late": "id"}}})
    late = int(values(root, "prod")["state.late"])
    assert late not in used | {node}
    err = facs(root, "state", "rotate", "prod", "nope")
    assert err.returncode == 1 and "'nope' is not a generate entry or module of prod" in err.stderr
    assert err.stderr.count("\n") == 1


def test_ids_are_unique_even_after_next_id_was_edited(root: Path) -> None:
    v = values(root, "prod")
    f = state_file(root, "prod")
    data = json.loads(f.read_text())
    data["next_id"] = 1  # edited by hand, or restored from an older copy
    f.write_text(json.dumps(data))
    write_tree(root, {"define/prod.json": {"generate": {"late": "id"}}})
    given = {int(v[k]) for k in ("state.node", "state.node2", "state.ch1_id")}
    assert int(values(root, "prod")["state.late"]) not in given


def _race(root: Path, hold_lock: bool) -> list[str]:
    """Start eight `facs state show --reveal` at once (prod and prod.b); their outputs."""
    facs(root, "list", check=True)  # a warm model cache: the processes start alike
    cmd = [sys.executable, "-m", "facsimile.cli", "state", "show", "--reveal"]
    lock = None
    if hold_lock:  # the lock state.py documents: every process must wait for it
        (root / "state/prod").mkdir(parents=True)
        lock = os.open(root / "state/prod/.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX)
    procs = [subprocess.Popen([*cmd, name], cwd=root, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for name in ("prod", "prod.b") * 4]
    if lock is not None:
        time.sleep(1.0)
        assert all(p.poll() is None for p in procs)
        assert not state_file(root, "prod").exists()
        os.close(lock)
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    return [o for o, _ in outs]


@pytest.mark.parametrize("hold_lock", [False, True], ids=["free", "lock held"])
@pytest.mark.slow
def test_processes_at_once_see_the_same_values(tmp_path: Path, hold_lock: bool) -> None:
    many = {f"k{i}": "token:16" for i in range(60)} | {f"i{i}": "id" for i in range(20)}
    write_tree(tmp_path, {"define/facsimile.json": {"name": "p", "generate": many},
                          "define/modules.json": [{"name": f"m{i}"} for i in range(20)],
                          "define/prod.json": {}, "define/prod.b.json": {}})
    outs = _race(tmp_path, hold_lock)
    seen = [sorted(line for line in o.splitlines() if not line.startswith("#")) for o in outs]
    assert len(seen[0]) == 100 and all(s == seen[0] for s in seen)
    stored = json.loads(state_file(tmp_path, "prod").read_text())
    assert len(stored["generate"]) == 80 and len(stored["modules"]) == 20
    lines = sorted([f"state.{k}  {e['kind']}  {e['value']}" for k, e in stored["generate"].items()]
                   + [f"module.{k}.password  password  {e['value']}"
                      for k, e in stored["modules"].items()])
    assert lines == seen[0]
    ids = [e["value"] for e in stored["generate"].values() if e["kind"] == "id"]
    assert sorted(ids) == list(range(1, 21))
    assert sorted(p.name for p in (tmp_path / "state/prod").iterdir()) == [".lock", "state.json"]


@pytest.mark.parametrize("damage", ["truncated", "not json", "folder"])
@pytest.mark.slow
def test_bad_state_is_an_error_and_left_alone(root: Path, damage: str) -> None:
    values(root, "prod")
    f = state_file(root, "prod")
    if damage == "truncated":
        f.write_bytes(f.read_bytes()[:40])
    elif damage == "not json":
        f.write_text("this is not json\n")
    else:
        f.unlink()
        f.mkdir()
        (f / "keep").write_text("x")
    before = None if damage == "folder" else f.read_bytes()
    write_tree(root, {"dodo.py": DODO, "tmpl/_ALL_/a.txt": "{{ module.app.password }}\n"})
    for args in (["state", "show", "prod"], ["state", "show", "prod.ch1"],
                 ["state", "rotate", "prod", "tok"], ["build", "prod"]):
        proc = facs(root, *args)
        assert proc.returncode != 0, args
        if args[0] == "state":
            assert proc.stderr.startswith("facs: error: state/prod/state.json"), proc.stderr
            assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
        else:
            assert "state/prod/state.json" in proc.stderr + proc.stdout
        if before is None:
            assert f.is_dir() and (f / "keep").read_text() == "x"
        else:
            assert f.read_bytes() == before
    assert not (root / "BUILD/prod/a.txt").exists()
    assert sorted(p.name for p in f.parent.iterdir()) == sorted([".lock", "state.json"])


DAMAGED = [
    (("modules", "app"), {"kind": 5, "value": "KEEPME12345"},
     "state/prod/state.json at /modules/app/kind: state entry has kind 5, not one of"),
    (("modules", "app"), {"kind": "pasword", "value": "KEEPME12345"},
     "state/prod/state.json at /modules/app/kind: state entry has kind \"pasword\""),
    (("modules", "app"), {"kind": "password", "value": None},
     "state/prod/state.json at /modules/app/value: state entry's value is null, not the "
     "string its kind 'password' holds"),
    (("generate", "tok"), {"kind": "token", "value": {"v": "KEEPME12345"}},
     "state/prod/state.json at /generate/tok/value: state entry's value is an object"),
    (("generate", "cluster"), {"kind": "uuid", "value": 7},
     "state/prod/state.json at /generate/cluster/value: state entry's value is a number"),
    (("generate", "node"), {"kind": "id", "value": "3"},
     "state/prod/state.json at /generate/node/value: state entry's value is a string, not "
     "the whole number its kind 'id' holds"),
    (("generate", "node"), {"kind": "id", "value": True},
     "state/prod/state.json at /generate/node/value: state entry's value is a boolean"),
    (("format",), 99,
     "state/prod/state.json at /format: state format 99 is not one this facsimile reads (1)"),
    (("format",), "1", "state/prod/state.json at /format: state format \"1\" is not one"),
    (("daemons",), [], "state/prod/state.json: state has an unexpected shape"),
]


@pytest.mark.parametrize(("where", "entry", "expected"), DAMAGED,
                         ids=[e[2].split(": ", 1)[0].split(" at ")[-1] + f"-{i}"
                              for i, e in enumerate(DAMAGED)])
@pytest.mark.slow
def test_damaged_entry_is_an_error_and_left_alone(root: Path, where: tuple[str, ...],
                                                  entry: object, expected: str) -> None:
    values(root, "prod")
    f = state_file(root, "prod")
    data = json.loads(f.read_text())
    node = data
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = entry
    f.write_text(json.dumps(data, indent=2) + "\n")
    os.utime(f, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    before = (f.read_bytes(), f.stat().st_mtime_ns)
    write_tree(root, {"dodo.py": DODO, "tmpl/_ALL_/a.txt": "{{ module.app.password }}\n"})
    for args in (["state", "show", "prod"], ["state", "show", "prod.ch1", "--reveal"],
                 ["state", "rotate", "prod", "tok"], ["show", "prod"], ["build", "prod"]):
        proc = facs(root, *args)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        if args[0] != "build":
            assert proc.stderr.startswith(f"facs: error: {expected}"), proc.stderr
            assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
            assert "it was left as it is" in proc.stderr
            assert "KEEPME" not in proc.stdout + proc.stderr
        else:
            assert expected in proc.stdout + proc.stderr
        assert (f.read_bytes(), f.stat().st_mtime_ns) == before, args
    assert not (root / "BUILD/prod/a.txt").exists()
    assert sorted(p.name for p in f.parent.iterdir()) == [".lock", "state.json"]


@pytest.mark.parametrize("where", ["plain", "sealed", "remote"])
@pytest.mark.slow
def test_every_value_an_entry_had_is_kept_as_a_digest_never_as_a_value(
        tmp_path: Path, where: str) -> None:
    root, env = tmp_path / "p", {"FACSIMILE_IDENTITY": str(tmp_path / "id.txt")}
    config: dict = {}
    if where == "sealed":
        subprocess.run(["age-keygen", "-o", tmp_path / "id.txt"], check=True,
                       capture_output=True)
        public = subprocess.run(["age-keygen", "-y", tmp_path / "id.txt"], check=True,
                                capture_output=True, text=True).stdout.strip()
        config = {"state": {"recipients": [public]}}
    elif where == "remote":
        config = {"state": {"url": f"file://{tmp_path}/remote"}}
    write_tree(root, {"dodo.py": DODO, "define/dev.json": {},
                      "define/facsimile.json": {"name": "p", **config, "generate": {
                          "pw": "password:8", "node": "id"}},
                      "tmpl/_ALL_/a.ini": "pw = {{ state.pw }}\nnode = {{ state.node }}\n"})

    def cmd(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run([sys.executable, "-m", "facsimile.cli", *args], cwd=root, env=env,
                   check=check)

    cmd("build")
    had = [dict(line.split(" = ") for line in (root / "BUILD/dev/a.ini").read_text()
                .splitlines())]
    for _ in range(5):
        cmd("state", "rotate", "dev", "pw")
        cmd("state", "rotate", "dev", "node")
        shown = cmd("state", "show", "dev", "--reveal").stdout
        had.append({k: shown.split(f"state.{k}", 1)[1].split()[1] for k in ("pw", "node")})
    stored = (tmp_path / "remote" if where == "remote" else root / "state") / "dev/state.json"
    text = stored.read_text()
    assert not [h["pw"] for h in had[:2] if h["pw"] in text]  # beyond the three kept
    if where != "sealed":
        entries = json.loads(text)["generate"]
        for name in ("pw", "node"):
            seen = entries[name]["seen"]
            assert len(set(seen)) == 5 and all(re.fullmatch(r"[0-9a-f]{20}", d) for d in seen)
            assert not set(seen) & {h[name] for h in had}
        assert not [h["pw"] for h in had if h["pw"] in json.dumps(entries["pw"]["seen"])]
    # the first values, on a line the new template no longer makes
    write_tree(root, {"tmpl/_ALL_/a.ini": "[a]\npw: {{ state.pw }}\nnode: {{ state.node }}\n"})
    out = cmd("plan", "--diff", check=False)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "-pw = ********" in out.stdout and "-node = ********" in out.stdout, out.stdout
    changed = [ln for ln in out.stdout.splitlines() if ln[:1] in "+-" and ln[1:2] != ln[:1]]
    assert len(changed) == 5 and all(ln.endswith(("********", "[a]")) for ln in changed)


def test_seen_digests_made_with_the_local_key_are_still_known_and_kept(tmp_path: Path) -> None:
    """A document written before entries had a seen key: its digests were made with
    the clone's digest key; they stay known by it, and a rotation adds a seen key."""
    from facsimile.mask import state_values
    from facsimile.state.digest import digest_key, value_digest
    from facsimile.state.files import Local, StateStore
    from facsimile.state.kinds import Want
    from facsimile.state.store import State, rotate, write_state

    folder = tmp_path / "state"
    local = digest_key(folder, write=True)
    old = ["oldvalue1", "oldvalue2"]
    write_state(folder / "dev/state.json", {"format": 1, "next_id": 1, "modules": {},
                "generate": {"pw": {"kind": "password:9", "value": "nowvalue3", "rev": 3,
                                    "previous": ["oldvalue2"],
                                    "seen": [value_digest(v, local) for v in old]}}})

    def known(word: str, where: Path = folder) -> bool:
        store = StateStore(Local(where), key_dir=where)
        data, _ = store.read("dev")
        return state_values(State("dev", where, data, store=store)).known(word)

    assert known("oldvalue1") and not known("other")
    rotate(folder, "dev", [Want("generate", "pw", "password:9")], {"state.pw"})
    entry = json.loads((folder / "dev/state.json").read_text())["generate"]["pw"]
    assert re.fullmatch(r"[0-9a-f]{64}", entry["seen_key"])
    assert entry["seen"][:2] == [value_digest(v, local) for v in old]
    assert len(set(entry["seen"])) == 4 and not {*old, "nowvalue3"} & set(entry["seen"])
    assert known("oldvalue1") and known("oldvalue2") and known("nowvalue3")
    # a clone with another digest key knows what the entry's own key digested (the
    # values kept in clear left out)
    other = tmp_path / "other"
    write_state(other / "dev/state.json", {"format": 1, "next_id": 1, "modules": {},
                "generate": {"pw": {k: v for k, v in entry.items() if k != "previous"}}})
    digest_key(other, write=True)
    assert not known("oldvalue1", other)  # digested with the first clone's key only
    assert known("nowvalue3", other) and known("oldvalue2", other)
