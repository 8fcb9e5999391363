"""State a team shares: sealed to age recipients and committed, or kept at a URL.

Everything goes through the real ``facs`` and ``doit``, real git and the real
``age`` command; remote state through a real folder, sshd and S3 server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run
from servers import s3server, sshd  # noqa: F401  (fixtures)
from test_state_crypt import ssh_key

ENTRIES = {"generate": {"secret_key": "token:32", "api": "password:20"}}


def facs(cwd: Path, *args: str, identity: Path | str | None = None) -> subprocess.CompletedProcess:
    env = {"FACSIMILE_IDENTITY": str(identity or "/nonexistent/identity.txt")}
    return run([sys.executable, "-m", "facsimile.cli", *args], cwd=cwd, env=env)


def doit(cwd: Path, identity: Path | str | None = None) -> subprocess.CompletedProcess:
    env = {"FACSIMILE_IDENTITY": str(identity or "/nonexistent/identity.txt")}
    return run([sys.executable, "-m", "doit"], cwd=cwd, env=env)


def git(cwd: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com",
                           *args], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


def keygen(tmp: Path, name: str) -> tuple[Path, str]:
    path = tmp / f"{name}.key"
    proc = facs(tmp, "state", "keygen", str(path))
    assert proc.returncode == 0, proc.stderr
    public = proc.stdout.split("public key: ")[1].split()[0]
    return path, public


def new_root(tmp: Path, name: str = "a") -> Path:
    base = tmp / name
    proc = facs(tmp, "init", str(base))
    assert proc.returncode == 0, proc.stderr
    project = json.loads((base / "define/facsimile.json").read_text())
    project["generate"] = ENTRIES["generate"]
    (base / "define/facsimile.json").write_text(json.dumps(project, indent=2) + "\n")
    return base


@pytest.fixture
def team(tmp_path: Path) -> tuple[Path, Path, str]:
    """Clone A: a git repo whose state is sealed to alice, built and committed."""
    alice, public = keygen(tmp_path, "alice")
    a = new_root(tmp_path)
    proc = facs(a, "state", "recipients", "add", public, identity=alice)
    assert proc.returncode == 0, proc.stderr
    git(a, "init", "-q", "-b", "main")
    proc = doit(a, alice)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    git(a, "add", "-A")
    git(a, "commit", "-qm", "sealed state")
    return a, alice, public


def files(base: Path) -> dict[str, bytes]:
    return {p.relative_to(base).as_posix(): p.read_bytes()
            for p in sorted((base / "BUILD").rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_sealed_state_is_committed_and_a_clone_with_the_key_builds_the_same(team, tmp_path):
    a, alice, _public = team
    tracked = git(a, "ls-files", "state").split()
    assert sorted(tracked) == ["state/.gitignore", "state/dev/state.json",
                               "state/digest-key.age"]
    text = (a / "state/dev/state.json").read_text()
    assert '"format": 2' in text and "BEGIN AGE ENCRYPTED FILE" in text
    assert not (a / "state/.digest-key").exists()
    b = tmp_path / "b"
    git(tmp_path, "clone", "-q", str(a), str(b))
    proc = doit(b, alice)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert files(b) == files(a) and files(a)
    assert git(b, "status", "--porcelain") == ""
    assert facs(b, "plan", identity=alice).returncode == 0


@pytest.mark.slow
def test_a_clone_without_the_key_fails_clearly_and_generates_nothing(team, tmp_path):
    a, _alice, public = team
    c = tmp_path / "c"
    git(tmp_path, "clone", "-q", str(a), str(c))
    proc = facs(c, "plan")
    assert proc.returncode == 1
    assert "state/dev/state.json" in proc.stderr and public[:10] in proc.stderr
    assert "nothing was generated or written" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = doit(c)
    assert proc.returncode != 0 and "state/dev/state.json" in proc.stdout + proc.stderr
    for args in (("state", "show", "dev"), ("state", "rotate", "dev", "api"), ("build",)):
        assert facs(c, *args).returncode == 1, args
    assert git(c, "status", "--porcelain") == ""
    ignored = set(git(c, "status", "--porcelain", "--ignored").split())
    assert ignored <= {"!!", ".doit.db", ".facsimile/", "state/dev/.lock", "__pycache__/"}
    assert not (c / "BUILD").exists() and not (c / "state/.digest-key").exists()


@pytest.mark.slow
def test_age_decrypts_an_entry_and_a_rotation_changes_only_its_lines(team, tmp_path):
    a, alice, _ = team
    doc = json.loads((a / "state/dev/state.json").read_text())
    armored = doc["generate"]["secret_key"]["age"]
    out = subprocess.run(["age", "-d", "-i", str(alice)], input=armored.encode(),
                         capture_output=True, check=True).stdout
    value = json.loads(out)["value"]
    assert f"secret_key = {value}" in (a / "BUILD/dev/etc/app.conf").read_text()
    proc = facs(a, "state", "rotate", "dev", "secret_key", identity=alice)
    assert proc.returncode == 0, proc.stderr
    diff = git(a, "diff", "-U0", "state/dev/state.json")
    lines = (a / "state/dev/state.json").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == '"secret_key": {')
    end = next(i for i in range(start, len(lines)) if lines[i].strip() in ("}", "},"))
    hunks = [h.split()[2] for h in diff.splitlines() if h.startswith("@@")]
    assert hunks
    for h in hunks:  # "+first,count" in the new file
        first, _, count = h[1:].partition(",")
        assert start < int(first) and int(first) + int(count or 1) - 1 <= end + 1, diff
    assert json.loads((a / "state/dev/state.json").read_text())["generate"]["secret_key"][
        "rev"] == 2


@pytest.mark.slow
def test_two_clones_rotating_different_entries_merge_cleanly(team, tmp_path):
    a, alice, _ = team
    b = tmp_path / "b"
    git(tmp_path, "clone", "-q", str(a), str(b))
    assert facs(a, "state", "rotate", "dev", "secret_key", identity=alice).returncode == 0
    git(a, "commit", "-qam", "rotate secret_key")
    assert facs(b, "state", "rotate", "dev", "api", identity=alice).returncode == 0
    git(b, "commit", "-qam", "rotate api")
    git(b, "pull", "-q", "--no-rebase", "--no-edit", "origin", "main")
    proc = facs(b, "state", "show", "dev", "--reveal", identity=alice)
    assert proc.returncode == 0, proc.stderr
    shown_a = facs(a, "state", "show", "dev", "--reveal", identity=alice).stdout
    secret = [line for line in shown_a.splitlines() if line.startswith("state.secret_key")]
    assert secret and secret[0] in proc.stdout
    doc = json.loads((b / "state/dev/state.json").read_text())
    assert doc["generate"]["secret_key"]["rev"] == doc["generate"]["api"]["rev"] == 2


@pytest.mark.slow
def test_recipients_added_and_removed_reseal_without_rebuilding(team, tmp_path):
    a, alice, alice_pub = team
    bob, bob_pub = keygen(tmp_path, "bob")
    before = facs(a, "state", "show", "dev", "--reveal", identity=alice).stdout
    assert facs(a, "plan", identity=bob).returncode == 1  # not yet a recipient
    proc = facs(a, "state", "recipients", "add", bob_pub, identity=alice)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((a / "define/facsimile.json").read_text())["state"]["recipients"] == [
        alice_pub, bob_pub]
    assert facs(a, "plan", identity=bob).returncode == 0
    assert facs(a, "state", "show", "dev", "--reveal", identity=bob).stdout == before
    listed = facs(a, "state", "recipients", identity=bob).stdout
    assert bob_pub in listed and "state/dev/state.json  sealed to" in listed
    proc = facs(a, "state", "recipients", "remove", bob_pub, identity=alice)
    assert proc.returncode == 0, proc.stderr
    assert facs(a, "plan", identity=bob).returncode == 1
    assert facs(a, "plan", identity=alice).returncode == 0
    assert facs(a, "state", "show", "dev", "--reveal", identity=alice).stdout == before
    assert facs(a, "state", "recipients", "remove", alice_pub, identity=alice).returncode == 1


def age_decrypt(state_file: Path, entry: str, identity: Path) -> str:
    """The value of a generate entry, decrypted by the real ``age -d -i``."""
    armored = json.loads(state_file.read_text())["generate"][entry]["age"]
    proc = subprocess.run(["age", "-d", "-i", str(identity)], input=armored.encode(),
                          capture_output=True)
    assert proc.returncode == 0 or not proc.stdout, proc.stderr
    return json.loads(proc.stdout)["value"] if proc.returncode == 0 else ""


@pytest.mark.slow
def test_a_team_on_an_ssh_key_shares_sealed_state_and_changes_members(tmp_path):
    ops, ops_pub = ssh_key(tmp_path, "ops")  # "ssh-ed25519 AAAA... ops@test"
    a = new_root(tmp_path)
    project = json.loads((a / "define/facsimile.json").read_text())
    (a / "define/facsimile.json").write_text(json.dumps(
        {**project, "state": {"recipients": [ops_pub]}}, indent=2) + "\n")
    git(a, "init", "-q", "-b", "main")
    proc = doit(a, ops)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    git(a, "add", "-A")
    git(a, "commit", "-qm", "state sealed to an ssh key")
    state = a / "state/dev/state.json"
    secret = age_decrypt(state, "secret_key", ops)
    assert f"secret_key = {secret}" in (a / "BUILD/dev/etc/app.conf").read_text()
    b = tmp_path / "b"
    git(tmp_path, "clone", "-q", str(a), str(b))
    proc = doit(b, ops)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert files(b) == files(a) and git(b, "status", "--porcelain") == ""
    # a member joins with an ssh key of their own, and leaves again
    bob, bob_pub = ssh_key(tmp_path, "bob")
    before = facs(b, "state", "show", "dev", "--reveal", identity=ops).stdout
    assert facs(b, "plan", identity=bob).returncode == 1
    proc = facs(b, "state", "recipients", "add", bob_pub, identity=ops)
    assert proc.returncode == 0, proc.stderr
    assert age_decrypt(b / "state/dev/state.json", "secret_key", bob) == secret
    assert facs(b, "state", "show", "dev", "--reveal", identity=bob).stdout == before
    assert facs(b, "plan", identity=bob).returncode == 0  # resealed: nothing to rebuild
    proc = facs(b, "state", "recipients", "remove", bob_pub, identity=ops)
    assert proc.returncode == 0, proc.stderr
    assert age_decrypt(b / "state/dev/state.json", "secret_key", bob) == ""
    assert age_decrypt(b / "state/dev/state.json", "secret_key", ops) == secret
    assert facs(b, "plan", identity=bob).returncode == 1
    assert facs(b, "plan", identity=ops).returncode == 0


@pytest.mark.slow
def test_plain_state_is_ignored_and_sealed_at_its_next_write_once_recipients_are_set(
        tmp_path):
    alice, public = keygen(tmp_path, "alice")
    a = new_root(tmp_path)
    assert doit(a).returncode == 0
    assert (a / "state/.gitignore").read_text().splitlines()[-1] == "*"
    assert (a / "state/.digest-key").exists()
    plain = json.loads((a / "state/dev/state.json").read_text())
    project = json.loads((a / "define/facsimile.json").read_text())
    (a / "define/facsimile.json").write_text(json.dumps(
        {**project, "state": {"recipients": [public]}}, indent=2))
    assert facs(a, "plan", identity=alice).returncode == 0  # plain is still read
    assert facs(a, "state", "rotate", "dev", "api", identity=alice).returncode == 0
    doc = json.loads((a / "state/dev/state.json").read_text())
    assert doc["format"] == 2 and doc["lineage"] == plain["lineage"]
    assert doc["generate"]["api"]["rev"] == 2 and doc["generate"]["secret_key"]["rev"] == 1
    assert ".digest-key" in (a / "state/.gitignore").read_text()
    proc = doit(a, alice)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (a / "state/.digest-key").exists() and (a / "state/digest-key.age").exists()


@pytest.mark.slow
def test_recipients_are_checked_when_the_project_is_read(tmp_path):
    a = new_root(tmp_path)
    project = json.loads((a / "define/facsimile.json").read_text())
    for state, said in (({"recipients": ["age1nope"]}, "/state/recipients/0"),
                        ({"recipeints": []}, "did you mean 'recipients'"),
                        ({"url": 3}, "state.url must be a string")):
        (a / "define/facsimile.json").write_text(json.dumps({**project, "state": state}))
        proc = facs(a, "plan")
        assert proc.returncode == 1 and said in proc.stderr, proc.stderr
        assert "define/facsimile.json" in proc.stderr


# ------------------------------------------------------------------ remote state

WRITER = """
import sys
from facsimile.cli import main
for _ in range(int(sys.argv[2])):
    assert main(["state", "rotate", "dev", sys.argv[1]]) == 0
"""


def remote_config(kind: str, tmp: Path, request: pytest.FixtureRequest) -> dict:
    if kind == "file":
        return {"url": f"file://{tmp / 'remote'}"}
    if kind == "sftp":
        server = request.getfixturevalue("sshd")
        return {"url": f"sftp://{server.user}@127.0.0.1:{server.port}{tmp / 'sftp-state'}",
                "ssh": {"key": str(server.key), "known_hosts": str(server.known_hosts)}}
    server = request.getfixturevalue("s3server")
    return {"url": f"s3://{server.bucket}/{tmp.name}",
            "s3": {"endpoint_url": server.endpoint, "key": "testing", "secret": "testing",
                   "region": "us-east-1"}}


@pytest.mark.parametrize("kind", ["file", "sftp", "s3"])
@pytest.mark.slow
def test_remote_state_with_two_concurrent_writers_loses_no_update(kind, tmp_path, request):
    alice, public = keygen(tmp_path, "alice")
    a = new_root(tmp_path)
    project = json.loads((a / "define/facsimile.json").read_text())
    config = {**remote_config(kind, tmp_path, request), "recipients": [public]}
    (a / "define/facsimile.json").write_text(json.dumps({**project, "state": config}))
    proc = doit(a, alice)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (a / "state/dev").exists()
    env = {"FACSIMILE_IDENTITY": str(alice)}
    n = 3
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, name, str(n)], cwd=a,
                              env={**__import__("os").environ, **env},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("secret_key", "api")]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, out + err
    from facsimile.state.remote import RemoteStore

    options = {k: v for k, v in config.items() if k in ("ssh", "s3")}
    store = RemoteStore(config["url"], **options)
    got = store.read("dev")
    store.close()
    assert got is not None
    doc = json.loads(got[0])
    assert doc["format"] == 2
    assert doc["generate"]["secret_key"]["rev"] == doc["generate"]["api"]["rev"] == 1 + n
    proc = doit(a, alice)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert facs(a, "plan", identity=alice).returncode == 0


@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
@pytest.mark.slow
def test_a_value_rotated_five_times_in_one_clone_is_masked_in_another(sealed, tmp_path):
    """An id: a diff masks it only as a value the state knows (no other rule hides a
    number, as one hides a secret-shaped word of an old file)."""
    import shutil

    alice, public = keygen(tmp_path, "alice")
    a = new_root(tmp_path)
    project = json.loads((a / "define/facsimile.json").read_text())
    project["generate"]["node"] = "id"
    config: dict = {"url": f"file://{tmp_path / 'remote'}",
                    **({"recipients": [public]} if sealed else {})}
    (a / "define/facsimile.json").write_text(json.dumps({**project, "state": config}))
    tmpl = a / "tmpl/_ALL_/etc/app.conf.j2"
    tmpl.write_text(tmpl.read_text() + "node_id = {{ state.node }}\n")
    proc = doit(a, alice)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # clone B: the same definitions, its own state/ folder and digest key, its own build
    b = tmp_path / "b"
    shutil.copytree(a, b, ignore=shutil.ignore_patterns("state", "BUILD", ".doit.db*",
                                                        ".facsimile"))
    proc = doit(b, alice)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    key = "digest-key.age" if sealed else ".digest-key"
    assert (a / "state" / key).read_bytes() != (b / "state" / key).read_bytes()
    conf = "BUILD/dev/etc/app.conf"
    first = (b / conf).read_text().split("node_id = ")[1].split()[0]
    assert (a / conf).read_text() == (b / conf).read_text()
    for _ in range(5):
        proc = facs(a, "state", "rotate", "dev", "node", identity=alice)
        assert proc.returncode == 0, proc.stderr
    proc = doit(a, alice)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"node_id = {first}\n" not in (a / conf).read_text()
    # B's build still holds the first id: B masks it though A replaced it (on a line
    # the new template no longer makes, so no current value hides it)
    tmpl = b / "tmpl/_ALL_/etc/app.conf.j2"
    tmpl.write_text(tmpl.read_text().replace("node_id = ", "node_id: "))
    proc = facs(b, "plan", "--diff", identity=alice)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "-node_id = ********" in proc.stdout, proc.stdout
    assert "+node_id: ********" in proc.stdout, proc.stdout
    assert f"node_id = {first}" not in proc.stdout + proc.stderr, proc.stdout
    text = (tmp_path / "remote/dev/state.json").read_text()
    if not sealed:  # the digests and their key, never a value the entry had
        entry = json.loads(text)["generate"]["node"]
        assert len(set(entry["seen"])) == 5
        assert all(re.fullmatch(r"[0-9a-f]{20}", d) for d in entry["seen"])
        assert re.fullmatch(r"[0-9a-f]{64}", entry["seen_key"])
    else:
        assert "seen" not in text and '"format": 2' in text


def test_a_remote_no_op_does_one_listing_and_reads_no_state(tmp_path, monkeypatch):
    a = new_root(tmp_path)
    project = json.loads((a / "define/facsimile.json").read_text())
    (a / "define/facsimile.json").write_text(json.dumps(
        {**project, "state": {"url": f"file://{tmp_path / 'remote'}"}}))
    assert doit(a).returncode == 0
    assert facs(a, "plan").returncode == 0  # fills the cache
    from facsimile.build import Build
    from facsimile.project import Project
    from facsimile.state import remote

    calls: list[str] = []
    for name in ("versions", "read", "write"):
        real = getattr(remote.RemoteStore, name)
        monkeypatch.setattr(remote.RemoteStore, name,
                            lambda self, *x, _r=real, _n=name: calls.append(_n) or _r(self, *x))
    b = Build(Project.load(a))
    stale = [o for i in b.project.instances.values() for o in b.outputs(i).values()
             if b.check(o)]
    b.save_caches()
    assert stale == [] and calls == ["versions"]


@pytest.mark.slow
def test_a_stale_remote_lock_is_named_and_removed_with_unlock(tmp_path):
    from facsimile.state.remote import RemoteStore

    a = new_root(tmp_path)
    url = f"file://{tmp_path / 'remote'}"
    project = json.loads((a / "define/facsimile.json").read_text())
    (a / "define/facsimile.json").write_text(json.dumps(
        {**project, "state": {"url": url, "lock_timeout": 0.5}}))
    assert doit(a).returncode == 0
    store = RemoteStore(url)
    held = store.lock("dev", timeout=1, holder="gone@box pid 1")
    rec = held.__enter__()
    proc = facs(a, "state", "rotate", "dev", "api")
    assert proc.returncode == 1 and "gone@box pid 1" in proc.stderr
    assert f"facs state unlock {rec['id']}" in proc.stderr
    proc = facs(a, "state", "unlock", rec["id"])
    assert proc.returncode == 0 and "family dev" in proc.stdout
    assert facs(a, "state", "rotate", "dev", "api").returncode == 0


@pytest.mark.slow
def test_plan_says_which_families_are_new_and_which_get_new_values(tmp_path):
    a = new_root(tmp_path)
    proc = facs(a, "plan")
    assert proc.returncode == 2
    assert ("state of family dev does not exist yet: 3 values will be generated"
            in proc.stdout), proc.stdout
    assert doit(a).returncode == 0
    project = json.loads((a / "define/facsimile.json").read_text())
    project["generate"]["extra"] = "uuid"
    (a / "define/facsimile.json").write_text(json.dumps(project))
    proc = facs(a, "plan")
    assert "state of family dev: 1 new value will be generated (state.extra)" in proc.stdout
    assert "extra" not in (a / "state/dev/state.json").read_text()


@pytest.mark.slow
def test_a_sealed_root_keeps_its_model_cache(team, tmp_path):
    """With the digest key sealed (no plain key left), the model cache is still
    authenticated and used: a no-op does not resolve the definitions again."""
    a, alice, _public = team
    cache = a / ".facsimile/model.pickle"
    cache.unlink(missing_ok=True)
    assert not (a / "state/.digest-key").exists()
    assert doit(a, alice).returncode == 0
    assert cache.is_file()  # written under the key opened with the identity
    first = cache.stat().st_mtime_ns
    assert doit(a, alice).returncode == 0 and cache.stat().st_mtime_ns == first
    # without the identity nothing is cached (nor trusted)
    cache.unlink()
    doit(a)
    assert not cache.exists()
