"""Bad input to facs publish and facs pull: each refused in one line, nothing
half-written on the host, and the next pull repairs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DODO, facs, write_tree
from pullworld import A1, World, copy_store, resign, tree

from facsimile.errors import SyncError
from facsimile.pull import sign
from facsimile.pull.pull import Request, pull


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return World(tmp_path_factory.mktemp("pull"))


@pytest.mark.parametrize("damage, expect", [
    ("unsigned", "is not signed: refused"),
    ("tampered", "the signature does not verify with SHA256:"),
    ("other_key", "the signature does not verify with SHA256:"),
    ("truncated_manifest", "is not a facsimile manifest (damaged or truncated)"),
    ("other_scope", "is the manifest of prod/app host a2, not of prod/app (a1)"),
])
def test_a_bad_manifest_is_refused_in_one_line_and_nothing_is_written(
        world: World, tmp_path: Path, damage: str, expect: str) -> None:
    store = copy_store(world, tmp_path)
    path = store / A1
    doc = json.loads(path.read_text())
    if damage == "unsigned":
        del doc["signature"]
        path.write_text(json.dumps(doc))
    elif damage == "tampered":  # the mode of the secret opened up, signature kept
        doc["payload"]["files"]["etc/app.ini"]["mode"] = 0o644
        path.write_text(json.dumps(doc))
    elif damage == "other_key":
        other = tmp_path / "other.key"
        sign.keygen(other)
        resign(store, A1, other)
    elif damage == "truncated_manifest":
        path.write_bytes(path.read_bytes()[:200])
    else:
        shutil.copy(store / "prod/app/hosts/a2/manifest.json", path)
    dest = tmp_path / "dest"
    with pytest.raises(SyncError) as err:
        world.pull(dest, store=store)
    assert expect in str(err.value) and "\n" not in str(err.value)
    assert not dest.exists() or tree(dest) == {}
    shutil.copy(world.store / A1, path)  # the store repaired: the next pull works
    assert world.pull(dest, store=store)[0] == 0 and len(tree(dest)) == 4


def test_an_older_serial_or_another_lineage_is_refused_after_a_pull(
        world: World, tmp_path: Path) -> None:
    """A replayed older manifest (rollback) is refused; so is another lineage unless
    the host adopts it; the host keeps what it has."""
    store = copy_store(world, tmp_path)
    dest = tmp_path / "dest"
    world.pull(dest, store=store)
    had = tree(dest)
    payload = json.loads((store / A1).read_text())["payload"]
    resign(store, A1, world.sign_key, serial=payload["serial"] - 1)
    with pytest.raises(SyncError) as err:
        world.pull(dest, store=store)
    serial = payload["serial"]
    assert f"manifest serial {serial - 1} is older than the {serial} this host has" \
        in str(err.value)
    resign(store, A1, world.sign_key, serial=serial + 1, lineage="f" * 32)
    with pytest.raises(SyncError) as err:
        world.pull(dest, store=store)
    assert "is from state lineage ffffffff" in str(err.value)
    assert tree(dest) == had
    assert world.pull(dest, store=store, adopt_state=True)[0] == 0


def test_a_truncated_or_missing_blob_changes_nothing_and_the_next_pull_repairs(
        world: World, tmp_path: Path) -> None:
    store = copy_store(world, tmp_path)
    files = json.loads((store / A1).read_text())["payload"]["files"]
    blob = store / "blobs" / files["hosts/a1/id.conf"]["sha256"]
    good = blob.read_bytes()
    blob.write_bytes(good[:3])
    dest = tmp_path / "dest"
    with pytest.raises(SyncError) as err:
        world.pull(dest, store=store)
    assert "the blob of hosts/a1/id.conf is damaged (3 of" in str(err.value)
    assert tree(dest) == {} and not list(dest.rglob(".*.facsimile-pull"))
    blob.unlink()  # gone between the manifest and its fetch (a store half copied)
    with pytest.raises(SyncError) as err:
        world.pull(dest, store=store)
    assert "the blob of hosts/a1/id.conf is missing at file://" in str(err.value)
    blob.write_bytes(good)
    assert world.pull(dest, store=store)[0] == 0 and len(tree(dest)) == 4


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A folder on a 32 kB tmpfs of its own (a full disk), unmounted after."""
    where = tmp_path / "full"
    where.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a small tmpfs: {made.stderr.strip()}")
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_changes_nothing_and_the_next_pull_repairs(
        world: World, tmp_path: Path, small_disk: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(world.root, root)
    store = copy_store(world, tmp_path)
    (root / "extra/_ALL_/etc").mkdir(parents=True)
    (root / "extra/_ALL_/etc/big.bin").write_bytes(os.urandom(48_000))
    world.publish(root=root, store=store)
    dest = small_disk / "dest"
    with pytest.raises(SyncError) as err:
        world.pull(dest, store=store, state_dir=str(tmp_path / "records"))
    assert "no space left on the device writing" in str(err.value)
    assert "nothing was changed" in str(err.value)
    assert tree(dest) == {} and not (tmp_path / "records/prod.app.json").exists()
    subprocess.run(["mount", "-o", "remount,size=1m", str(small_disk)], check=True)
    code, _ = world.pull(dest, store=store, state_dir=str(tmp_path / "records"))
    assert code == 0 and len(tree(dest)) == 5


def test_a_secret_without_a_key_to_encrypt_to_is_not_published(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_tree(root, {"dodo.py": DODO,
                      "define/facsimile.json": {"name": "demo",
                                                "generate": {"k": "token:8"}},
                      "define/prod.json": {"targets": {"app": {"hosts": ["a1"]}}},
                      "tmpl/_ALL_/etc/app.ini.j2": "k = {{ state.k }}\n"})
    key = tmp_path / "sign.key"
    sign.keygen(key)
    proc = facs(root, "publish", "prod", "--to", str(tmp_path / "s"), "--sign-key", str(key))
    assert proc.returncode == 1 and not (tmp_path / "s/blobs").exists()
    assert "etc/app.ini holds a generated secret and the target has no key" in proc.stderr


def test_a_bad_recipient_in_a_target_names_the_file_and_key(tmp_path: Path) -> None:
    write_tree(tmp_path, {"dodo.py": DODO, "define/facsimile.json": {"name": "demo"},
                          "define/prod.json": {"targets": {"app": {
                              "hosts": ["a1"], "host_keys": {"a1": "ssh-ed25519 nope"}}}}})
    proc = facs(tmp_path, "show", "prod")
    assert proc.returncode == 1
    assert "define/prod.json at /targets/app/host_keys/a1:" in proc.stderr


def test_a_record_naming_a_path_outside_the_destination_is_refused(
        world: World, tmp_path: Path) -> None:
    """The record says what a pull may delete: one edited to name ../x deletes nothing."""
    from facsimile.pull.pull import state_dir_of

    assert state_dir_of("/") == "/var/lib/facsimile/pull"
    dest = tmp_path / "dest"
    world.pull(dest)
    record = dest / ".facsimile/pull/prod.app.json"
    doc = json.loads(record.read_text())
    doc["files"]["../outside"] = doc["files"]["etc/plain.conf"]
    record.write_text(json.dumps(doc))
    (tmp_path / "outside").write_text("keep\n")
    with pytest.raises(SyncError) as err:
        world.pull(dest)
    assert "the pull record is damaged" in str(err.value)
    assert (tmp_path / "outside").read_text() == "keep\n"


def test_a_failed_health_check_puts_the_host_back_until_a_newer_serial(
        world: World, tmp_path: Path) -> None:
    """The manifest's check (deploy.rollout.check) runs after postcmd; when it fails
    every file goes back as it was, postcmd runs again, and that serial is not tried
    again; a newer one that passes is applied."""
    root = tmp_path / "root"
    shutil.copytree(world.root, root)
    store = copy_store(world, tmp_path)
    dest = tmp_path / "host" / "dest"
    world.pull(dest, store=store)
    before = tree(dest)
    (root / "tmpl/_ALL_/etc/plain.conf.j2").write_text("broken\n")
    (root / "tmpl/_ALL_/hosts/{host}/id.conf.j2").unlink()
    (root / "tmpl/_ALL_/etc/new.conf.j2").write_text("new\n")
    world.publish(root=root, store=store)
    check = "grep -q name {path}/etc/plain.conf || { echo {host} is unwell; exit 3; }"
    resign(store, A1, world.sign_key, check=[check], check_timeout=5)
    with pytest.raises(SyncError) as err:
        world.pull(dest, store=store)
    text = str(err.value)
    assert text.startswith(f"health check {check!r} exited 3: a1 is unwell: serial")
    assert "was taken back, the host keeps serial" in text
    assert tree(dest) == before and not list(dest.rglob("*.facsimile-pull*"))
    assert (tmp_path / "host/reloads").read_text().count("reloaded") == 3
    with pytest.raises(SyncError) as err:  # not tried again
        world.pull(dest, store=store)
    assert "failed here before" in str(err.value) and tree(dest) == before
    (root / "tmpl/_ALL_/etc/plain.conf.j2").write_text("name = fixed\n")
    world.publish(root=root, store=store)
    resign(store, A1, world.sign_key, check=[check], check_timeout=5)
    assert world.pull(dest, store=store)[0] == 0
    assert (dest / "etc/plain.conf").read_text() == "name = fixed\n"
    assert not (dest / "hosts/a1/id.conf").exists()


@pytest.mark.slow
def test_an_output_failing_its_check_is_not_published(world: World, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(world.root, root)
    project = json.loads((root / "define/facsimile.json").read_text())
    project["validate"] = {"etc/plain.conf": "json"}
    (root / "define/facsimile.json").write_text(json.dumps(project))
    store = copy_store(world, tmp_path)
    before = (store / A1).read_bytes()
    facs(root, "build")
    proc = facs(root, "publish", "prod", "--to", str(store), "--no-build", "--sign-key",
                str(world.sign_key))
    assert proc.returncode == 1 and "failing their checks" in proc.stderr
    assert (store / A1).read_bytes() == before


def test_a_file_another_pull_wrote_is_not_written_over(world: World, tmp_path: Path) -> None:
    """Two instances pulled into one destination: the second may not take a file
    the first one wrote (as a sync refuses a destination another instance owns)."""
    store = copy_store(world, tmp_path)
    dest = tmp_path / "dest"
    world.pull(dest, store=store)
    shutil.copytree(store / "prod", store / "other")
    resign(store, "other/app/hosts/a1/manifest.json", world.sign_key, instance="other")
    req = Request(str(store), "other", "app", "a1", str(dest),
                  identities=(str(world.a1_key),))
    with pytest.raises(SyncError) as err:
        pull(req, [world.public], lambda line: None)
    assert "is written by the pull of prod.app: two pulls must not write one file" \
        in str(err.value)


def test_a_ciphertext_slipped_into_the_store_is_never_signed(world: World,
                                                             tmp_path: Path) -> None:
    """Someone who can write to the store replaces a secret's blob in the current
    manifest: the next publish seals the secret anew instead of signing theirs."""
    from facsimile.state.crypt import parse_recipients, seal_bytes

    store = copy_store(world, tmp_path)
    path = store / "prod/app/manifest.json"
    doc = json.loads(path.read_text())
    entry = doc["payload"]["files"]["etc/app.ini"]
    evil = seal_bytes(b"secret = theirs\n", parse_recipients(entry["recipients"])).encode()
    sha = hashlib.sha256(evil).hexdigest()
    (store / "blobs" / sha).write_bytes(evil)
    entry.update(sha256=sha, size=len(evil))
    path.write_text(json.dumps(doc))
    world.publish("--no-build", store=store)
    for rel in ("prod/app/manifest.json", A1):
        assert json.loads((store / rel).read_text())["payload"]["files"][
            "etc/app.ini"]["sha256"] != sha
