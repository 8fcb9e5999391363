"""Hardening of the build: symbolic links in BUILD/ and in the layers, output
names a destination cannot hold, reads that were not tracked, secrets in
render errors, the sandbox. Through the real ``doit`` and ``facs``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import DODO, doit, facs, write_tree

BASE = {
    "dodo.py": DODO,
    "define/facsimile.json": {"name": "shop"},
    "define/modules.json": [{"name": "app"}],
    "define/dev.json": {"app": {"port": 8000}},
    "tmpl/_ALL_/etc/app.ini.j2": "port = {{ instance.app.port }}\n",
}


def one_line_error(proc, *needles: str) -> str:
    """The failed run's stderr: one line, no traceback, naming each needle."""
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    err = "\n".join(ln for ln in (proc.stdout + proc.stderr).splitlines()
                    if "error" in ln)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert len(err.splitlines()) == 1, proc.stdout + proc.stderr
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    write_tree(tmp_path / "p", BASE)
    doit(tmp_path / "p", check=True)
    return tmp_path / "p"


# ---------------------------------------------------------------- 2: links in BUILD/

def test_a_link_in_build_is_removed_as_a_link_not_followed(shop: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write_tree(outside, {"keep.txt": "precious\n", "sub/deep.txt": "precious\n"})
    os.symlink(outside, shop / "BUILD/dev/shared")
    os.symlink(outside, shop / "BUILD/old")
    doit(shop, check=True)
    assert (outside / "keep.txt").read_text() == "precious\n"
    assert (outside / "sub/deep.txt").is_file()
    assert not os.path.lexists(shop / "BUILD/dev/shared")
    assert not os.path.lexists(shop / "BUILD/old")


def test_a_write_replaces_a_link_where_an_output_goes(shop: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write_tree(outside, {"app.ini": "port = 8000\n", "etc/app.ini": "x\n"})
    out = shop / "BUILD/dev/etc/app.ini"
    out.unlink()
    os.symlink(outside / "app.ini", out)
    doit(shop, check=True)
    assert not out.is_symlink() and out.read_text() == "port = 8000\n"
    # a link where a folder of the output goes
    import shutil
    shutil.rmtree(shop / "BUILD/dev/etc")
    os.symlink(outside / "etc", shop / "BUILD/dev/etc")
    write_tree(shop, {"define/dev.json": {"app": {"port": 9000}}})
    doit(shop, check=True)
    assert (outside / "etc/app.ini").read_text() == "x\n"
    assert not (shop / "BUILD/dev/etc").is_symlink()
    assert (shop / "BUILD/dev/etc/app.ini").read_text() == "port = 9000\n"


# ---------------------------------------------------------------- 4: links in the layers

def test_a_link_out_of_the_root_is_an_error_naming_it(shop: Path, tmp_path: Path) -> None:
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$hash\n")
    (shop / "extra/_ALL_/etc").mkdir(parents=True)
    os.symlink(secret, shop / "extra/_ALL_/etc/shadow")
    one_line_error(doit(shop), "extra/_ALL_/etc/shadow", "outside")
    assert not (shop / "BUILD/dev/etc/shadow").exists()
    os.unlink(shop / "extra/_ALL_/etc/shadow")
    os.symlink(tmp_path, shop / "tmpl/_lib")
    write_tree(shop, {"tmpl/_ALL_/etc/inc.j2": '{% include "shadow" %}'})
    one_line_error(doit(shop), "tmpl/_lib", "outside")


def test_links_inside_the_root_keep_working_and_loops_are_errors(shop: Path) -> None:
    write_tree(shop, {"files/motd": "hello\n"})
    (shop / "extra/_ALL_/etc").mkdir(parents=True)
    os.symlink(shop / "files/motd", shop / "extra/_ALL_/etc/motd")
    doit(shop, check=True)
    assert (shop / "BUILD/dev/etc/motd").read_text() == "hello\n"
    os.symlink("loop", shop / "extra/_ALL_/etc/loop")
    one_line_error(doit(shop), "extra/_ALL_/etc/loop", "loop")
    os.unlink(shop / "extra/_ALL_/etc/loop")
    os.symlink("..", shop / "extra/_ALL_/etc/up")
    one_line_error(doit(shop), "loop")


# ---------------------------------------------------------------- 13: names a host cannot hold

@pytest.mark.parametrize("name", ["etc/two\nlines.conf", "etc/back\\slash.conf", "etc/tab\t"])
def test_an_output_name_a_destination_cannot_hold_is_refused(shop: Path, name: str) -> None:
    write_tree(shop, {f"tmpl/_ALL_/{name}": "x\n"})
    err = one_line_error(doit(shop), "tmpl/_ALL_/etc/", "rename it")
    assert repr(f"tmpl/_ALL_/{name}") in err
    proc = facs(shop, "build")
    one_line_error(proc, "rename it")


# ---------------------------------------------------------------- 12: what a render read

def test_a_dotted_key_and_nested_keys_are_two_reads(shop: Path) -> None:
    dns = {"www.shop": {"ttl": 300}, "www": {"shop": {"ttl": 60}}}
    write_tree(shop, {"define/dev.json": {"app": {"port": 8000}, "dns": dns},
                      "tmpl/_ALL_/etc/dns.j2": "{{ instance.dns.www.shop.ttl }} "
                                               "{{ instance.dns['www.shop'].ttl }}\n"})
    doit(shop, check=True)
    assert (shop / "BUILD/dev/etc/dns").read_text() == "60 300\n"
    for nested, dotted in ((61, 300), (61, 301)):
        dns = {"www.shop": {"ttl": dotted}, "www": {"shop": {"ttl": nested}}}
        write_tree(shop, {"define/dev.json": {"app": {"port": 8000}, "dns": dns}})
        doit(shop, check=True)
        assert (shop / "BUILD/dev/etc/dns").read_text() == f"{nested} {dotted}\n"
    assert "up to date" in doit(shop, check=True).stdout


EXTRA = '''
from pathlib import Path

import facsimile


class Shop(facsimile.Project):
    def extra_context(self, inst):
        lines = (Path(self.root.base) / "release.txt").read_text().split()
        return {"release": lines[0], "zones": lines[1:], "shout": str.upper}
'''


def test_extra_context_scalars_and_lists_are_tracked(shop: Path) -> None:
    write_tree(shop, {"define/facsimile.json": {"name": "shop", "class": "shop:Shop"},
                      "shop.py": EXTRA, "release.txt": "r1 a b\n",
                      "tmpl/_ALL_/etc/rel.j2": "{{ shout(release) }} {{ zones|join(',') }}\n"})
    doit(shop, check=True)
    assert (shop / "BUILD/dev/etc/rel").read_text() == "R1 a,b\n"
    write_tree(shop, {"release.txt": "r2 a b\n"})
    doit(shop, check=True)
    assert (shop / "BUILD/dev/etc/rel").read_text() == "R2 a,b\n"
    write_tree(shop, {"release.txt": "r2 a c\n"})
    doit(shop, check=True)
    assert (shop / "BUILD/dev/etc/rel").read_text() == "R2 a,c\n"


# ---------------------------------------------------------------- 7: secrets in render errors

@pytest.mark.parametrize("expr", ["{{ {}[module.app.password[:20]] }}",
                                  "{{ {}[module.app.password|upper] }}",
                                  "{{ (module.app.password|upper) + 1 }}",
                                  "{{ instance.app[module.app.password[2:]] }}"])
@pytest.mark.slow
def test_a_failed_render_that_read_a_secret_shows_no_value(shop: Path, expr: str) -> None:
    write_tree(shop, {"tmpl/_ALL_/etc/leak.j2": f"a\n{expr}\n"})
    proc = doit(shop)
    err = one_line_error(proc, "tmpl/_ALL_/etc/leak.j2:2", "module.app.password")
    state = json.loads(next((shop / "state").rglob("state.json")).read_text())
    password = state["modules"]["app"]["value"]
    out = proc.stdout + proc.stderr
    for i in range(len(password) - 5):
        for chunk in (password[i:i + 6], password[i:i + 6].upper()):
            assert chunk not in out, err


# ---------------------------------------------------------------- 11: templates are code

ESCAPE = "{{ cycler.__init__.__globals__.os.system('touch RAN-' ~ instance.name) }}\n"


def test_plan_renders_only_the_stale_outputs(shop: Path) -> None:
    write_tree(shop, {"tmpl/_ALL_/etc/code.j2": ESCAPE})
    doit(shop, check=True)
    (shop / "RAN-dev").unlink()
    write_tree(shop, {"define/dev.json": {"app": {"port": 9000}}})
    for args in (("plan",), ("plan", "--diff"), ("plan", "--json")):
        proc = facs(shop, *args)
        assert "etc/app.ini" in proc.stdout, proc.stdout + proc.stderr
        assert not (shop / "RAN-dev").exists(), args


def test_the_sandbox_refuses_python_internals(shop: Path) -> None:
    write_tree(shop, {"define/facsimile.json": {"name": "shop", "sandbox": True},
                      "tmpl/_ALL_/etc/code.j2": "x\n" + ESCAPE,
                      "tmpl/_ALL_/etc/ok.j2": "{{ instance.app.port }} {{ module.app|tojson }}"
                                              " {% for k, v in instance.app.items() %}{{ k }}"
                                              "{% endfor %} {{ range(2)|list }}\n"})
    one_line_error(doit(shop), "tmpl/_ALL_/etc/code.j2:2", "unsafe")
    assert not (shop / "RAN-dev").exists()
    assert (shop / "BUILD/dev/etc/ok").read_text().startswith("8000 {")


# ---------------------------------------------------------------- 6: plan --diff masks

PW = {"tmpl/_ALL_/etc/db.ini.j2": "user = app\npassword = {{ module.app.password }}\n"}



def test_plan_diff_never_shows_a_removed_instance_s_old_content(shop: Path) -> None:
    write_tree(shop, {**PW, "define/prod.json": {"app": {"port": 1}}})
    doit(shop, check=True)
    secret = (shop / "BUILD/prod/etc/db.ini").read_text().split(" = ")[-1].strip()
    (shop / "define/prod.json").unlink()
    for args in (("plan", "--diff"), ("plan", "--json")):
        proc = facs(shop, *args)
        assert "BUILD/prod/etc/db.ini" in proc.stdout, proc.stdout + proc.stderr
        assert secret not in proc.stdout + proc.stderr, args


@pytest.mark.slow
def test_plan_diff_masks_a_password_rotated_out_of_the_history(shop: Path) -> None:
    write_tree(shop, PW)
    doit(shop, check=True)
    first = (shop / "BUILD/dev/etc/db.ini").read_text().split(" = ")[-1].strip()
    assert len(first) >= 8
    for _ in range(4):
        facs(shop, "state", "rotate", "dev", "app", check=True)
    # the template changes too: the old line is no pattern of the new one
    write_tree(shop, {"tmpl/_ALL_/etc/db.ini.j2": "[db]\npass: {{ module.app.password }}\n"})
    for args in (("plan", "--diff"), ("plan", "--json")):
        proc = facs(shop, *args)
        assert "etc/db.ini" in proc.stdout, proc.stdout + proc.stderr
        assert first not in proc.stdout + proc.stderr, proc.stdout


# ---------------------------------------------------------------- errors in BUILD/: one line

def test_a_file_where_the_instance_folder_goes_is_replaced(shop: Path) -> None:
    import shutil
    shutil.rmtree(shop / "BUILD/dev")
    (shop / "BUILD/dev").write_text("in the way\n")
    (shop / ".doit.db").unlink()
    doit(shop, check=True)
    assert (shop / "BUILD/dev/etc/app.ini").read_text() == "port = 8000\n"


@pytest.fixture
def immutable():
    """``chattr +i`` a folder (root writes into a 0555 one), undone at the end."""
    import subprocess
    done: list[Path] = []

    def freeze(path: Path) -> None:
        proc = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        if proc.returncode != 0:
            pytest.skip("chattr +i is not available here")
        done.append(path)
    yield freeze
    for path in done:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_folder_fails_its_outputs_and_keeps_the_others(shop: Path,
                                                                   immutable) -> None:
    write_tree(shop, {"tmpl/_ALL_/etc/b.j2": "b {{ instance.app.port }}\n",
                      "tmpl/_ALL_/var/c.j2": "c {{ instance.app.port }}\n",
                      "tmpl/_ALL_/var/d.j2": "d {{ instance.app.port }}\n"})
    doit(shop, check=True)
    write_tree(shop, {"define/dev.json": {"app": {"port": 9000}}})
    immutable(shop / "BUILD/dev/etc")
    proc = doit(shop)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    errors = [ln for ln in proc.stdout.splitlines() if "error" in ln]
    assert len(errors) == 2, proc.stdout
    assert all("cannot write BUILD/dev/etc/" in ln for ln in errors), errors
    assert (shop / "BUILD/dev/var/c").read_text() == "c 9000\n"
    # the outputs made before and after the failures kept their records
    again = doit(shop)
    assert "var/" not in again.stdout, again.stdout


FULL_DISK = DODO + '''
import errno, os
_write = os.write
def write(fd, data):
    path = os.readlink(f"/proc/self/fd/{fd}")  # c itself (new) or its temporary file
    if path.endswith("/BUILD/dev/etc/c") or "/BUILD/dev/etc/.c." in path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return _write(fd, data)
os.write = write
'''


@pytest.mark.parametrize("fast", ["1", "0"])
def test_a_full_disk_is_one_line_and_the_others_keep_their_records(shop: Path,
                                                                   fast: str) -> None:
    write_tree(shop, {"tmpl/_ALL_/etc/b.j2": "b {{ instance.app.port }}\n",
                      "tmpl/_ALL_/etc/c.j2": "c {{ instance.app.port }}\n",
                      "tmpl/_ALL_/var/d.j2": "d {{ instance.app.port }}\n",
                      "dodo.py": FULL_DISK})
    proc = doit(shop, env={"FACSIMILE_FAST": fast})
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    errors = [ln for ln in proc.stdout.splitlines() if "error" in ln]
    assert errors == ["facsimile: error: build:dev/etc/c: cannot write BUILD/dev/etc/c: "
                      "No space left on device"], proc.stdout
    assert not list((shop / "BUILD/dev/etc").glob(".*.tmp"))
    # a new output is made in place (batched, FACSIMILE_FAST=1) or through a temporary
    # file (one task each): either way the failed write leaves no part of it
    assert not (shop / "BUILD/dev/etc/c").exists()
    assert (shop / "BUILD/dev/etc/b").read_text() == "b 8000\n"
    write_tree(shop, {"dodo.py": DODO})
    again = doit(shop, check=True, env={"FACSIMILE_FAST": fast})
    # b, made before the failure, kept its record; one task a run stops doit (no -k)
    remade = {"etc/c"} if fast == "1" else {"etc/c", "var/d"}
    assert {ln for ln in again.stdout.splitlines() if ln.startswith(".")} == {
        f".  build:dev/{r}" for r in remade}, again.stdout


KILLED = DODO + '''
import os, signal
_write = os.write
def write(fd, data):
    path = os.readlink(f"/proc/self/fd/{fd}")
    if path.endswith("/BUILD/dev/etc/c") or "/BUILD/dev/etc/.c." in path:
        _write(fd, data[:2])  # half of it, then the process is gone
        os.kill(os.getpid(), signal.SIGKILL)
    return _write(fd, data)
os.write = write
'''


@pytest.mark.parametrize("fast", ["1", "0"])
def test_an_output_a_kill_left_half_written_is_made_again(shop: Path, fast: str) -> None:
    write_tree(shop, {"tmpl/_ALL_/etc/b.j2": "b {{ instance.app.port }}\n",
                      "tmpl/_ALL_/etc/c.j2": "c {{ instance.app.port }}\n",
                      "dodo.py": KILLED})
    proc = doit(shop, env={"FACSIMILE_FAST": fast})
    assert proc.returncode == -9, proc.stdout + proc.stderr
    left = shop / "BUILD/dev/etc/c"
    assert (left.read_text() == "c " if fast == "1"  # made in place: half of it is there
            else not left.exists())  # one task each: only its temporary file
    write_tree(shop, {"dodo.py": DODO})
    again = doit(shop, check=True, env={"FACSIMILE_FAST": fast})
    assert ".  build:dev/etc/c" in again.stdout.splitlines(), again.stdout
    assert left.read_text() == "c 8000\n"
    assert not list((shop / "BUILD/dev/etc").glob(".*.tmp"))  # pruned as an orphan
    assert facs(shop, "plan").returncode == 0


INTERRUPTED = DODO + '''
import os
_open = os.open
def open_(path, *args, **kwargs):
    fd = _open(path, *args, **kwargs)
    if str(path).endswith("/BUILD/dev/etc/c"):  # Ctrl-C just as the file is made
        os.close(fd)
        raise KeyboardInterrupt
    return fd
os.open = open_
'''


def test_an_interrupt_just_after_a_new_output_is_made_leaves_no_part_of_it(
        shop: Path) -> None:
    """A signal's handler runs as soon as the call that made the file returns, before
    its descriptor is kept: the file is still removed (it was not there before)."""
    write_tree(shop, {"tmpl/_ALL_/etc/c.j2": "c {{ instance.app.port }}\n",
                      "dodo.py": INTERRUPTED})
    proc = doit(shop)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert not (shop / "BUILD/dev/etc/c").exists()
    write_tree(shop, {"dodo.py": DODO})
    doit(shop, check=True)
    assert (shop / "BUILD/dev/etc/c").read_text() == "c 8000\n"


def test_sandbox_must_be_true_or_false(shop: Path) -> None:
    write_tree(shop, {"define/facsimile.json": {"name": "shop", "sandbox": "yes"}})
    one_line_error(doit(shop), "sandbox must be true or false")


def test_a_link_into_state_is_an_error(shop: Path) -> None:
    (shop / "extra/_ALL_").mkdir(parents=True)
    os.symlink(shop / "state", shop / "extra/_ALL_/state")
    one_line_error(doit(shop), "extra/_ALL_/state", "state/")
    assert not (shop / "BUILD/dev/state").exists()


# ---------------------------------------------------------------- 2: a sync never sends a link

@pytest.mark.parametrize("link", ["etc/leak.txt", "shop/linked", "shop/static"])
@pytest.mark.slow
def test_a_link_in_the_build_is_never_followed_by_a_sync(tmp_path: Path, link: str) -> None:
    from test_sync import make_root

    root = make_root(tmp_path, {"url": f"file://{tmp_path}/dest/{{host}}"})
    write_tree(tmp_path / "outside", {"marker.txt": "MARKER outside the root\n",
                                      "index.html": "MARKER outside the root\n"})
    target = tmp_path / "outside" / ("marker.txt" if link.endswith(".txt") else "")
    if link == "shop/static":  # a folder of the build replaced by a link
        import shutil
        shutil.rmtree(root / "BUILD/dev/shop/static")
    os.symlink(target, root / "BUILD/dev" / link)
    for args in (("--no-build",), ("--dry-run", "--diff"), ("--check",)):
        proc = facs(root, "sync", "dev", *args)
        one_line_error(proc, f"BUILD/dev/{link}: a symbolic link in the build")
        assert "MARKER" not in proc.stdout + proc.stderr
    dest = tmp_path / "dest"
    marked = lambda: [p for p in dest.rglob("*") if p.is_file() and b"MARKER" in p.read_bytes()]  # noqa: E731
    assert not marked()
    facs(root, "sync", "dev", check=True)  # its build removes the link first
    assert not (root / "BUILD/dev" / link).is_symlink()
    assert not marked()


# ---------------------------------------------------------------- a file where BUILD/ goes

COMMANDS = [("doit",), ("facs", "build"), ("facs", "plan"), ("facs", "plan", "--diff"),
            ("facs", "sync", "dev")]


def _run(root: Path, command: tuple[str, ...]):
    return doit(root) if command == ("doit",) else facs(root, *command[1:])


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.slow
def test_build_being_a_file_is_one_line_naming_it(shop: Path, command: tuple[str, ...]) -> None:
    import shutil
    shutil.rmtree(shop / "BUILD")
    (shop / "BUILD").write_text("not a folder\n")
    write_tree(shop, {"define/dev.json": {"app": {"port": 8000}, "deploy": {
        "url": f"file://{shop.parent}/dest/{{host}}"}, "targets": {"web": {"hosts": ["h1"]}}}})
    one_line_error(_run(shop, command), "BUILD: is a file, not a folder")
    assert (shop / "BUILD").read_text() == "not a folder\n"  # never removed


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("in_the_way", ["BUILD/dev", "BUILD/dev/etc"])
@pytest.mark.slow
def test_a_file_where_a_folder_of_build_goes_is_replaced(shop: Path, command: tuple[str, ...],
                                                         in_the_way: str) -> None:
    import shutil
    write_tree(shop, {"define/dev.json": {"app": {"port": 8000}, "deploy": {
        "url": f"file://{shop.parent}/dest/{{host}}"}, "targets": {"web": {"hosts": ["h1"]}}}})
    doit(shop, check=True)
    shutil.rmtree(shop / in_the_way)
    (shop / in_the_way).write_text("in the way\n")
    proc = _run(shop, command)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    if command[:2] == ("facs", "plan"):  # it says so, and changes nothing
        said = f"{in_the_way}: orphan" if in_the_way == "BUILD/dev/etc" else "missing from BUILD"
        assert proc.returncode == 2 and said in proc.stdout, proc.stdout
        assert (shop / in_the_way).read_text() == "in the way\n"
        return
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (shop / "BUILD/dev/etc/app.ini").read_text() == "port = 8000\n"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("in_the_way", ["a folder", "a link"])
@pytest.mark.slow
def test_a_folder_or_a_link_where_an_output_goes_is_replaced(
        shop: Path, tmp_path: Path, command: tuple[str, ...], in_the_way: str) -> None:
    write_tree(shop, {"define/dev.json": {"app": {"port": 8000}, "deploy": {
        "url": f"file://{tmp_path}/dest/{{host}}"}, "targets": {"web": {"hosts": ["h1"]}}}})
    write_tree(tmp_path / "outside", {"x.txt": "MARKER\n"})
    doit(shop, check=True)
    out = shop / "BUILD/dev/etc/app.ini"
    out.unlink()
    if in_the_way == "a folder":
        write_tree(out, {"sub/f.txt": "MARKER\n"})
    else:
        os.symlink(tmp_path / "outside/x.txt", out)
    proc = _run(shop, command)
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text and "MARKER" not in text, text
    if command[:2] == ("facs", "plan"):  # it says so, and changes nothing
        assert proc.returncode == 2, text
        assert f"BUILD/dev/etc/app.ini: {in_the_way} in BUILD where the output goes" in text
        assert out.is_dir() if in_the_way == "a folder" else out.is_symlink()
        return
    assert proc.returncode == 0, text
    assert not out.is_symlink() and out.read_text() == "port = 8000\n"
    assert (tmp_path / "outside/x.txt").read_text() == "MARKER\n"
