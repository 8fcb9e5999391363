"""Sync against real destinations: a folder, OpenSSH's sshd and moto's S3 server."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import DODO, doit, facs, write_tree
from servers import s3server, sshd  # noqa: F401  (fixtures)

#: server-backed kinds start sshd or moto (conftest marks those tests slow)
SFTP = "sftp"
S3 = "s3"
SFTP_TAR = "sftp-tar"

HOSTS = ["h1", "h2"]


class Dest:
    """Where a test's sync goes, and how the test reads it back."""

    def __init__(self, kind: str, tmp: Path, request: pytest.FixtureRequest) -> None:
        self.kind = kind
        if kind == "file":
            self.base = tmp / "dest"
            self.deploy = {"url": f"file://{self.base}/{{host}}"}
        elif kind == "sftp":
            server = request.getfixturevalue("sshd")
            self.base = tmp / "sftp-dest"
            self.deploy = server.deploy(str(self.base))
            self.server = server
        else:
            server = request.getfixturevalue("s3server")
            self.prefix = f"t{uuid.uuid4().hex[:8]}"
            self.deploy = server.deploy(self.prefix)
            self.server = server
            import boto3

            self.s3 = boto3.client("s3", endpoint_url=server.endpoint,
                                   aws_access_key_id="testing",
                                   aws_secret_access_key="testing", region_name="us-east-1")

    def files(self, host: str) -> dict[str, bytes]:
        if self.kind == "s3":
            out = {}
            pre = f"{self.prefix}/{host}/"
            resp = self.s3.list_objects_v2(Bucket=self.server.bucket, Prefix=pre)
            for obj in resp.get("Contents", []):
                body = self.s3.get_object(Bucket=self.server.bucket, Key=obj["Key"])["Body"]
                out[obj["Key"][len(pre):]] = body.read()
            return out
        top = self.base / host
        return {p.relative_to(top).as_posix(): p.read_bytes()
                for p in sorted(top.rglob("*")) if p.is_file()}

    def write(self, host: str, rel: str, data: bytes) -> None:
        if self.kind == "s3":
            self.s3.put_object(Bucket=self.server.bucket, Key=f"{self.prefix}/{host}/{rel}",
                               Body=data)
            return
        path = self.base / host / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def read(self, host: str, rel: str) -> bytes | None:
        if self.kind == "s3":
            try:
                obj = self.s3.get_object(Bucket=self.server.bucket,
                                         Key=f"{self.prefix}/{host}/{rel}")
            except self.s3.exceptions.NoSuchKey:
                return None
            return obj["Body"].read()
        path = self.base / host / rel
        return path.read_bytes() if path.is_file() else None

    def remove(self, host: str, rel: str) -> None:
        if self.kind == "s3":
            self.s3.delete_object(Bucket=self.server.bucket, Key=f"{self.prefix}/{host}/{rel}")
            return
        (self.base / host / rel).unlink()

    def everything(self) -> list[str]:
        """Every file or object at this destination, whatever the host."""
        if self.kind == "s3":
            resp = self.s3.list_objects_v2(Bucket=self.server.bucket, Prefix=f"{self.prefix}/")
            return [o["Key"] for o in resp.get("Contents", [])]
        return [str(p) for p in self.base.rglob("*") if p.is_file()] if self.base.exists() else []

    def mtimes(self, host: str) -> dict[str, object]:
        """What shows that a file was written again: mtime, or an object's
        LastModified and ETag."""
        if self.kind == "s3":
            resp = self.s3.list_objects_v2(Bucket=self.server.bucket,
                                           Prefix=f"{self.prefix}/{host}/")
            return {o["Key"]: (o["LastModified"], o["ETag"]) for o in resp.get("Contents", [])}
        top = self.base / host
        return {p.relative_to(top).as_posix(): p.stat().st_mtime_ns
                for p in top.rglob("*") if p.is_file()}


@pytest.fixture(params=["file", SFTP, S3])
def dest(request: pytest.FixtureRequest, tmp_path: Path) -> Dest:
    return Dest(request.param, tmp_path, request)


def make_root(tmp: Path, deploy: dict, **more: object) -> Path:
    root = tmp / "root"
    write_tree(root, {
        "dodo.py": DODO,
        "define/facsimile.json": {"name": "shop", "port": 8080,
                                  "deploy": {"exclude": ["*.tmp"], **deploy}},
        "define/modules.json": {"db": {}},
        "define/dev.json": {"targets": {"web": {"hosts": HOSTS}}, **more},
        "tmpl/_ALL_/etc/app.ini": "port = {{ instance.port }}\n",
        "tmpl/_ALL_/etc/db.ini": "password = {{ module.db.password }}\n",
        "tmpl/_ALL_/shop/static/index.html": "<h1>{{ project.name }}</h1>\n",
        "tmpl/_ALL_/shop/old.txt": "old\n",
        "extra/_ALL_/etc/scratch.tmp": "never pushed\n",
    })
    os.chmod(root / "tmpl/_ALL_/etc/db.ini", 0o600)
    doit(root, check=True)
    return root


def sync(root: Path, *args: str, code: int = 0) -> str:
    """Run `facs sync dev ARGS`; its output (stdout, then stderr)."""
    proc = facs(root, "sync", "dev", *args)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_first_sync_puts_all_and_noop_puts_nothing(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy)
    out = sync(root)
    assert "3 host" not in out and out.count(": 4 put, 0 deleted") == 2
    for h in HOSTS:
        files = dest.files(h)
        assert files["etc/app.ini"] == b"port = 8080\n"
        assert set(files) == {"etc/app.ini", "etc/db.ini", "shop/static/index.html",
                              "shop/old.txt", ".facsimile/manifest.json"}
        manifest = json.loads(files[".facsimile/manifest.json"])["files"]
        assert set(manifest) == {"etc/app.ini", "etc/db.ini", "shop/static/index.html",
                                 "shop/old.txt"}
    before = dest.mtimes("h1")
    assert len(before) == 5
    time.sleep(1.1)  # S3's LastModified has whole seconds: a put now would show
    out = sync(root)
    assert out.count(": 0 put, 0 deleted, 4 unchanged") == 2
    assert dest.mtimes("h1") == before  # nothing written again, not even the manifest


@pytest.mark.slow
def test_changed_file_of_same_size_is_pushed(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy)
    sync(root)
    data = json.loads((root / "define/facsimile.json").read_text())
    data["port"] = 8081
    (root / "define/facsimile.json").write_text(json.dumps(data))
    out = sync(root)
    assert out.count(": 1 put, 0 deleted") == 2
    assert dest.files("h2")["etc/app.ini"] == b"port = 8081\n"


@pytest.mark.slow
def test_deletes_only_what_facsimile_owns(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy)
    sync(root)
    dest.write("h1", "etc/foreign.conf", b"not ours\n")  # outside owned folders: kept
    dest.write("h1", "shop/foreign.txt", b"in the project's folder\n")  # owned: deleted
    dest.write("h1", "shop/keep.tmp", b"excluded: never deleted\n")
    (root / "tmpl/_ALL_/shop/old.txt").unlink()
    (root / "tmpl/_ALL_/etc/db.ini").unlink()
    out = sync(root)
    files = dest.files("h1")
    assert "etc/foreign.conf" in files and "shop/keep.tmp" in files
    assert "shop/foreign.txt" not in files
    assert "shop/old.txt" not in files and "etc/db.ini" not in files
    assert "etc/scratch.tmp" not in files  # excluded: never pushed
    assert "0 put, 3 deleted" in out and "0 put, 2 deleted" in out


@pytest.mark.slow
def test_dry_run_changes_nothing(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy)
    out = sync(root, "--dry-run", code=2)  # something to do: exit 2
    assert "put etc/app.ini (new" in out and "would put 4, delete 0" in out
    assert dest.files("h1") == {}
    sync(root)
    (root / "tmpl/_ALL_/shop/old.txt").unlink()
    before = dest.files("h1")
    out = sync(root, "--dry-run")  # shows BUILD/ as it is, and says it is stale
    assert "BUILD/dev is not up to date (1 to build or delete)" in out
    doit(root, check=True)
    out = sync(root, "--dry-run", code=2)
    assert "delete shop/old.txt" in out
    assert dest.files("h1") == before


@pytest.mark.slow
def test_check_reports_drift_without_fixing(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy)
    sync(root)
    assert "drift on 0" in sync(root, "--check")
    dest.write("h2", "etc/app.ini", b"port = 9999\n")
    out = sync(root, "--check", code=2)
    assert "web/h2: drift: etc/app.ini: edited on the host" in out
    assert dest.files("h2")["etc/app.ini"] == b"port = 9999\n"
    out = sync(root)  # a plain sync puts back what was edited on the host
    assert "web/h2: 1 put" in out and "web/h1: 0 put" in out
    assert dest.files("h2")["etc/app.ini"] == b"port = 8080\n"
    sync(root, "--check")


@pytest.fixture(params=["file", SFTP])
def moded(request: pytest.FixtureRequest, tmp_path: Path) -> Dest:
    """Destinations that have file modes (S3 objects have none)."""
    return Dest(request.param, tmp_path, request)


@pytest.mark.slow
def test_secret_modes_are_kept(moded: Dest, tmp_path: Path) -> None:
    dest = moded
    root = make_root(tmp_path, dest.deploy)
    sync(root)
    path = dest.base / "h1" / "etc/db.ini"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((dest.base / "h1/etc/app.ini").stat().st_mode) == 0o644


@pytest.mark.slow
def test_target_files_globs(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy,
                     **{"targets": {"web": {"hosts": ["h1"], "files": ["shop/**"]},
                                    "db": {"hosts": ["h2"], "files": ["etc/db.ini"]}}})
    sync(root)
    assert set(dest.files("h1")) == {"shop/static/index.html", "shop/old.txt",
                                     ".facsimile/manifest.json"}
    assert set(dest.files("h2")) == {"etc/db.ini", ".facsimile/manifest.json"}
    dest.write("h1", "shop/foreign.txt", b"a sync of h1 would delete this\n")
    dest.remove("h2", "etc/db.ini")
    out = sync(root, "--host", "h2", "--repair")
    assert "db/h2: 1 put" in out and "web/h1" not in out and "1 host(s) ok" in out
    assert "etc/db.ini" in dest.files("h2")
    assert "shop/foreign.txt" in dest.files("h1")  # h1 untouched


@pytest.mark.slow
def test_unknown_host_is_an_error(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy)
    out = sync(root, "--host", "typo", code=1)
    assert "facs: error: instance dev has no host 'typo' (hosts: h1, h2)" in out
    out = sync(root, "--target", "web", "--host", "h3", code=1)
    assert "target web of instance dev has no host 'h3' (hosts: h1, h2)" in out
    assert dest.everything() == []


@pytest.mark.parametrize("pattern", ["../etc/**", "/etc/passwd"])
@pytest.mark.slow
def test_escaping_paths_are_refused(tmp_path: Path, pattern: str) -> None:
    root = make_root(tmp_path, {"url": f"file://{tmp_path}/d/{{host}}"},
                     **{"targets": {"web": {"hosts": ["h1"], "files": [pattern]}}})
    out = sync(root, code=1)
    assert "would escape the destination" in out
    assert not (tmp_path / "d").exists()


@pytest.mark.slow
def test_one_failing_host_does_not_stop_the_others(moded: Dest, tmp_path: Path) -> None:
    base = moded.base
    base.mkdir()
    (base / "h1").write_text("a file where a folder should be")
    root = make_root(tmp_path, moded.deploy)
    out = sync(root, code=1)
    assert "web/h1: FAILED:" in out
    assert "web/h2: 4 put" in out
    assert (base / "h2/etc/app.ini").read_text() == "port = 8080\n"
    assert "1 host(s) ok, 1 failed" in out


@pytest.mark.slow
def test_postcmd_runs_over_ssh_when_something_changed(tmp_path: Path, sshd) -> None:  # noqa: F811
    marker = tmp_path / "ran"
    deploy = sshd.deploy(str(tmp_path / "sftp"),
                         postcmd=[f"echo reloaded >> {marker}; echo done-$(cat {marker} | wc -l)"])
    root = make_root(tmp_path, deploy)
    out = sync(root)
    assert "h1: done-" in out and "h2: done-" in out
    assert marker.read_text().count("reloaded") == 2
    out = sync(root)  # nothing changed: no postcmd
    assert marker.read_text().count("reloaded") == 2
    sync(root, "--always")
    assert marker.read_text().count("reloaded") == 4
    data = json.loads((root / "define/facsimile.json").read_text())
    data["deploy"]["postcmd"] = ["echo failing; exit 3"]
    data["port"] = 1
    (root / "define/facsimile.json").write_text(json.dumps(data))
    out = sync(root, code=1)
    assert "h1: failing" in out
    assert "web/h1: FAILED: postcmd 'echo failing; exit 3' exited 3" in out


@pytest.mark.slow
def test_unknown_host_key_is_refused(tmp_path: Path, sshd) -> None:  # noqa: F811
    other = tmp_path / "known_hosts"
    other.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 "
                     "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
    deploy = sshd.deploy(str(tmp_path / "sftp"))
    deploy["ssh"]["known_hosts"] = str(other)
    root = make_root(tmp_path, deploy)
    out = sync(root, code=1)
    assert "FAILED" in out and "cannot connect" in out
    assert not (tmp_path / "sftp").exists()


KILL = """
import sys
from pathlib import Path
from facsimile.sync import sync_instance
sys.exit(sync_instance(instance="dev", project="shop", root=Path(sys.argv[1]),
    build_dir=Path(sys.argv[1]) / "BUILD/dev", deploy={"url": sys.argv[2]},
    targets={"web": {"hosts": ["h1"]}}, out=lambda s: None))
"""


@pytest.mark.parametrize("kind", ["file", SFTP, SFTP_TAR])
@pytest.mark.slow
def test_sync_killed_half_way_then_completed(tmp_path: Path, kind: str,
                                            request: pytest.FixtureRequest) -> None:
    """kill -9 during a sync: every file is old or new; the next sync completes it.

    ``sftp`` puts file by file (deploy.ssh.tar false), so the kill lands between
    files; ``sftp-tar`` streams one tar that the host unpacks and renames in on
    its own, so there the kill may land before or after the host is done.
    """
    build = tmp_path / "BUILD/dev/etc"
    n = 1000 if kind == "sftp" else 3000  # one SFTP put per file is the slow case
    for i in range(n):
        p = build / f"d{i % 30}" / f"f{i}.conf"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"old {i}\n")
    d = Dest(kind.split("-")[0], tmp_path, request)
    deploy = dict(d.deploy)
    if kind == "sftp":
        deploy["ssh"] = {**deploy["ssh"], "tar": False}
    script = KILL.replace('deploy={"url": sys.argv[2]}', f"deploy={deploy!r}")
    subprocess.run([sys.executable, "-c", script, str(tmp_path), deploy["url"]], check=True)
    for i in range(n):  # a new build: every file changes
        (build / f"d{i % 30}" / f"f{i}.conf").write_text(f"new {i} {'x' * (i % 7)}\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path), deploy["url"]])
    target = d.base / "h1"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # kill it once some new files have arrived
        time.sleep(0.02)
        newer = sum(1 for p in target.glob("**/d1/*.conf") if _starts(p, b"new"))
        if newer >= 3 or proc.poll() is not None:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30  # a host finishing an unpacked tar on its own
    while list(target.glob(".facsimile/staging.*")) and time.monotonic() < deadline:
        time.sleep(0.1)
    files = {k: v for k, v in d.files("h1").items() if k.startswith("etc/")}
    new = sum(1 for v in files.values() if v.startswith(b"new"))
    for i in range(n):  # every file is either old or new, never half-written
        data = files[f"etc/d{i % 30}/f{i}.conf"]
        assert data in (f"old {i}\n".encode(), f"new {i} {'x' * (i % 7)}\n".encode())
    if kind != "sftp-tar":
        assert 0 < new < n, "the kill did not land half way; raise n"
    subprocess.run([sys.executable, "-c", script, str(tmp_path), deploy["url"]], check=True)
    files = d.files("h1")
    assert all(files[f"etc/d{i % 30}/f{i}.conf"].startswith(b"new") for i in range(n))
    assert not [k for k in files if k.endswith(".facsimile-tmp") or "staging" in k]
    manifest = json.loads(files[".facsimile/manifest.json"])["files"]
    assert len(manifest) == n


def _starts(path: Path, prefix: bytes) -> bool:
    try:
        return path.read_bytes().startswith(prefix)
    except OSError:  # renamed away while we looked
        return False


@pytest.mark.slow
def test_s3_sync_killed_half_way_then_completed(tmp_path: Path, request: pytest.FixtureRequest,
                                               s3server) -> None:  # noqa: F811
    """S3 puts are atomic per object: a killed sync leaves objects old or new."""
    d = Dest("s3", tmp_path, request)
    build = tmp_path / "BUILD/dev/etc"
    n = 400
    for i in range(n):
        p = build / f"f{i:04d}.conf"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"old {i}\n")
    script = KILL.replace('deploy={"url": sys.argv[2]}', f"deploy={d.deploy!r}")
    url = d.deploy["url"]
    subprocess.run([sys.executable, "-c", script, str(tmp_path), url], check=True)
    for i in range(n):
        (build / f"f{i:04d}.conf").write_text(f"new {i}\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path), url])
    key = f"{d.prefix}/h1/etc/f0001.conf"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        body = d.s3.get_object(Bucket=d.server.bucket, Key=key)["Body"].read()
        if body.startswith(b"new"):
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    files = {k: v for k, v in d.files("h1").items() if k.startswith("etc/")}
    new = sum(1 for v in files.values() if v.startswith(b"new"))
    for i in range(n):
        assert files[f"etc/f{i:04d}.conf"] in (f"old {i}\n".encode(), f"new {i}\n".encode())
    assert 0 < new < n, "the kill did not land half way; raise n"
    subprocess.run([sys.executable, "-c", script, str(tmp_path), url], check=True)
    files = d.files("h1")
    assert all(files[f"etc/f{i:04d}.conf"] == f"new {i}\n".encode() for i in range(n))
    assert len(json.loads(files[".facsimile/manifest.json"])["files"]) == n


@pytest.mark.slow
def test_doit_sync_task_builds_then_pushes(tmp_path: Path) -> None:
    base = tmp_path / "dest"
    root = make_root(tmp_path, {"url": f"file://{base}/{{host}}"})
    (root / "tmpl/_ALL_/etc/new.conf").write_text("made just now\n")
    proc = doit(root, "sync:dev", check=True)
    assert ".  build:dev/etc/new.conf" in proc.stdout
    assert (base / "h1/etc/new.conf").read_text() == "made just now\n"
    assert (base / "h2/etc/new.conf").read_text() == "made just now\n"
    proc = doit(root, "sync:dev", check=True)
    assert "0 put, 0 deleted, 5 unchanged" in proc.stdout


@pytest.mark.slow
def test_two_targets_on_one_host_share_the_destination(tmp_path: Path) -> None:
    base = tmp_path / "dest"
    root = make_root(tmp_path, {"url": f"file://{base}/{{host}}"},
                     **{"targets": {"web": {"hosts": ["one"], "files": ["shop/**"]},
                                    "db": {"hosts": ["one"], "files": ["etc/db.ini"]}}})
    out = sync(root)
    assert "db+web/one: 3 put" in out
    files = {p.relative_to(base / "one").as_posix() for p in base.rglob("*") if p.is_file()}
    assert {"shop/old.txt", "shop/static/index.html", "etc/db.ini"} <= files
    out = sync(root, "--target", "db")  # still the union: nothing of web's is deleted
    assert "0 put, 0 deleted, 3 unchanged" in out
    assert (base / "one/shop/old.txt").exists()


# ------------------------------------------------------------- drift and repair


@pytest.mark.slow
def test_check_reports_a_file_removed_on_the_host(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy)
    sync(root)
    dest.remove("h1", "etc/app.ini")
    out = sync(root, "--check", code=2)
    assert "web/h1: drift: etc/app.ini: removed on the host" in out
    assert "web/h1: 1 drifted, 1 to sync" in out and "web/h2: 0 drifted, 0 to sync" in out
    assert dest.read("h1", "etc/app.ini") is None  # --check fixes nothing
    out = sync(root, "--repair")
    assert "web/h1: 1 put" in out
    assert dest.read("h1", "etc/app.ini") == b"port = 8080\n"
    sync(root, "--check")


@pytest.mark.slow
def test_repair_fixes_a_mode_changed_on_the_host(moded: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, moded.deploy)
    sync(root)
    secret = moded.base / "h1/etc/db.ini"
    os.chmod(secret, 0o644)
    out = sync(root, "--check", code=2)
    assert "web/h1: drift: etc/db.ini: mode 644 on the host, 600 synced" in out
    assert "web/h1: 1 drifted, 1 to sync" in out
    assert stat.S_IMODE(secret.stat().st_mode) == 0o644
    out = sync(root, "--repair")
    assert "web/h1: 1 put" in out and "web/h2: 0 put" in out
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert "drift on 0" in sync(root, "--check")


# ------------------------------------------------------------------------ modes


@pytest.mark.parametrize("kind", ["file", SFTP, SFTP_TAR])
@pytest.mark.slow
def test_0600_kept_on_every_path_and_after_a_mode_only_change(
        tmp_path: Path, kind: str, request: pytest.FixtureRequest) -> None:
    """``sftp`` puts file by file, ``sftp-tar`` sends 50+ files as one tar stream."""
    from facsimile.sync.destinations.ssh import TAR_THRESHOLD

    d = Dest(kind.split("-")[0], tmp_path, request)
    deploy = dict(d.deploy)
    if kind == "sftp":
        deploy["ssh"] = {**deploy["ssh"], "tar": False}
    root = make_root(tmp_path, deploy)
    many = root / "BUILD/dev/etc/many"
    many.mkdir()
    for i in range(TAR_THRESHOLD + 10):
        (many / f"f{i}.conf").write_text(f"secret {i}\n")
        os.chmod(many / f"f{i}.conf", 0o600 if i % 2 else 0o644)
    top = d.base / "h1"

    def modes() -> dict[str, int]:
        return {p.relative_to(top).as_posix(): stat.S_IMODE(p.stat().st_mode)
                for p in top.rglob("*") if p.is_file() and ".facsimile" not in p.parts}

    def wanted() -> dict[str, int]:
        build = root / "BUILD/dev"
        return {p.relative_to(build).as_posix(): stat.S_IMODE(p.stat().st_mode)
                for p in build.rglob("*") if p.is_file() and not p.name.endswith(".tmp")}

    out = sync(root, "--no-build")
    assert f"web/h1: {TAR_THRESHOLD + 14} put" in out
    assert modes() == wanted() and modes()["etc/db.ini"] == 0o600
    assert modes()["etc/many/f1.conf"] == 0o600 and modes()["etc/many/f0.conf"] == 0o644
    for p in [*many.iterdir(), root / "BUILD/dev/etc/app.ini"]:  # a mode-only change
        os.chmod(p, 0o600)
    out = sync(root, "--no-build")
    assert f"web/h1: {TAR_THRESHOLD // 2 + 6} put" in out
    assert set(modes().values()) == {0o600, 0o644}
    assert modes() == wanted() and modes()["etc/app.ini"] == 0o600
    assert stat.S_IMODE((top / ".facsimile/manifest.json").stat().st_mode) == 0o600


BIG = """
import os, sys
from pathlib import Path
from facsimile.sync import sync_instance
sys.exit(sync_instance(instance="dev", project="shop", root=Path(sys.argv[1]),
    build_dir=Path(sys.argv[1]) / "BUILD/dev", deploy=DEPLOY,
    targets={"web": {"hosts": ["h1"]}}, out=lambda s: None))
"""


@pytest.mark.slow
def test_a_secret_is_never_readable_by_others_while_written(
        moded: Dest, tmp_path: Path) -> None:
    """The temporary file of a 0600 output is 0600 from its creation, also when the
    sync is killed while writing it; the next sync removes what was left."""
    dest = moded
    secret = tmp_path / "BUILD/dev/etc/big.secret"
    secret.parent.mkdir(parents=True)
    (secret.parent / "app.ini").write_text("port = 1\n")
    with open(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as fh:
        for _ in range(64):
            fh.write(b"password = hunter2\n" * 55_000)  # ~1 MB each
    script = BIG.replace("DEPLOY", repr(dest.deploy))
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])
    tmp = dest.base / "h1/etc/.big.secret.facsimile-tmp"
    seen = None
    deadline = time.monotonic() + 60
    while seen is None and time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(FileNotFoundError):
            seen = stat.S_IMODE(os.stat(tmp).st_mode)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert seen is not None, "never saw the temporary file: make the secret bigger"
    assert seen == 0o600, f"temporary file was {seen:o} right after it was made"
    left = [p for p in (dest.base / "h1").rglob("*") if p.is_file()]
    assert tmp in left, "the kill did not land while the secret was written"
    for p in left:  # nothing readable by others, half-written or whole
        if "app.ini" not in p.name:  # 0644 by design
            assert stat.S_IMODE(p.stat().st_mode) & 0o077 == 0, p
    secret.unlink()  # the next build has it no more: the next sync cleans up
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True)
    assert out.returncode == 0
    names = sorted(p.relative_to(dest.base / "h1").as_posix()
                   for p in (dest.base / "h1").rglob("*") if p.is_file())
    assert names == [".facsimile/manifest.json", "etc/app.ini"]


# ------------------------------------------------------------ a killed sync


@pytest.mark.parametrize("kind", ["file", SFTP, S3])
@pytest.mark.slow
def test_files_of_a_killed_sync_are_not_left_behind(
        tmp_path: Path, kind: str, request: pytest.FixtureRequest) -> None:
    """Killed after putting new files but before its manifest: the next sync, whose
    build no longer has them, still deletes them (they are outside owned folders)."""
    d = Dest(kind, tmp_path, request)
    deploy = dict(d.deploy)
    if kind == "sftp":
        deploy["ssh"] = {**deploy["ssh"], "tar": False}
    script = BIG.replace("DEPLOY", repr(deploy))
    build = tmp_path / "BUILD/dev/etc"
    build.mkdir(parents=True)
    (build / "app.ini").write_text("port = 1\n")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True)
    n = {"file": 3000, "sftp": 1000, "s3": 400}[kind]
    for i in range(n):
        p = build / f"new/d{i % 20}/f{i}.conf"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"new {i}\n")

    def arrived() -> bool:
        if kind == "s3":
            resp = d.s3.list_objects_v2(Bucket=d.server.bucket, MaxKeys=1,
                                        Prefix=f"{d.prefix}/h1/etc/new/")
            return resp.get("KeyCount", 0) > 0
        return any((d.base / "h1/etc/new").glob("d*/f*.conf"))

    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not arrived():
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    manifest = json.loads(d.read("h1", ".facsimile/manifest.json") or b"{}")["files"]
    assert set(manifest) == {"etc/app.ini"}, "the kill came too late: raise n"
    put = [k for k in d.files("h1") if k.startswith("etc/new/")]
    assert put, "the kill came before any put"
    shutil.rmtree(build / "new")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True)
    assert sorted(d.files("h1")) == [".facsimile/manifest.json", "etc/app.ini"]


def test_a_pending_record_names_the_puts_not_the_old_manifest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sync that changes one file of many writes a pending record of that one
    file (the old manifest stays in place until the new one replaces it), and an
    earlier killed sync's record is carried on."""
    from facsimile.sync import sync_instance
    from facsimile.sync.destinations.local import LocalDestination

    build = tmp_path / "BUILD/dev"
    for i in range(30):
        (build / f"etc/f{i}.conf").parent.mkdir(parents=True, exist_ok=True)
        (build / f"etc/f{i}.conf").write_text(f"{i}\n")
    deploy = {"url": f"file://{tmp_path}/dest/{{host}}"}
    written: list[dict] = []
    real = LocalDestination.write_bytes

    def write(self: LocalDestination, rel: str, data: bytes) -> None:
        if rel == ".facsimile/pending.json":
            written.append(json.loads(data)["files"])
        real(self, rel, data)

    monkeypatch.setattr(LocalDestination, "write_bytes", write)

    def push() -> None:
        assert sync_instance(instance="dev", project="p", root=tmp_path, build_dir=build,
                             deploy=deploy, targets={"app": {"hosts": ["h1"]}},
                             out=lambda line: None) == 0

    push()
    assert len(written) == 1 and len(written[0]) == 30
    (build / "etc/f3.conf").write_text("changed\n")
    push()
    assert set(written[1]) == {"etc/f3.conf"}
    pending = tmp_path / "dest/h1/.facsimile/pending.json"  # as a killed sync leaves it
    pending.write_text(json.dumps({"format": 1, "files": {"etc/gone.conf": {}}}))
    (build / "etc/f4.conf").write_text("changed\n")
    push()
    assert set(written[2]) == {"etc/f4.conf", "etc/gone.conf"}
    assert not pending.exists()


# ---------------------------------------------------------------- ssh options


@pytest.mark.slow
def test_tilde_in_known_hosts_and_key(tmp_path: Path, sshd, monkeypatch) -> None:  # noqa: F811
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh/known_hosts").write_text(sshd.known_hosts.read_text())
    (home / ".ssh/deploy").write_bytes(sshd.key.read_bytes())
    os.chmod(home / ".ssh/deploy", 0o600)
    monkeypatch.setenv("HOME", str(home))
    deploy = sshd.deploy(str(tmp_path / "sftp"))
    deploy["ssh"] = {"key": "~/.ssh/deploy", "known_hosts": "~/.ssh/known_hosts"}
    root = make_root(tmp_path, deploy)
    out = sync(root)
    assert out.count(": 4 put") == 2
    assert (tmp_path / "sftp/h1/etc/app.ini").read_text() == "port = 8080\n"


@pytest.mark.slow
def test_missing_known_hosts_is_a_clear_error(tmp_path: Path, sshd, monkeypatch) -> None:  # noqa: F811
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    deploy = sshd.deploy(str(tmp_path / "sftp"))
    deploy["ssh"]["known_hosts"] = "~/.ssh/nowhere"
    root = make_root(tmp_path, deploy)
    out = sync(root, code=1)
    assert (f"web/h1: FAILED: no known_hosts file at {home}/.ssh/nowhere: facsimile "
            "verifies host keys") in out
    assert "0 host(s) ok, 2 failed" in out
    assert not (tmp_path / "sftp").exists()


# ------------------------------------------------------ names and URLs refused


@pytest.mark.parametrize("bad", ["h#1", "h?x", "a/b", "..", "a..b", "h 1", "-x", ".h", ""])
@pytest.mark.slow
def test_host_names_that_are_not_host_names_are_refused(
        dest: Dest, tmp_path: Path, bad: str) -> None:
    """Some (``/``, ``..``, a leading ``-``) the definitions refuse already; the
    others ('#', '?', spaces) would make two hosts share one destination."""
    root = make_root(tmp_path, dest.deploy)
    data = json.loads((root / "define/dev.json").read_text())
    data["targets"]["web"]["hosts"] = ["h1", bad]
    (root / "define/dev.json").write_text(json.dumps(data))
    out = sync(root, code=1)
    assert out.startswith("facs: error: define/dev.json at /targets/web/hosts/1: ")
    assert (f"instance dev, target web: host name {bad!r} is not allowed: use letters"
            in out or f"{bad!r} is not a valid host name" in out)
    assert len(out.strip().splitlines()) == 1
    assert dest.everything() == []


@pytest.mark.slow
def test_ipv6_host_names_are_accepted(tmp_path: Path) -> None:
    base = tmp_path / "dest"
    root = make_root(tmp_path, {"url": f"file://{base}/{{host}}"},
                     **{"targets": {"web": {"hosts": ["[::1]", "db-1.example.org"]}}})
    out = sync(root)
    assert "web/[::1]: 4 put" in out and "web/db-1.example.org: 4 put" in out
    assert (base / "[::1]/etc/app.ini").is_file()


@pytest.mark.parametrize("tail", ["?x=1", "#frag"])
@pytest.mark.slow
def test_urls_with_a_query_or_fragment_are_refused(dest: Dest, tmp_path: Path,
                                                   tail: str) -> None:
    deploy = {**dest.deploy, "url": dest.deploy["url"] + tail}
    root = make_root(tmp_path, deploy)
    out = sync(root, code=1)
    assert out.count("has a '?' or '#': a URL query or fragment is not a place") == 2
    assert dest.everything() == []


@pytest.mark.slow
def test_file_url_with_a_host_is_refused(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"url": f"file://DEPLOY{tmp_path}/d/{{host}}"})
    out = sync(root, code=1)
    assert "web/h1: FAILED: destination" in out
    assert "names the host 'DEPLOY': a file URL takes an absolute path" in out
    assert not (tmp_path / "d").exists()  # not quietly taken as /.../d/h1
    data = json.loads((root / "define/facsimile.json").read_text())
    data["deploy"]["url"] = f"file://localhost{tmp_path}/d/{{host}}"
    (root / "define/facsimile.json").write_text(json.dumps(data))
    assert sync(root).count(": 4 put") == 2
    assert (tmp_path / "d/h1/etc/app.ini").is_file()


@pytest.mark.slow
def test_dotdot_in_deploy_delete_is_refused(dest: Dest, tmp_path: Path) -> None:
    dest.write("etc", "sibling.conf", b"next to the hosts' folders\n")
    root = make_root(tmp_path, {**dest.deploy, "delete": ["../etc"]})
    out = sync(root, code=1)
    assert out.count("FAILED: deploy.delete folder '../etc' would escape the "
                     "destination") == 2
    assert dest.files("etc") == {"sibling.conf": b"next to the hosts' folders\n"}
    assert dest.files("h1") == {}


# --------------------------------------------------------------------- secrets


def _state_values(node: object) -> list[str]:
    if isinstance(node, dict):
        return [v for k, x in node.items()
                for v in ([x] if k == "value" and isinstance(x, str) else _state_values(x))]
    if isinstance(node, list):
        return [v for x in node for v in _state_values(x)]
    return []


@pytest.mark.slow
def test_no_generated_secret_in_any_output(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy)
    secrets = [v for v in _state_values(json.loads((root / "state/dev/state.json").read_text()))
               if len(v) >= 8]
    built = (root / "BUILD/dev/etc/db.ini").read_text()
    assert secrets and any(s in built for s in secrets)  # what the test looks for
    outputs = [sync(root, "--dry-run", code=2), sync(root)]
    dest.write("h1", "etc/db.ini", b"password = changed on the host\n")
    outputs += [sync(root, "--check", code=2), sync(root, "--dry-run", "--repair", code=2),
                sync(root, "--repair"), sync(root, "--check")]
    assert "etc/db.ini: edited on the host" in outputs[2]
    assert "web/h1: 1 put" in outputs[4]
    for out in outputs:
        for secret in secrets:
            assert secret not in out


@pytest.mark.slow
def test_s3_credentials_from_the_environment(tmp_path: Path, s3server) -> None:  # noqa: F811
    prefix = f"t{uuid.uuid4().hex[:8]}"
    deploy = {"url": f"s3://{s3server.bucket}/{prefix}/{{host}}",
              "s3": {"endpoint_url": s3server.endpoint}}  # no key, secret or region
    root = make_root(tmp_path, deploy)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))

    def run(extra: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "facsimile.cli", "sync", "dev"], cwd=root,
                              env={**env, **extra}, capture_output=True, text=True,
                              timeout=120)

    # without credentials anywhere: a clear error per host, no traceback
    proc = run({})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "web/h1: FAILED: NoCredentialsError" in proc.stdout + proc.stderr
    # with the usual AWS variables: every file arrives, and the secret is never shown
    secret = "env-secret-" + uuid.uuid4().hex
    proc = run({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": secret,
                "AWS_DEFAULT_REGION": "us-east-1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert secret not in proc.stdout + proc.stderr
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3server.endpoint, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=s3server.bucket,
                                                 Prefix=f"{prefix}/h1/")["Contents"]}
    assert f"{prefix}/h1/etc/app.ini" in keys and f"{prefix}/h1/etc/db.ini" in keys


@pytest.mark.parametrize(("jobs", "overlap"), [(1, False), (3, True)])
@pytest.mark.slow
def test_jobs_bounds_the_hosts_synced_at_once(tmp_path: Path, sshd, jobs: int,  # noqa: F811
                                              overlap: bool) -> None:
    log = tmp_path / "spans"
    # each host's postcmd records when it starts and ends (nanoseconds), 0.4 s apart
    cmd = (f"echo start $(date +%s%N) >> {log}; sleep 0.4; echo end $(date +%s%N) >> {log}")
    deploy = sshd.deploy(str(tmp_path / "sftp"), postcmd=[cmd], jobs=jobs)
    root = make_root(tmp_path, deploy, targets={"web": {"hosts": ["h1", "h2", "h3"]}})
    sync(root)
    events = sorted((int(t), kind) for kind, t in
                    (line.split() for line in log.read_text().splitlines()))
    assert len(events) == 6
    running, most = 0, 0
    for _, kind in events:
        running += 1 if kind == "start" else -1
        most = max(most, running)
    assert (most > 1) is overlap and most <= jobs


@pytest.mark.parametrize("entry", ["/tmp/victim.txt", "../../victim.txt", "etc/../../victim",
                                   "etc/a\\b", ""])
@pytest.mark.parametrize("record", [".facsimile/manifest.json", ".facsimile/pending.json"])
@pytest.mark.slow
def test_a_manifest_entry_outside_the_destination_deletes_nothing(
        moded: Dest, tmp_path: Path, entry: str, record: str) -> None:
    """A destination's records are not trusted: an entry that is not a relative
    path inside it makes the sync fail that host, naming the record, and nothing
    is deleted (before, the next sync deleted the file it named)."""
    dest = moded
    root = make_root(tmp_path, dest.deploy)
    sync(root)
    victim = tmp_path / "victim.txt"
    victim.write_text("not facsimile's\n")
    top = dest.base / "h1"
    manifest = json.loads((top / ".facsimile/manifest.json").read_text())
    name = str(victim) if entry.startswith("/") else entry
    manifest["files"][name] = {"digest": "0" * 64, "mode": 420}
    (top / record).write_text(json.dumps(manifest))
    before = {p: p.read_bytes() for p in top.rglob("*") if p.is_file()}
    out = sync(root, "--no-build", code=1)
    assert f"{record} is damaged" in out and "nothing was deleted" in out
    assert victim.read_text() == "not facsimile's\n"
    assert {p: p.read_bytes() for p in top.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_a_fan_out_file_reaches_its_host_whose_name_has_dots(tmp_path: Path) -> None:
    """``tmpl/_ALL_/hosts/{host}/...`` goes to that host only, names with dots too."""
    base = tmp_path / "d"
    root = tmp_path / "root"
    write_tree(root, {
        "dodo.py": DODO,
        "define/facsimile.json": {"name": "shop", "deploy": {"url": f"file://{base}/{{host}}"}},
        "define/dev.json": {"targets": {"web": {"hosts": ["web1.ch1", "web2.ch1"]}}},
        "tmpl/_ALL_/hosts/{host}/node.conf": "node {{ this.name }}\n",
    })
    out = sync(root)
    assert "no host receives it" not in out
    for h in ("web1.ch1", "web2.ch1"):
        assert d_files(base / h) == {f"hosts/{h}/node.conf": f"node {h}\n".encode()}


def d_files(top: Path) -> dict[str, bytes]:
    return {p.relative_to(top).as_posix(): p.read_bytes() for p in top.rglob("*")
            if p.is_file() and ".facsimile" not in p.parts}
