"""The plain-Python merge walk gives exactly jsonmerge's result and errors."""

from __future__ import annotations

import random
from typing import Any

import jsonmerge
import pytest
from jsonmerge.exceptions import JSONMergeError

from facsimile.define.merge import _Pointer, fast_merge, plain_schema

SCHEMA = {"properties": {
    "hosts": {"mergeStrategy": "append"},
    "vhosts": {"mergeStrategy": "arrayMergeById", "mergeOptions": {"idRef": "name"}},
    "limits": {"mergeStrategy": "overwrite"},
    "env": {"mergeStrategy": "objectMerge"},
    "deep": {"properties": {"list": {"mergeStrategy": "append"}}},
}, "patternProperties": {"^x_": {"mergeStrategy": "append"}}}

KEYS = ["a", "b", "hosts", "vhosts", "limits", "env", "deep", "list", "x_one", "n"]


def value(rng: random.Random, depth: int) -> Any:
    kind = rng.choice(["int", "str", "list", "dict", "dict", "none", "vhosts"])
    if kind == "int":
        return rng.randint(0, 3)
    if kind == "str":
        return rng.choice(["p", "q"])
    if kind == "none":
        return None
    if kind == "list":
        return [rng.randint(0, 3) for _ in range(rng.randint(0, 3))]
    if kind == "vhosts":
        return [{"name": n, "tls": rng.random() < 0.5} for n in rng.sample(["w", "x", "y"], 2)]
    if depth > 2:
        return {}
    return {k: value(rng, depth + 1) for k in rng.sample(KEYS, rng.randint(0, 4))}


def outcome(fn: Any) -> Any:
    try:
        return ("ok", fn())
    except (JSONMergeError, _Pointer) as exc:
        inner = exc.exc if isinstance(exc, _Pointer) else exc
        return ("error", type(inner).__name__)


@pytest.mark.parametrize("schema", [{}, SCHEMA], ids=["no schema", "strategies"])
@pytest.mark.slow
def test_fast_merge_equals_jsonmerge(schema: dict) -> None:
    rng = random.Random(7)
    merger = jsonmerge.Merger(schema)
    compared = errors = 0
    for _ in range(3000):
        base = {k: value(rng, 1) for k in rng.sample(KEYS, rng.randint(0, 5))}
        head = {k: value(rng, 1) for k in rng.sample(KEYS, rng.randint(0, 5))}
        want = outcome(lambda b=base, h=head: merger.merge(b, h))
        got = outcome(lambda b=base, h=head: fast_merge(b, h, schema, {}))
        assert got == want, (base, head)
        compared += 1
        errors += want[0] == "error"
    assert compared == 3000 and 0 < errors < compared  # both kinds of outcome were seen


def test_schemas_with_references_take_the_jsonmerge_path() -> None:
    assert plain_schema(SCHEMA)
    assert not plain_schema({"properties": {"a": {"$ref": "#/definitions/x"}}})
    assert not plain_schema({"oneOf": [{}]})
