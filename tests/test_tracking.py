"""Read tracking when one context renders many outputs: every render records its
own reads, and a context changed between renders is looked through again."""

from __future__ import annotations

from pathlib import Path

from facsimile.render import LayerIndex, make_environment, render


def _env(tmp_path: Path, **templates: str) -> tuple[object, tuple[str, ...]]:
    folder = tmp_path / "tmpl"
    folder.mkdir()
    for name, text in templates.items():
        (folder / f"{name}.j2").write_text(text)
    return make_environment(LayerIndex(tmp_path)), (str(folder),)


def test_each_render_of_one_context_records_its_own_reads(tmp_path: Path) -> None:
    env, search = _env(tmp_path, a="{{ instance.name }}", b="{{ module.db.port }} {{ n }}")
    ctx = {"instance": {"name": "dev"}, "module": {"db": {"port": 5432}}, "n": 3}
    first = render(env, "a.j2", search, ctx, tmp_path)
    second = render(env, "b.j2", search, ctx, tmp_path)
    again = render(env, "a.j2", search, ctx, tmp_path)
    assert first.data == again.data == b"dev"
    assert first.reads == again.reads == {"instance.name": "dev"}
    assert second.data == b"5432 3"
    assert second.reads == {"module.db.port": 5432, "n": 3}


def test_a_context_changed_after_a_render_is_tracked_as_it_is_now(tmp_path: Path) -> None:
    env, search = _env(tmp_path, e="{{ extra }} {{ instance.name }}",
                       t="{{ extra.key }} {{ instance.name }}", late="{{ late.x }}")
    ctx: dict[str, object] = {"instance": {"name": "dev"}, "extra": "plain"}
    assert render(env, "e.j2", search, ctx, tmp_path).reads == {
        "extra": "plain", "instance.name": "dev"}
    ctx["extra"] = {"key": "v"}  # a plain value became a mapping: its reads are paths now
    ctx["instance"] = {"name": "prod"}  # a mapping replaced by another
    r = render(env, "t.j2", search, ctx, tmp_path)
    assert r.data == b"v prod"
    assert r.reads == {"extra.key": "v", "instance.name": "prod"}
    ctx["late"] = {"x": 1}  # a name added
    assert render(env, "late.j2", search, ctx, tmp_path).reads == {"late.x": 1}
