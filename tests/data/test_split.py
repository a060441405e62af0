"""split: counts, determinism by seed, unchanged rows, same extension, bad ratios."""

import json

import pytest

from posttrain.data.io import read_rows
from posttrain.data.split import split
from posttrain.errors import PosttrainError


def _rows(n):
    return [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(n)]


def _write(path, rows):
    if path.suffix == ".json":
        path.write_text(json.dumps(rows))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _read(path):
    return [row for _, row in read_rows(path)]


@pytest.mark.parametrize("n,ratios,expected", [
    (100, (0.8, 0.1, 0.1), {"train": 80, "validation": 10, "test": 10}),
    (7, (0.8, 0.1, 0.1), {"train": 6, "validation": 0, "test": 1}),
    (10, (0.9, 0.1), {"train": 9, "validation": 1}),
    (3, (1.0, 0.0), {"train": 3, "validation": 0}),
    (0, (0.8, 0.1, 0.1), {"train": 0, "validation": 0, "test": 0}),
])
def test_counts(tmp_path, n, ratios, expected):
    src = _write(tmp_path / "d.jsonl", _rows(n))
    assert split(src, tmp_path / "out", ratios) == expected
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{k}.jsonl" for k in expected)
    assert {k: len(_read(tmp_path / "out" / f"{k}.jsonl")) for k in expected} == expected


def test_every_row_lands_once_unchanged_and_shuffled(tmp_path):
    rows = _rows(50)
    src = _write(tmp_path / "d.jsonl", rows)
    split(src, tmp_path / "out")
    got = [r for k in ("train", "validation", "test") for r in _read(tmp_path / "out" / f"{k}.jsonl")]
    assert sorted(got, key=lambda r: int(r["instruction"][1:])) == rows
    assert got != rows


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    src = _write(tmp_path / "d.jsonl", _rows(60))
    split(src, tmp_path / "a", seed=7)
    split(src, tmp_path / "b", seed=7)
    split(src, tmp_path / "c", seed=8)
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "test.jsonl").read_bytes() != (tmp_path / "c" / "test.jsonl").read_bytes()


@pytest.mark.parametrize("suffix", [".json", ".parquet"])
def test_output_keeps_the_input_extension(tmp_path, suffix):
    rows = _rows(20)
    if suffix == ".parquet":
        from posttrain.data.io import write_records

        src = tmp_path / "d.parquet"
        write_records(src, rows)
    else:
        src = _write(tmp_path / "d.json", rows)
    counts = split(src, tmp_path / "out", (0.5, 0.5), names=["left", "right"])
    assert counts == {"left": 10, "right": 10}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"left{suffix}", f"right{suffix}"]
    got = _read(tmp_path / "out" / f"left{suffix}") + _read(tmp_path / "out" / f"right{suffix}")
    assert sorted(got, key=lambda r: int(r["instruction"][1:])) == rows


@pytest.mark.parametrize("ratios,names,message", [
    ((0.8, 0.1), None, r"ratios: expected non-negative numbers that sum to 1, got 0.8,0.1 \(sum 0.9\)"),
    ((1.2, -0.2), None, "ratios: expected non-negative"),
    ((0.5, 0.25, 0.25, 0.0), None, "names: expected 4 split names"),
    ((0.5, 0.5), ["a", "a"], "names: expected distinct"),
])
def test_bad_arguments(tmp_path, ratios, names, message):
    src = _write(tmp_path / "d.jsonl", _rows(3))
    with pytest.raises(PosttrainError, match=message):
        split(src, tmp_path / "out", ratios, names=names)
    assert not (tmp_path / "out").exists()


def test_bad_json_leaves_nothing(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(PosttrainError, match=r"d.jsonl:2: json: invalid JSON"):
        split(src, tmp_path / "out")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
