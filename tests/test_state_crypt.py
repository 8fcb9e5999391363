"""Sealed state against the real age, ssh-keygen and git: interoperable, diffable, mergeable."""

from __future__ import annotations

import copy
import difflib
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from facsimile.errors import StateError
from facsimile.state import crypt as sc

pytestmark = pytest.mark.skipif(
    not all(shutil.which(t) for t in ("age", "age-keygen", "ssh-keygen", "git"))
    and os.environ.get("CI") != "true",  # CI installs them: there a missing one fails
    reason="needs the age, age-keygen, ssh-keygen and git commands")

SHOWN = "state/prod/state.json"


def run(*args: str | Path, stdin: str | bytes | None = None) -> bytes:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    return subprocess.run([str(a) for a in args], input=data, capture_output=True,
                          check=True).stdout


def age_key(tmp: Path, name: str) -> tuple[Path, str]:
    """An identity file made by age-keygen, and its recipient."""
    path = tmp / f"{name}.txt"
    run("age-keygen", "-o", path)
    return path, run("age-keygen", "-y", path).decode().strip()


def ssh_key(tmp: Path, name: str, kind: str = "ed25519") -> tuple[Path, str]:
    """An unencrypted ssh private key made by ssh-keygen, and its public key line."""
    path = tmp / name
    extra = ["-b", "2048"] if kind == "rsa" else []
    run("ssh-keygen", "-q", "-t", kind, *extra, "-N", "", "-C", f"{name}@test", "-f", path)
    return path, Path(f"{path}.pub").read_text().strip()


def plain_doc() -> dict:
    return {"format": 1, "next_id": 3,
            "modules": {"app": {"kind": "password", "value": "app-Secret-1"},
                        "db": {"kind": "password", "value": "db-Secret-1"}},
            "generate": {"node": {"kind": "id", "value": 2},
                         "secret_key": {"kind": "token:32", "value": "f00dcafe" * 8}},
            "daemons": {"sub/web": {"kind": "id", "value": 1}}}


def rotate(plain: dict, section: str, name: str, value: str) -> dict:
    """What state.fill does to a rotated entry: a new dict, the old value in previous."""
    out = copy.deepcopy(plain)
    old = out[section][name]
    out[section][name] = {"kind": old["kind"], "value": value,
                          "previous": [old["value"], *old.get("previous", [])][:3]}
    return out


def changed_lines(a: str, b: str) -> list[int]:
    """Indexes (in ``a``) of the lines that differ between ``a`` and ``b``."""
    matcher = difflib.SequenceMatcher(a=a.splitlines(), b=b.splitlines(), autojunk=False)
    return [i for tag, i1, i2, _, _ in matcher.get_opcodes() if tag != "equal"
            for i in range(i1, max(i2, i1 + 1))]


def block(text: str, name: str) -> range:
    """The line indexes of one entry's block in a dumped document."""
    lines = text.splitlines()
    start = lines.index(f'    "{name}": {{')
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("    }"))
    return range(start, end + 1)


@pytest.fixture
def alice(tmp_path: Path) -> tuple[Path, str]:
    return age_key(tmp_path, "alice")


def test_value_we_encrypt_decrypts_with_age_cli_for_an_age_keygen_identity(tmp_path, alice):
    key, recipient = alice
    armored = sc.encrypt_value("hunter2 ünïcode", sc.parse_recipients([recipient]))
    lines = armored.splitlines()
    assert lines[0] == "-----BEGIN AGE ENCRYPTED FILE-----"
    assert lines[-1] == "-----END AGE ENCRYPTED FILE-----"
    assert all(len(line) == 64 for line in lines[1:-2]) and 0 < len(lines[-2]) <= 64
    assert run("age", "-d", "-i", key, stdin=armored).decode() == "hunter2 ünïcode"


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
def test_value_we_encrypt_decrypts_with_age_cli_for_an_ssh_keygen_key(tmp_path, kind):
    key, public = ssh_key(tmp_path, "bob", kind)
    armored = sc.encrypt_value("s3cret", sc.parse_recipients([public]))
    assert run("age", "-d", "-i", key, stdin=armored).decode() == "s3cret"
    assert sc.decrypt_value(armored, sc.load_identities(key), shown="x") == "s3cret"


def test_age_cli_ciphertext_decrypts_with_decrypt_value(tmp_path, alice):
    key, recipient = alice
    ssh_private, _ = ssh_key(tmp_path, "carol")
    by_r = run("age", "-a", "-r", recipient, stdin="from age -r").decode()
    by_pub = run("age", "-a", "-R", f"{ssh_private}.pub", stdin="from age -R").decode()
    assert sc.decrypt_value(by_r, sc.load_identities(key), shown="x") == "from age -r"
    assert sc.decrypt_value(by_pub, sc.load_identities(ssh_private), shown="x") == "from age -R"


def test_file_sealed_to_two_recipients_opens_with_either_identity(tmp_path, alice):
    key, recipient = alice
    ssh_private, ssh_public = ssh_key(tmp_path, "dave")
    sealed = json.loads(sc.dumps(sc.seal(plain_doc(), [recipient, ssh_public])))
    for identity in (key, ssh_private):
        opened = sc.open_sealed(sealed, sc.load_identities(identity), shown=SHOWN)
        assert opened["modules"]["app"]["value"] == "app-Secret-1"
        assert opened["generate"]["node"] == {"kind": "id", "value": 2, "rev": 1}


def test_keygen_writes_0600_refuses_overwrite_and_its_key_pair_works(tmp_path):
    path = tmp_path / "cfg" / "facsimile" / "identity.txt"
    public = sc.keygen(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.startswith("# created: ") and f"# public key: {public}\n" in text
    before = path.read_bytes()
    with pytest.raises(StateError, match="not replaced") as err:
        sc.keygen(path)
    assert err.value.file == str(path) and path.read_bytes() == before
    assert public == sc.public_key(path) == run("age-keygen", "-y", path).decode().strip()
    armored = sc.encrypt_value("round trip", sc.parse_recipients([public]))
    assert run("age", "-d", "-i", path, stdin=armored).decode() == "round trip"
    assert sc.decrypt_value(armored, sc.load_identities(path), shown="x") == "round trip"


def test_rotating_one_value_changes_only_its_lines_and_raises_serial_by_one(alice):
    key, recipient = alice
    first = sc.seal(plain_doc(), [recipient])
    opened = sc.open_sealed(first, sc.load_identities(key), shown=SHOWN)
    again = sc.seal(opened, [recipient], previous=first, previous_plain=opened)
    assert sc.dumps(again) == sc.dumps(first)  # unchanged content: byte-identical

    rotated = rotate(opened, "modules", "db", "db-Secret-2")
    second = sc.seal(rotated, [recipient], previous=first, previous_plain=opened)
    old, new = sc.dumps(first), sc.dumps(second)
    changed = changed_lines(old, new)
    assert changed and set(changed) <= set(block(old, "db"))
    assert len(old.splitlines()) == len(new.splitlines())
    assert second["modules"]["db"]["rev"] == 2 and second["modules"]["app"]["rev"] == 1
    assert sc.serial(second) == sc.serial(first) + 1 == 6
    assert sc.lineage(second) == sc.lineage(first)
    reopened = sc.open_sealed(second, sc.load_identities(key), shown=SHOWN)
    assert reopened["modules"]["db"]["previous"] == ["db-Secret-1"]


def test_two_clones_rotating_different_entries_merge_cleanly_with_git(tmp_path, alice):
    key, recipient = alice
    ids = sc.load_identities(key)
    base = sc.seal(plain_doc(), [recipient])
    base_plain = sc.open_sealed(base, ids, shown=SHOWN)
    clones = {}
    for name in ("app", "db"):  # neighbours in the file
        plain = rotate(base_plain, "modules", name, f"{name}-rotated")
        clones[name] = sc.seal(plain, [recipient], previous=base, previous_plain=base_plain)
    files = {}
    for label, doc in (("base", base), ("ours", clones["app"]), ("theirs", clones["db"])):
        files[label] = tmp_path / f"{label}.json"
        files[label].write_text(sc.dumps(doc))
    proc = subprocess.run(["git", "merge-file", "-p", files["ours"], files["base"],
                           files["theirs"]], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    merged = json.loads(proc.stdout)
    opened = sc.open_sealed(merged, ids, shown=SHOWN)
    assert opened["modules"]["app"]["value"] == "app-rotated"
    assert opened["modules"]["db"]["value"] == "db-rotated"
    assert sc.serial(merged) > max(sc.serial(clones["app"]), sc.serial(clones["db"]))


def test_changed_recipients_reencrypt_every_entry_keep_revs_and_lock_out_the_removed(
    tmp_path, alice
):
    key, recipient = alice
    bob_key, bob = age_key(tmp_path, "bob")
    first = sc.seal(plain_doc(), [recipient, bob])
    opened = sc.open_sealed(first, sc.load_identities(key), shown=SHOWN)
    rotated = rotate(opened, "modules", "app", "app-Secret-2")
    first = sc.seal(rotated, [recipient, bob], previous=first, previous_plain=opened)
    opened = sc.open_sealed(first, sc.load_identities(bob_key), shown=SHOWN)

    second = sc.seal(opened, [recipient], previous=first, previous_plain=opened)
    for section in ("modules", "generate", "daemons"):
        for name, entry in first[section].items():
            assert second[section][name]["age"] != entry["age"]
            assert second[section][name]["rev"] == entry["rev"]
    assert sc.serial(second) == sc.serial(first) == 6
    assert second["recipients"] == [recipient]
    with pytest.raises(StateError, match="none of your identities"):
        sc.open_sealed(second, sc.load_identities(bob_key), shown=SHOWN)
    assert sc.open_sealed(second, sc.load_identities(key), shown=SHOWN) == opened


def test_no_matching_identity_names_the_file_and_recipients_never_the_value(tmp_path, alice):
    _, recipient = alice
    _, ssh_public = ssh_key(tmp_path, "erin")
    stranger, _ = age_key(tmp_path, "stranger")
    sealed = sc.seal(plain_doc(), [recipient, ssh_public])
    with pytest.raises(StateError) as err:
        sc.open_sealed(sealed, sc.load_identities(stranger), shown=SHOWN)
    message = str(err.value)
    assert err.value.file == SHOWN and message.startswith(SHOWN)
    assert sc.short(recipient) in message and "erin@test" in message
    assert "Secret" not in message and "f00dcafe" not in message
    with pytest.raises(StateError, match="no identity"):
        sc.open_sealed(sealed, [], shown=SHOWN)


def test_secrets_never_appear_in_the_sealed_text(alice):
    _, recipient = alice
    plain = rotate(plain_doc(), "modules", "app", "app-Secret-2")
    text = sc.dumps(sc.seal(plain, [recipient]))
    for secret in ("app-Secret-1", "app-Secret-2", "db-Secret-1", "f00dcafe", "Secret"):
        assert secret not in text
    assert '"kind": "password"' in text and '"rev": 1' in text  # names and kinds in clear


def test_digest_key_bytes_seal_and_open_also_with_age_cli(alice):
    key, recipient = alice
    data = bytes(range(32))
    text = sc.seal_bytes(data, sc.parse_recipients([recipient]))
    assert text.startswith("-----BEGIN AGE ENCRYPTED FILE-----\n")
    assert sc.open_bytes(text, sc.load_identities(key), "state/digest-key.age") == data
    assert run("age", "-d", "-i", key, stdin=text) == data


def test_bad_recipient_is_named_shortened_with_its_file():
    with pytest.raises(StateError) as err:
        sc.parse_recipients(["age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqnotvalid"],
                            file="define/facsimile.json")
    assert err.value.file == "define/facsimile.json" and "age1qqqqqq…alid" in str(err.value)
    with pytest.raises(StateError, match="SECRET key") as err:
        sc.parse_recipients(["AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQ"], file="f")
    assert "QQQQ" not in str(err.value)
    with pytest.raises(StateError, match="not an age"):
        sc.parse_recipients(["pgp-key"], file="f")


def test_identity_files_missing_garbled_or_passphrase_protected(tmp_path):
    assert sc.load_identities(tmp_path / "none.txt") == []
    garbled = tmp_path / "garbled.txt"
    garbled.write_text("# a comment\nAGE-SECRET-KEY-1NOTAKEYATALL\n")
    with pytest.raises(StateError) as err:
        sc.load_identities(garbled)
    assert err.value.file == str(garbled) and err.value.line == 2
    assert "NOTAKEY" not in str(err.value)
    locked = tmp_path / "locked"
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "pass phrase", "-f", locked)
    with pytest.raises(StateError, match="unencrypted") as err:
        sc.load_identities(locked)
    assert err.value.file == str(locked)


def test_identity_path_follows_the_environment(tmp_path):
    assert sc.identity_path({"FACSIMILE_IDENTITY": "/k/id.txt", "HOME": "/h"}) == Path("/k/id.txt")
    assert sc.identity_path({"XDG_CONFIG_HOME": "/x", "HOME": "/h"}) == Path(
        "/x/facsimile/identity.txt")
    assert sc.identity_path({"HOME": "/h"}) == Path("/h/.config/facsimile/identity.txt")


def test_public_key_of_an_ssh_identity_comes_from_its_pub_file(tmp_path):
    key, public = ssh_key(tmp_path, "frank")
    assert sc.public_key(key) == public


def test_sealed_format_accessors_and_damaged_shape(alice):
    key, recipient = alice
    sealed = sc.seal(plain_doc(), [recipient], lineage="0" * 32)
    assert sc.is_sealed(sealed) and not sc.is_sealed(plain_doc())
    assert sc.lineage(sealed) == "0" * 32 and sc.lineage(plain_doc()) is None
    assert sc.serial(sealed) == 5 and sealed["next_id"] == 3
    assert sorted(sealed) == ["daemons", "format", "generate", "lineage", "modules",
                              "next_id", "recipients"]
    sealed["modules"]["app"]["rev"] = 0
    with pytest.raises(StateError) as err:
        sc.open_sealed(sealed, sc.load_identities(key), shown=SHOWN)
    assert err.value.pointer == "/modules/app"


def test_a_ciphertext_moved_to_another_entry_is_refused(alice):
    key, recipient = alice
    sealed = sc.seal(plain_doc(), [recipient])
    sealed["modules"]["db"]["age"] = sealed["modules"]["app"]["age"]  # a bad hand merge
    with pytest.raises(StateError, match="another entry") as err:
        sc.open_sealed(sealed, sc.load_identities(key), shown=SHOWN)
    assert err.value.pointer == "/modules/db"
    opened = sc.open_sealed(sc.seal(plain_doc(), [recipient]), sc.load_identities(key),
                            shown=SHOWN)
    assert opened["daemons"]["sub/web"] == {"kind": "id", "value": 1, "rev": 1}
