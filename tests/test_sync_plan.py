"""Sync placement, drift, saved plans, the confirm gate and exit codes, against a
folder, sshd and moto's S3 server (the ``dest`` fixtures of test_sync)."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from conftest import doit, facs, write_tree
from servers import s3server, sshd  # noqa: F401  (fixtures)
from test_console import under_pty
from test_sync import S3, SFTP, Dest, make_root, sync

from facsimile.define.rollout import parse_rollout


@pytest.fixture(params=["file", SFTP, S3])
def dest(request: pytest.FixtureRequest, tmp_path: Path) -> Dest:
    return Dest(request.param, tmp_path, request)


@pytest.fixture(params=["file", SFTP])
def moded(request: pytest.FixtureRequest, tmp_path: Path) -> Dest:
    """Destinations that have file modes (S3 objects have none)."""
    return Dest(request.param, tmp_path, request)


@pytest.mark.slow
def test_host_fan_out_goes_to_its_host_only(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy)
    write_tree(root, {"tmpl/_ALL_/etc/host/{host}.conf.j2": "me = {{ this.name }}\n"})
    doit(root, check=True)
    out = sync(root)
    for h, other in (("h1", "h2"), ("h2", "h1")):
        files = dest.files(h)
        assert f"etc/host/{h}.conf" in files and f"etc/host/{other}.conf" not in files
    assert "2 host(s), 10 file(s) placed" in out and "put 10, deleted 0" in out
    (root / "tmpl/_ALL_/etc/host/{host}.conf.j2").rename(root / "tmpl/_ALL_/etc/host/{host}.cfg.j2")
    out = sync(root)
    assert "deleted etc/host/h1.conf" in out and "deleted etc/host/h2.conf" in out
    assert "etc/host/h1.cfg" in dest.files("h1") and "etc/host/h2.cfg" not in dest.files("h1")


@pytest.mark.slow
def test_placeholder_globs_and_the_uncovered_warning(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy, targets={
        "web": {"hosts": ["h1", "h2"], "files": ["etc/app.ini", "etc/{target}/{host}.conf"]}})
    write_tree(root, {"tmpl/_ALL_/etc/web/{host}.conf.j2": "{{ this.name }}\n"})
    doit(root, check=True)
    out = sync(root, "--dry-run", code=2)
    for rel in ("etc/db.ini", "shop/old.txt", "shop/static/index.html"):
        assert f"warning: BUILD/dev/{rel}: no host receives it" in out
    assert "scratch.tmp" not in out  # excluded on purpose
    plan = facs(root, "plan")
    assert plan.returncode == 0 and "warning: BUILD/dev/etc/db.ini: no host receives it" \
        in plan.stdout
    sync(root)
    assert set(dest.files("h1")) == {"etc/app.ini", "etc/web/h1.conf", ".facsimile/manifest.json"}


@pytest.mark.slow
def test_drift_is_put_back_by_a_plain_sync(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy)
    sync(root)
    dest.write("h1", "etc/app.ini", b"port = 1\n")
    dest.remove("h2", "shop/old.txt")
    out = sync(root, "--dry-run", code=2)
    assert "web/h1: put etc/app.ini (edited on the host" in out
    assert "web/h2: put shop/old.txt (removed on the host" in out
    out = sync(root)
    assert "web/h1: 1 put" in out and "web/h2: 1 put" in out
    assert dest.read("h1", "etc/app.ini") == b"port = 8080\n"
    assert dest.read("h2", "shop/old.txt") == b"old\n"
    assert "put 0, would delete 0" in sync(root, "--dry-run")


@pytest.mark.slow
def test_mode_drift_and_checksum(moded: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, moded.deploy)
    sync(root)
    secret = moded.base / "h1/etc/db.ini"
    os.chmod(secret, 0o644)
    assert "web/h1: 1 put" in sync(root)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    app = moded.base / "h2/etc/app.ini"
    st = app.stat()
    app.write_bytes(b"port = 9999\n")  # same size, then the same mtime
    os.utime(app, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert "web/h2: 0 put" in sync(root)  # the quick check cannot see it
    out = sync(root, "--checksum")
    assert "web/h2: 1 put" in out and app.read_bytes() == b"port = 8080\n"


@pytest.mark.slow
def test_saved_plan_applied_and_refused(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy)
    plan = tmp_path / "plan.json"
    sync(root, "--dry-run", "--out", str(plan), code=2)
    text = plan.read_text()
    secret = (root / "BUILD/dev/etc/db.ini").read_text().split("= ")[1].strip()
    assert secret not in text
    doc = json.loads(text)
    hosts = doc["instances"]["dev"]
    assert {p["path"] for p in hosts[0]["puts"]} == {"etc/app.ini", "etc/db.ini",
                                                     "shop/old.txt", "shop/static/index.html"}
    assert all(p["digest"] and "host_digest" in p for p in hosts[0]["puts"])
    out = facs(root, "sync", "--plan", str(plan))
    assert out.returncode == 0, out.stdout + out.stderr
    assert set(dest.files("h1")) >= {"etc/app.ini", "etc/db.ini"}
    # a host changed since the plan: refused before any put, on every host
    sync(root, "--dry-run", "--out", str(plan))
    dest.write("h2", "etc/app.ini", b"edited\n")
    before = dest.files("h1")
    out = facs(root, "sync", "--plan", str(plan))
    assert out.returncode == 1 and "web/h2: refused: the host changed" in out.stdout
    assert dest.files("h1") == before
    # BUILD/ changed since the plan
    sync(root, "--dry-run", "--out", str(plan), code=2)
    (root / "BUILD/dev/shop/old.txt").write_text("newer\n")
    out = facs(root, "sync", "--plan", str(plan))
    assert out.returncode == 1 and "refused: BUILD/ changed since the plan" in out.stdout
    assert dest.read("h2", "etc/app.ini") == b"edited\n"


@pytest.mark.slow
def test_masked_diff_and_named_deletes(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy)
    write_tree(root, {"extra/_ALL_/shop/logo.png": b"\x89PNG\0\1"})
    doit(root, check=True)
    sync(root)
    secret = (root / "BUILD/dev/etc/db.ini").read_text().split("= ")[1].strip()
    dest.write("h1", "etc/db.ini", f"password = {secret}\nedited\n".encode())
    dest.write("h1", "shop/logo.png", b"\x89PNG\0\2")
    dest.write("h1", "shop/foreign.txt", b"not ours\n")
    out = sync(root, "--dry-run", "--diff", code=2)
    assert secret not in out and "password = ********" in out and "-edited" in out
    assert "binary file shop/logo.png differs" in out
    assert "web/h1: delete shop/foreign.txt (not ours" in out
    out = sync(root)
    assert "web/h1: deleted shop/foreign.txt (not ours" in out


@pytest.mark.slow
def test_confirm_gate(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, {**dest.deploy, "confirm": True})
    out = sync(root, code=1)  # no terminal, no --yes: refused before any put
    assert "deploy.confirm" in out and "--yes" in out
    assert dest.files("h1") == {}
    out = sync(root, "--yes")
    assert "put 8, deleted 0" in out and "etc/app.ini" in dest.files("h1")
    assert "nothing" not in sync(root)  # nothing to do: nothing to ask


@pytest.mark.slow
def test_several_instances_and_json(dest: Dest, tmp_path: Path) -> None:
    root = make_root(tmp_path, dest.deploy)
    write_tree(root, {"define/staging.json": {"targets": {"web": {"hosts": ["s1"]}}}})
    doit(root, check=True)
    proc = facs(root, "sync", "dev", "staging")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "total: 2 instance(s), 3 host(s) ok, 0 failed; put 12, deleted 0" in proc.stdout
    dest.remove("s1", "etc/app.ini")
    proc = facs(root, "sync", "--all", "--dry-run", "--json")
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc["format"] == 1 and doc["exit"] == 2
    s1 = doc["instances"]["staging"][0]
    assert s1["host"] == "s1" and s1["puts"] == ["etc/app.ini"] and s1["errors"] == []
    assert all(h["puts"] == [] for h in doc["instances"]["dev"])


@pytest.mark.slow
def test_exit_codes_of_every_command(tmp_path: Path) -> None:
    root = make_root(tmp_path, {"url": f"file://{tmp_path}/d/{{host}}"})
    for args in (("sync", "dev", "--chek"), ("plan", "--nope"), ("state", "show"),
                 ("show",), ("show", "dev", "--x")):
        proc = facs(root, *args)
        assert proc.returncode == 1, args
        assert f"usage: facs {args[0]}" in proc.stderr, args
    assert facs(root, "plan").returncode == 0
    assert facs(root, "sync", "dev", "--dry-run").returncode == 2
    assert facs(root, "sync", "dev").returncode == 0
    assert facs(root, "sync", "dev", "--dry-run").returncode == 0
    assert facs(root, "sync", "dev", "--check").returncode == 0
    assert facs(root, "show", "dev").returncode == 0
    assert facs(root, "state", "show", "dev").returncode == 0
    write_tree(root, {"tmpl/_ALL_/etc/app.ini": "port = {{ instance.port }}!\n"})
    assert facs(root, "plan").returncode == 2
    write_tree(root, {"tmpl/_ALL_/etc/broken.conf.j2": "{{ nope.x }}\n"})
    proc = facs(root, "plan")
    assert proc.returncode == 1
    assert "BUILD/dev/etc/broken.conf: error: " in proc.stdout and "'nope' is undefined" \
        in proc.stdout
    for cmd in ("plan", "sync", "state show", "show"):
        assert "exit codes: 0" in facs(root, *cmd.split(), "--help").stdout.replace("\n", " ")


def _answer_under_pty(root: Path, answer: str) -> tuple[int, str]:
    """Run `facs sync dev` on a pseudo-terminal and type ``answer`` at its question."""
    return under_pty([sys.executable, "-m", "facsimile.cli", "sync", "dev"], root,
                     answer=(b"to go on:", answer.encode()))


@pytest.mark.slow
def test_confirm_gate_asks_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal the gate shows the plan, asks, and puts only on the agreed word."""
    dest = tmp_path / "dest"
    root = make_root(tmp_path, {"url": f"file://{dest}/{{host}}", "confirm": "ship-it"})
    code, text = _answer_under_pty(root, "yes")  # not the word the instance asks for
    assert code == 1 and "Type 'ship-it' to go on" in text and "would put" in text
    assert "not confirmed: nothing was changed" in text and not dest.exists()
    code, text = _answer_under_pty(root, "ship-it")
    assert code == 0 and "put 8, deleted 0" in text
    assert (dest / "h1/etc/app.ini").read_text() == "port = 8080\n"


def test_only_a_dry_run_carries_the_hosts_part_of_a_saved_plan(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A saved plan (``--out``) and the confirm gate come from dry runs: a real sync
    does not digest every file of each host for one (0.03 s at 10,000 files)."""
    from facsimile.sync import host as H
    from facsimile.sync import sync_instance

    build = tmp_path / "BUILD/dev"
    write_tree(build, {f"etc/f{i}.conf": f"value {i}\n" for i in range(5)})
    made = []
    real = H.host_doc
    monkeypatch.setattr(H, "host_doc", lambda plan: made.append(plan.host) or real(plan))
    kw = dict(instance="dev", project="shop", root=tmp_path, build_dir=build,
              deploy={"url": f"file://{tmp_path}/d/{{host}}"},
              targets={"web": {"hosts": ["h1", "h2"]}}, out=lambda s: None)
    looked: list = []
    assert sync_instance(dry_run=True, results=looked, **kw) == 2  # changes to make
    assert sorted(made) == ["h1", "h2"]
    assert all(r.plan and len(r.plan["puts"]) == 5 for r in looked)
    made.clear()
    synced: list = []
    assert sync_instance(results=synced, **kw) == 0
    assert made == [] and all(r.plan is None and len(r.puts) == 5 for r in synced)
    assert (tmp_path / "d/h2/etc/f4.conf").read_text() == "value 4\n"
    (build / "etc/f1.conf").write_text("changed\n")
    staged: list = []  # in waves: the first look at every host is a dry run, thrown away
    assert sync_instance(results=staged, rollout=parse_rollout({"waves": [1, "100%"]}),
                         **kw) == 0
    assert made == [] and sorted(r.host for r in staged if r.changed) == ["h1", "h2"]
    assert (tmp_path / "d/h1/etc/f1.conf").read_text() == "changed\n"
