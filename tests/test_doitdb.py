"""facsimile's doit backend: one record a line, unchanged lines written back as read."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from doit.dependency import JSONCodec

from facsimile.tasks.fast.doitdb import FacsimileDB


def open_db(path: Path) -> FacsimileDB:
    return FacsimileDB(str(path), JSONCodec())


def record(i: int, extra: str = "") -> dict:
    return {"s": f"tmpl/t{i}.j2", "v": {"instance.x": f"d{i}{extra}"}, "o": [i, 10, "ab"]}


def filled(path: Path, n: int) -> FacsimileDB:
    db = open_db(path)
    for i in range(n):
        db.set(f"build:dev/t{i}", "_values_:", record(i))
        db.set(f"build:dev/t{i}", "deps:", ())
    db.dump()
    return db


def test_one_record_a_line_and_unchanged_lines_are_kept(tmp_path: Path) -> None:
    path = tmp_path / ".doit.db"
    filled(path, 5)
    lines = path.read_text().splitlines()
    assert lines[0] == "{" and lines[-1] == "}" and len(lines) == 7
    assert json.loads(path.read_text())["build:dev/t3"]["_values_:"] == record(3)
    db = open_db(path)
    db.set("build:dev/t3", "_values_:", record(3, "changed"))
    db.remove("build:dev/t1")
    db.set("build:dev/new", "_values_:", record(9))
    assert db._patched() is not None  # the lines read, patched: not every record encoded
    db.dump()
    after = path.read_text().splitlines()
    # the untouched records' lines are byte for byte what was read
    for i in (0, 2, 4):
        assert lines[1 + i] in after or lines[1 + i] + "," in after
    data = json.loads(path.read_text())
    assert data["build:dev/t3"]["_values_:"] == record(3, "changed")
    assert "build:dev/t1" not in data and data["build:dev/new"]["_values_:"] == record(9)
    assert data == open_db(path).data


def test_a_no_op_does_not_write(tmp_path: Path) -> None:
    path = tmp_path / ".doit.db"
    filled(path, 3)
    before = path.stat().st_mtime_ns
    db = open_db(path)
    db.set("build:dev/t1", "_values_:", record(1))  # the same value
    db.dump()
    assert path.stat().st_mtime_ns == before


@pytest.mark.parametrize("layout", [
    {},  # doit's own: one line
    {"indent": 2},
    {"indent": 0},  # lines that start with a key but are not whole records
    {"separators": (",", ":")},
])
def test_other_layouts_are_read_and_rewritten_whole(tmp_path: Path, layout: dict) -> None:
    path = tmp_path / ".doit.db"
    data = {f"build:dev/t{i}": {"_values_:": record(i), "deps:": []} for i in range(4)}
    path.write_text(json.dumps(data, **layout) + ("\n" if layout.get("indent") is not None
                                                  else ""))
    db = open_db(path)
    assert db.data == data
    db.set("build:dev/t2", "_values_:", record(2, "x"))
    db.dump()
    data["build:dev/t2"]["_values_:"] = record(2, "x")
    assert json.loads(path.read_text()) == data
    assert len(path.read_text().splitlines()) == 6  # one record a line from now on


def test_random_changes_read_back_as_made(tmp_path: Path) -> None:
    path = tmp_path / ".doit.db"
    filled(path, 30)
    rng = random.Random(7)
    expected = open_db(path).data
    db = open_db(path)
    for _ in range(40):
        if rng.random() < 0.5:  # read again, or dump the same database once more
            db = open_db(path)
        for _ in range(rng.randint(0, 6)):
            key = f"build:dev/t{rng.randint(0, 40)}"
            if rng.random() < 0.3:
                db.remove(key)
                expected.pop(key, None)
            else:
                value = record(rng.randint(0, 99), 'q"\\\n' * rng.randint(0, 1))
                db.set(key, "_values_:", value)
                expected.setdefault(key, {})["_values_:"] = value
        db.dump()
        assert json.loads(path.read_text()) == expected
        assert len(path.read_text().splitlines()) == len(expected) + 2


def test_keys_that_json_escapes_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / ".doit.db"
    db = filled(path, 3)
    for key in ("build:dev/café", 'build:dev/a"b', "build:dev/back\\slash"):
        db.set(key, "_values_:", record(5))
    db.dump()
    expected = json.loads(path.read_text())
    assert set(expected) >= {"build:dev/café", 'build:dev/a"b'}
    db = open_db(path)
    db.set("build:dev/t0", "_values_:", record(0, "x"))
    db.dump()
    expected["build:dev/t0"]["_values_:"] = record(0, "x")
    assert json.loads(path.read_text()) == expected
    # a blank line where a record should be: read, and written whole
    text = path.read_text().replace("\n", "\n\n", 1)
    path.write_text(text[:text.rindex("\n}")] + "\n}\n")
    db = open_db(path)
    db.set("build:dev/t1", "_values_:", record(1, "y"))
    db.dump()
    expected["build:dev/t1"]["_values_:"] = record(1, "y")
    assert json.loads(path.read_text()) == expected


def test_a_damaged_file_is_one_line_and_exit_1(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / ".doit.db"
    path.write_text('{\n"build:dev/t1":{"_values_:"\n}\n')
    with pytest.raises(SystemExit) as stop:
        open_db(path)
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "doit's database cannot be read" in err


def test_records_saved_with_their_encoded_lines_dump_as_saved_one_by_one(tmp_path: Path) -> None:
    """A batch saves a new record with its line already encoded (save_record with a
    line): the file is byte for byte the one saving each entry by set() makes, a key
    JSON escapes included, and a record set again afterwards dumps its new value."""
    from facsimile.tasks.fast.batch import save_record, task_record
    from facsimile.tasks.fast.doitdb import record_line

    names = [f"build:dev/t{i}" for i in range(4)] + ['build:d\u00e9v/"q".conf']
    by_line, by_set = open_db(tmp_path / "a.db"), open_db(tmp_path / "b.db")
    for i, name in enumerate(names):
        values = record(i, "\u00e9")
        save_record(by_line, "MD5Checker", name,
                    values, record_line(name, task_record(values, "MD5Checker")))
        save_record(by_set, "MD5Checker", name, values)
    assert by_line._encoded and not by_set._encoded  # the first took the lines
    for db in (by_line, by_set):
        db.set(names[2], "_values_:", record(2, "again"))
        db.dump()
    text = (tmp_path / "a.db").read_text()
    assert text == (tmp_path / "b.db").read_text()
    assert json.loads(text)[names[2]]["_values_:"] == record(2, "again")
    # a task that has a record already goes the way of set(): the line is not kept
    db = open_db(tmp_path / "a.db")
    values = record(0, "new")
    save_record(db, "MD5Checker", names[0], values,
                record_line(names[0], task_record(values, "MD5Checker")))
    assert names[0] not in db._encoded and db.get(names[0], "_values_:") == values
