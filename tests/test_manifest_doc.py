"""A manifest's (and a pending record's) bytes are exactly those of
``json.dumps(doc, indent=1)`` plus a newline, whatever its entries hold: the
two shapes facsimile writes, written in one step each, and any other."""

from __future__ import annotations

import json

import pytest

from facsimile.sync.manifest import document

META = {"instance": "dev", "family": "dev", "lineage": "abc", "serial": 3, "generation": 2,
        "made": 2, "history": [{"generation": 2, "kept": ["a"]}]}


def _expected(files: dict, meta: dict | None = None) -> bytes:
    doc = {"format": 1, "written_by": "facsimile"}
    doc.update({k: v for k, v in (meta or {}).items() if v is not None})
    doc["files"] = dict(sorted(files.items()))
    return (json.dumps(doc, indent=1) + "\n").encode()


@pytest.mark.parametrize("files", [
    {},
    {"etc/b.conf": {"digest": "ab" * 32, "mode": 420},
     "etc/a.conf": {"digest": "cd" * 32, "mode": 384, "size": 12, "mtime": "1796000000"}},
    {"é/\"quoted\"\\n.conf": {"digest": "ef" * 32, "mode": 420, "size": 0, "mtime": "1.5"}},
    {"a": {"mode": 420, "digest": "ab" * 32}},  # another key order, kept
    {"a": {"digest": "ab" * 32, "mode": True}},  # a boolean is not a mode
    {"a": {"digest": "ab" * 32, "mode": 420, "size": 1, "mtime": 17}},  # an int mtime
    {"a": {"digest": None, "mode": 420}, "b": {}},
    {"a": {"digest": "ab" * 32, "mode": 420, "extra": [1, 2]}},  # left to json
    {"a": {"digest": "ab" * 32, "mode": 1.5}},
])
def test_a_document_is_json_dumps_with_indent_1(files: dict) -> None:
    assert document(files) == _expected(files)
    assert document(files, META) == _expected(files, META)
