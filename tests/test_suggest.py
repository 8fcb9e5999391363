"""Did-you-mean: an undefined name in a template, and ``facs show --explain``,
suggest the close key that exists."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, facs

from facsimile.errors import TemplateError
from facsimile.render import LayerIndex, make_environment, render
from facsimile.suggest import close_key, did_you_mean_path

CTX = {"instance": {"app": {"port": 8080, "workers": 2}, "vhosts": [{"name": "www"}]}}


def _render(tmp_path: Path, text: str) -> str:
    folder = tmp_path / "tmpl" / "_ALL_"
    folder.mkdir(parents=True)
    (folder / "t.j2").write_text(text)
    env = make_environment(LayerIndex(tmp_path))
    with pytest.raises(TemplateError) as err:
        render(env, "t.j2", (str(folder),), CTX, tmp_path)
    return str(err.value)


def test_close_key_and_path() -> None:
    assert close_key("prot", ["port", "workers"]) == "port"
    assert close_key("zzz", ["port", "workers"]) is None
    assert did_you_mean_path(CTX, "instance.app.wrokers") == "instance.app.workers"
    assert did_you_mean_path(CTX, "instnace.app.port") == "instance.app.port"
    assert did_you_mean_path(CTX, "instance.app.port") is None


def test_template_suggests_the_close_key(tmp_path: Path) -> None:
    msg = _render(tmp_path, "a\n{{ instance.app.prot }}\n")
    assert "tmpl/_ALL_/t.j2:2" in msg
    assert "instance.app.prot is undefined; did you mean instance.app.port?" in msg


def test_template_without_a_close_key_says_only_undefined(tmp_path: Path) -> None:
    msg = _render(tmp_path, "{{ instance.app.zzzzzz }}")
    assert msg.endswith("instance.app.zzzzzz is undefined")


def test_template_top_level_name_and_plain_dict(tmp_path: Path) -> None:
    assert "did you mean instance?" in _render(tmp_path, "{{ insance.app }}")
    msg = _render(tmp_path / "b", "{% for v in instance.vhosts %}{{ v.nmae }}{% endfor %}")
    assert "did you mean 'name'?" in msg


def test_explain_suggests_the_close_key(tmp_path: Path) -> None:
    proc = facs(REPO, "show", "dev", "--explain", "app.wrokers")
    assert proc.returncode == 1
    assert "did you mean app.workers?" in proc.stderr
