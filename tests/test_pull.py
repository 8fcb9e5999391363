"""facs publish and facs pull through a real folder: signed, content-addressed bundles,
secrets sealed to each host's ssh key, one GET for a pull with nothing to do."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, facs
from pullworld import Counting, World, copy_store, keypair, tree

from facsimile.errors import SyncError
from facsimile.pull import sign


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("pull"))


def test_publish_writes_signed_content_addressed_bundles_without_a_secret(
        world: World) -> None:
    """Blobs are named by their sha256, one manifest per target and per host, each
    signed; the secret is nowhere in the store in the clear."""
    store = world.store
    rels = sorted(p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file())
    assert {"prod/app/manifest.json", "prod/app/hosts/a1/manifest.json",
            "prod/app/hosts/a2/manifest.json", "prod/refs.json"} <= set(rels)
    for p in (store / "blobs").iterdir():
        assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name
    secret = world.secret().encode()
    assert not any(secret in (store / r).read_bytes() for r in rels)
    doc = json.loads((store / "prod/app/hosts/a1/manifest.json").read_text())
    payload = doc["payload"]
    assert doc["signature"]["alg"] == "ed25519" and payload["serial"] >= 1
    assert payload["files"]["hosts/a1/node.conf"]["encrypted"] is True
    assert payload["files"]["hosts/a1/id.conf"]["encrypted"] is False
    assert "hosts/a2/node.conf" not in payload["files"]
    shared = json.loads((store / "prod/app/manifest.json").read_text())["payload"]["files"]
    assert sorted(shared) == ["etc/app.ini", "etc/plain.conf"]
    assert shared["etc/app.ini"]["encrypted"] and shared["etc/app.ini"]["mode"] == 0o600


def test_publishing_again_writes_nothing_or_only_new_blobs_and_a_new_serial(
        world: World, tmp_path: Path) -> None:
    """Nothing changed: nothing written. A new signing key: a new serial, the plain
    files' blobs kept."""
    store = copy_store(world, tmp_path)
    before = json.loads((store / "prod/app/manifest.json").read_text())["payload"]
    out = world.publish("--no-build", store=store)
    assert f"publish prod: nothing changed since serial {before['serial']}" in out
    sign.keygen(tmp_path / "new.key")
    out = facs(world.root, "publish", "prod", "--to", str(store), "--no-build",
               "--sign-key", str(tmp_path / "new.key"), check=True).stdout
    after = json.loads((store / "prod/app/manifest.json").read_text())["payload"]
    assert " 3 new blob(s)" in out  # the secrets sealed again: nothing of another key kept
    assert after["serial"] == before["serial"] + 1
    assert after["files"]["etc/plain.conf"] == before["files"]["etc/plain.conf"]


def test_two_hosts_of_a_target_get_the_shared_files_and_only_their_own(
        world: World, tmp_path: Path) -> None:
    code1, _ = world.pull(tmp_path / "a1", "a1")
    code2, _ = world.pull(tmp_path / "a2", "a2")
    assert code1 == code2 == 0
    a1, a2 = tree(tmp_path / "a1"), tree(tmp_path / "a2")
    assert sorted(a1) == ["etc/app.ini", "etc/plain.conf", "hosts/a1/id.conf",
                          "hosts/a1/node.conf"]
    assert sorted(a2) == ["etc/app.ini", "etc/plain.conf", "hosts/a2/id.conf",
                          "hosts/a2/node.conf"]
    assert a1["etc/app.ini"] == a2["etc/app.ini"] == f"secret = {world.secret()}\n".encode()
    assert a1["hosts/a1/node.conf"] == f"a1 {world.secret()}\n".encode()
    assert (tmp_path / "a1/etc/app.ini").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "a1/etc/plain.conf").stat().st_mode & 0o777 == 0o644


def test_another_hosts_key_cannot_open_a_hosts_secret_and_nothing_is_written(
        world: World, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with pytest.raises(SyncError) as err:
        world.pull(dest, "a1", identity=world.a2_key)
    text = str(err.value)
    assert "hosts/a1/node.conf is encrypted to ssh-ed25519" in text
    assert "nothing was changed" in text and "\n" not in text
    assert tree(dest) == {} and not list(dest.rglob("*.facsimile-pull"))


def test_a_no_op_pull_is_one_read_and_no_listing(world: World, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    world.pull(dest)
    store = Counting(str(world.store))
    code, lines = world.pull(dest, store=store)
    assert code == 0 and lines[-1].endswith("up to date (4 file(s))")
    assert store.reads == ["prod/app/hosts/a1/manifest.json"] and store.lists == 0


def test_a_change_fetches_only_its_blob_deletes_only_what_pull_wrote_and_runs_postcmd(
        world: World, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(world.root, root)
    store = copy_store(world, tmp_path)
    dest = tmp_path / "host" / "dest"
    world.pull(dest, store=store)
    assert (tmp_path / "host/reloads").read_text() == "reloaded\n"
    (dest / "etc/mine.conf").write_text("not facsimile's\n")
    (root / "tmpl/_ALL_/etc/plain.conf.j2").write_text("name = {{ instance.name }} v2\n")
    (root / "tmpl/_ALL_/hosts/{host}/id.conf.j2").unlink()
    world.publish(root=root, store=store)
    counting = Counting(f"file://{store}")
    code, lines = world.pull(dest, store=counting)
    assert code == 0
    blob = json.loads((store / "prod/app/hosts/a1/manifest.json").read_text())[
        "payload"]["files"]["etc/plain.conf"]["sha256"]
    assert counting.reads == ["prod/app/hosts/a1/manifest.json", f"blobs/{blob}"]
    assert (dest / "etc/plain.conf").read_text() == "name = prod v2\n"
    assert not (dest / "hosts/a1/id.conf").exists()
    assert (dest / "etc/mine.conf").read_text() == "not facsimile's\n"
    assert "1 put, 0 mode fixed, 1 deleted, 2 unchanged" in lines[-1]
    assert (tmp_path / "host/reloads").read_text() == "reloaded\nreloaded\n"
    world.pull(dest, store=store)  # nothing changed: no postcmd
    assert (tmp_path / "host/reloads").read_text() == "reloaded\nreloaded\n"


def test_a_file_changed_on_the_host_is_put_back(world: World, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    world.pull(dest)
    (dest / "etc/plain.conf").write_text("edited\n")
    os.chmod(dest / "etc/app.ini", 0o644)
    code, lines = world.pull(dest)
    assert (dest / "etc/plain.conf").read_text() == "name = prod\n"
    assert (dest / "etc/app.ini").stat().st_mode & 0o777 == 0o600
    assert code == 0 and "1 put, 1 mode fixed" in lines[-1]


@pytest.mark.slow
def test_keep_n_keeps_n_serials_and_collects_blobs_none_uses(world: World,
                                                            tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(world.root, root)
    store = copy_store(world, tmp_path)
    for n in range(3):
        (root / "tmpl/_ALL_/etc/plain.conf.j2").write_text(f"v{n}\n")
        out = world.publish("--keep", "2", root=root, store=store)
    assert "collected" in out and " 0 collected" not in out
    serials = sorted(int(p.stem) for p in (store / "prod/app/manifests").iterdir())
    assert len(serials) == 2
    used: set[str] = set()
    for m in store.glob("prod/**/*.json"):
        doc = json.loads(m.read_text())
        used |= {e["sha256"] for e in doc.get("payload", {}).get("files", {}).values()}
    assert {p.name for p in (store / "blobs").iterdir()} == used
    refs = json.loads((store / "prod/refs.json").read_text())["serials"]
    assert sorted(map(int, refs)) == serials


@pytest.mark.slow
def test_facs_pull_command_dry_run_every_and_exit_codes(world: World, tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    base = [sys.executable, "-m", "facsimile.cli", "pull", "--from", str(world.store),
            "--instance", "prod", "--target", "app", "--host", "a2", "--key",
            f"{world.sign_key}.pub", "--dest", str(dest), "--identity", str(world.a2_key)]

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([*base, *extra], capture_output=True, text=True, timeout=60)

    dry = run("--dry-run")
    assert dry.returncode == 2 and "would put 4" in dry.stdout and not dest.exists()
    loop = run("--every", "0.01", "--count", "2")
    assert loop.returncode == 0, loop.stderr
    assert loop.stdout.count("pull prod/app (a2):") == 2 and "up to date" in loop.stdout
    spread = run("--every", "0.01", "--splay", "0.05", "--count", "2")
    assert spread.returncode == 0 and spread.stdout.count("pull prod/app (a2):") == 2
    lone = run("--splay", "5")
    assert lone.returncode == 1 and "--splay SECONDS: 0 or more, with --every" in lone.stderr
    assert run("--dry-run").returncode == 0
    away = subprocess.run([*base[:5], str(tmp_path / "gone"), *base[6:], "--every", "0.01",
                           "--count", "2"], capture_output=True, text=True, timeout=60)
    assert away.returncode == 1 and away.stderr.count("facs: error: no manifest at") == 2
    bad = subprocess.run([*base[:-2], "--identity", str(world.a1_key), "--dest",
                          str(tmp_path / "other")], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("facs: error: hosts/a2/node.conf is encrypted to")


#: run ``facs pull`` with doit, jinja2 and jsonmerge unimportable (a host has none)
BLOCKED = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("doit", "jinja2", "jsonmerge"):
            raise ImportError(f"{name} is not installed on this host")
sys.meta_path.insert(0, Block())
from facsimile.cli import main
code = main(sys.argv[1:])
assert not [m for m in sys.modules if m.split(".")[0] in ("doit", "jinja2", "jsonmerge")]
sys.exit(code)
"""


def test_facs_pull_runs_without_doit_jinja2_or_jsonmerge(world: World, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED, "pull", "--from", f"file://{world.store}",
         "--instance", "prod", "--target", "app", "--host", "a1", "--key", world.public,
         "--dest", str(tmp_path / "dest"), "--identity", str(world.a1_key)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(tree(tmp_path / "dest")) == 4


@pytest.mark.slow
def test_the_worked_example_publishes_prod_to_a_folder_and_one_host_pulls(
        tmp_path: Path) -> None:
    """The repository's example: prod published with the app hosts' ssh keys and a
    shared recipient; app1.prod pulls its files, its node.conf included."""
    root = tmp_path / "example"
    for part in ("define", "tmpl", "extra", "bench", "dodo.py"):
        src = REPO / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / part)
    key, pub = keypair(tmp_path, "app1.key")
    prod = json.loads((root / "define/prod.json").read_text())
    prod["targets"]["app"]["host_keys"] = {"app1.prod": pub}
    prod["targets"]["db"]["recipients"] = [keypair(tmp_path, "db.key")[1]]
    (root / "define/prod.json").write_text(json.dumps(prod))
    line = facs(root, "publish", "--keygen", str(tmp_path / "sign.key"), check=True).stdout
    facs(root, "publish", "prod", "--to", str(tmp_path / "bundles"), "--sign-key",
         str(tmp_path / "sign.key"), check=True)
    proc = facs(tmp_path, "pull", "--from", str(tmp_path / "bundles"), "--instance", "prod",
                "--target", "app", "--host", "app1.prod", "--key", line.strip(),
                "--dest", str(tmp_path / "app1"), "--identity", str(key), check=True)
    assert "pull prod/app (app1.prod): serial 1:" in proc.stdout
    got = tree(tmp_path / "app1")
    assert "hosts/app1.prod/node.conf" in got and "etc/app/app.ini" in got
    assert not any(r.startswith("hosts/app2.prod") for r in got)


@pytest.mark.slow
def test_instances_share_a_store_and_collecting_one_keeps_the_others_blobs(
        world: World, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(world.root, root)
    shutil.copy(root / "define/prod.json", root / "define/prod.eu.json")  # a subinstance
    (root / "define/prod.eu.json").write_text('{"targets": {"app": {"hosts": ["e1"], '
                                              '"recipients": ["' + world.public.replace(
                                                  " facsimile-publish", "") + '"]}}}')
    store = tmp_path / "store"
    world.publish(root=root, store=store)
    facs(root, "publish", "prod.eu", "--to", str(store), "--sign-key", str(world.sign_key),
         check=True)
    eu = json.loads((store / "prod.eu/app/hosts/e1/manifest.json").read_text())["payload"]
    (root / "tmpl/_ALL_/etc/plain.conf.j2").write_text("prod only now\n")
    (root / "tmpl/prod.eu/etc").mkdir(parents=True)
    (root / "tmpl/prod.eu/etc/plain.conf.j2").write_text("name = {{ instance.name }}\n")
    out = world.publish("--keep", "1", root=root, store=store)
    assert " 0 collected" not in out  # prod's old plain.conf went
    assert all((store / "blobs" / e["sha256"]).exists() for e in eu["files"].values())
    assert (store / "prod.eu/app/hosts/e1/manifest.json").exists()


def test_keys_are_read_from_a_file_a_line_base64_or_pem_and_others_refused(
        tmp_path: Path) -> None:
    import base64

    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    line = sign.keygen(tmp_path / "k")
    key = sign.load_public(line)
    raw = base64.b64encode(key.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw)).decode()
    pem = key.public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo).decode()
    for form in (f"{tmp_path}/k.pub", line, raw, pem):
        assert sign.fingerprint(sign.load_public(form)) == sign.fingerprint(key)
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    with pytest.raises(SyncError, match="a key is already there; it was not replaced"):
        sign.keygen(tmp_path / "k")
    pkcs8 = tmp_path / "pkcs8.pem"  # a PEM private key signs as well as the OpenSSH one
    pkcs8.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption()))
    assert sign.load_private(pkcs8) and sign.load_private(tmp_path / "k")
    with pytest.raises(SyncError, match="cannot read the public key: No such file"):
        sign.load_public(f"{tmp_path}/missing.pub")
    rsa = tmp_path / "rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "1024", "-N", "", "-f", str(rsa)],
                   check=True)
    with pytest.raises(SyncError, match="is a RSAPublicKey, not an Ed25519 key"):
        sign.load_public(f"{rsa}.pub")
    with pytest.raises(SyncError, match="not an Ed25519 key"):
        sign.load_private(rsa)


@pytest.mark.slow
def test_the_signing_key_may_be_given_as_its_text_in_the_environment(
        world: World, tmp_path: Path) -> None:
    from conftest import run

    store = copy_store(world, tmp_path)
    key = world.sign_key.read_text()
    proc = run([sys.executable, "-m", "facsimile.cli", "publish", "prod", "--to", str(store),
                "--no-build"], cwd=world.root, env={"FACSIMILE_SIGNING_KEY": key})
    assert proc.returncode == 0 and "nothing changed since serial" in proc.stdout
    proc = run([sys.executable, "-m", "facsimile.cli", "publish", "prod", "--to", str(store),
                "--no-build"], cwd=world.root, env={"FACSIMILE_SIGNING_KEY": key[:60]})
    assert proc.returncode == 1 and key[40:60] not in proc.stderr
    assert "FACSIMILE_SIGNING_KEY: not an unencrypted Ed25519 private key" in proc.stderr


@pytest.mark.slow
def test_json_documents_of_publish_and_pull(world: World, tmp_path: Path) -> None:
    store = copy_store(world, tmp_path)
    proc = facs(world.root, "publish", "prod", "--to", str(store), "--no-build", "--json",
                "--sign-key", str(world.sign_key), check=True)
    doc = json.loads(proc.stdout)
    assert doc["format"] == 1 and doc["changed"] is False and doc["manifests"] == 3
    assert "nothing changed" in proc.stderr
    base = ["pull", "--from", str(store), "--instance", "prod", "--target", "app",
            "--host", "a1", "--key", world.public, "--dest", str(tmp_path / "d"), "--json"]
    proc = facs(tmp_path, *base, "--dry-run", "--identity", str(world.a1_key))
    doc = json.loads(proc.stdout)
    assert proc.returncode == 2 and doc["ok"] and doc["exit"] == 2
    assert sorted(doc["puts"]) == ["etc/app.ini", "etc/plain.conf", "hosts/a1/id.conf",
                                   "hosts/a1/node.conf"] and doc["unchanged"] == 0
    proc = facs(tmp_path, *base, "--identity", str(world.a2_key))
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1 and not doc["ok"] and "is encrypted to" in doc["errors"][0]


def test_splay_adds_a_random_share_to_each_wait() -> None:
    import random

    from facsimile.cli.pull import wait

    rng = random.Random(7)
    waits = [wait(10.0, 5.0, rng) for _ in range(50)]
    assert all(10.0 <= w <= 15.0 for w in waits)
    assert len(set(waits)) == 50 and max(waits) - min(waits) > 2.5  # drawn anew each time
    assert wait(10.0, 0.0, rng) == 10.0


def store_snapshot(store: Path) -> dict[str, tuple[int, bytes]]:
    """Every file of a store folder with its mtime and bytes (absent: empty)."""
    if not store.exists():
        return {}
    return {p.relative_to(store).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(store.rglob("*")) if p.is_file()}


def manifests(store: Path) -> dict[str, dict]:
    return {p.parent.relative_to(store / "prod").as_posix():
            json.loads(p.read_text())["payload"]["files"]
            for p in store.glob("prod/app/**/manifest.json")}


def test_publish_dry_run_says_what_each_manifest_would_change_and_writes_nothing(
        world: World, tmp_path: Path) -> None:
    """A dry run lists each file a publish would put or drop, manifest by manifest;
    the store (a new one too) and the state are left as they were; exit 2 when
    something would change, 0 when nothing would; the publish then does what it said."""
    root = tmp_path / "root"
    shutil.copytree(world.root, root, symlinks=True)
    store = copy_store(world, tmp_path)
    base = ["publish", "prod", "--sign-key", str(world.sign_key)]
    state = (root / "state/prod/state.json").read_bytes()

    empty = tmp_path / "empty"
    proc = facs(root, *base, "--to", str(empty), "--dry-run", "--no-build")
    assert proc.returncode == 2, proc.stderr
    assert "  prod/app (a1): put hosts/a1/node.conf (new)" in proc.stdout
    assert "  prod/app: put etc/plain.conf (new)" in proc.stdout
    assert "would change 3 of 3 manifest(s)" in proc.stdout and "nothing was written" in proc.stdout
    assert not empty.exists()

    proc = facs(root, *base, "--to", str(store), "--dry-run", "--no-build")
    assert proc.returncode == 0 and "dry run publish prod: nothing changed since serial" \
        in proc.stdout, proc.stdout + proc.stderr

    tmpl = root / "tmpl/_ALL_/etc/plain.conf.j2"
    tmpl.write_text(tmpl.read_text() + "more = 1\n")
    (root / "tmpl/_ALL_/hosts/{host}/id.conf.j2").unlink()
    before = store_snapshot(store)
    proc = facs(root, *base, "--to", str(store), "--dry-run")  # BUILD/ as it is
    assert proc.returncode == 0 and "note: BUILD/prod is not up to date (3 to build or " \
        "delete)" in proc.stdout and "nothing changed since serial" in proc.stdout, proc.stdout
    facs(root, "build", "prod", check=True)
    proc = facs(root, *base, "--to", str(store), "--dry-run", "--json")
    assert proc.returncode == 2, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["dry_run"] is True and doc["changed"] is True and doc["new_blobs"] == 1
    assert doc["changes"] == {
        "app": [{"do": "put", "path": "etc/plain.conf", "why": "changed"}],
        "app/hosts/a1": [{"do": "put", "path": "etc/plain.conf", "why": "changed"},
                         {"do": "drop", "path": "hosts/a1/id.conf", "why": ""}],
        "app/hosts/a2": [{"do": "put", "path": "etc/plain.conf", "why": "changed"},
                         {"do": "drop", "path": "hosts/a2/id.conf", "why": ""}]}
    assert "  prod/app (a2): drop hosts/a2/id.conf" in proc.stderr
    assert store_snapshot(store) == before  # nothing written to the store
    assert (root / "state/prod/state.json").read_bytes() == state
    secret = world.secret(root).encode()
    assert secret not in (proc.stdout + proc.stderr).encode()

    old = manifests(store)
    proc = facs(root, *base, "--to", str(store), "--json", check=True)  # builds first
    assert json.loads(proc.stdout)["serial"] == doc["serial"]  # doit's lines: on stderr
    assert "up to date" in proc.stderr
    assert f"serial {doc['serial']}, 3 manifest(s), 1 new blob(s)" in proc.stderr
    new = manifests(store)
    said = {f: {c["path"] for c in cs} for f, cs in doc["changes"].items()}
    done = {f: {r for r in {*old[f], *new[f]} if old[f].get(r) != new[f].get(r)}
            for f in new}
    assert said == {f: rels for f, rels in done.items() if rels}


def test_publish_dry_run_names_a_secret_changed_and_a_host_removed(
        world: World, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(world.root, root, symlinks=True)
    store = copy_store(world, tmp_path)
    assert facs(root, "state", "rotate", "prod", "state.secret_key").returncode == 0
    prod = json.loads((root / "define/prod.json").read_text())
    prod["targets"]["app"]["hosts"] = ["a1"]
    (root / "define/prod.json").write_text(json.dumps(prod))
    facs(root, "build", "prod", check=True)
    proc = facs(root, "publish", "prod", "--to", str(store), "--sign-key",
                str(world.sign_key), "--dry-run")
    assert proc.returncode == 2, proc.stderr
    assert "  prod/app: put etc/app.ini (changed)" in proc.stdout
    assert "  prod/app (a1): put hosts/a1/node.conf (changed)" in proc.stdout
    assert "  prod/app/hosts/a2: manifest removed (its target or host is gone)" in proc.stdout
    assert "would change 2 of 2 manifest(s) and remove 1, 2 new blob(s)" in proc.stdout
    assert world.secret(root).encode() not in proc.stdout.encode()
