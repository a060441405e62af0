"""Atomic writes land as ordinary files (readable as the umask allows, not mkstemp's private 0600) or not at all;
what a file cannot hold, or a path that cannot be written, is a posttrain error."""

from __future__ import annotations

import json
import os
import stat

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from posttrain.data import io
from posttrain.data.convert import convert
from posttrain.data.formats import alpaca
from posttrain.errors import DataError, PosttrainError


def test_an_atomic_write_gets_the_umask_mode_not_0600(tmp_path):
    io.write_json(tmp_path / "metrics.json", {"a": 1})
    mode = stat.S_IMODE(os.stat(tmp_path / "metrics.json").st_mode)
    assert mode == 0o666 & ~io._UMASK
    if io._UMASK == 0o022:
        assert mode == 0o644


def test_a_failed_atomic_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with io.atomic_path(tmp_path / "out.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["a directory", "under a file"])
def test_an_output_path_that_cannot_be_a_file_is_a_posttrain_error(tmp_path, where):
    if where == "a directory":
        out = tmp_path / "out.jsonl"
        out.mkdir()
    else:
        (tmp_path / "a-file").write_text("")
        out = tmp_path / "a-file" / "out.jsonl"
    with pytest.raises(PosttrainError, match="cannot write the output there"):
        io.write_records(out, [{"a": 1}])
    assert not list(tmp_path.rglob("*.tmp"))


def test_an_interrupted_conversion_leaves_nothing(tmp_path, monkeypatch):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"instruction": f"q{i}", "output": "a"}) + "\n" for i in range(50)))
    real = alpaca.to_record

    def interrupted(row, columns=None, tags=None):
        if row["instruction"] == "q30":
            raise KeyboardInterrupt
        return real(row, columns, tags)

    monkeypatch.setattr(alpaca, "to_record", interrupted)
    (tmp_path / "out").mkdir()
    with pytest.raises(KeyboardInterrupt):
        convert(src, tmp_path / "out" / "o.jsonl", "alpaca", progress=False)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_value_json_cannot_hold_names_the_input_line_and_field(tmp_path):
    src = tmp_path / "in.parquet"
    pq.write_table(pa.table({"prompt": ["q", "q"], "data_source": ["s", "s"], "ground_truth": ["1", "2"],
                             "blob": [b"ok", b"\xff\x00"]}), src)
    (tmp_path / "out").mkdir()
    with pytest.raises(DataError) as info:
        convert(src, tmp_path / "out" / "o.jsonl", "rl_prompt", progress=False)
    assert (info.value.path, info.value.line, info.value.field) == (str(src), 1, "extra_info")
    assert "a value JSON cannot hold" in info.value.expected
    assert list((tmp_path / "out").iterdir()) == []


@pytest.fixture
def saved(tmp_path):
    import datasets

    path = tmp_path / "saved"
    datasets.Dataset.from_list([{"instruction": "q", "output": "a"}] * 3).save_to_disk(str(path))
    return path


def test_a_saved_dataset_reads(saved):
    assert [row for _, row in io.read_rows(saved)] == [{"instruction": "q", "output": "a"}] * 3


@pytest.mark.parametrize("damage", ["truncated arrow", "state.json", "dataset_info.json"])
def test_a_damaged_saved_dataset_is_a_data_error(saved, damage):
    if damage == "truncated arrow":
        arrow = next(saved.glob("*.arrow"))
        arrow.write_bytes(arrow.read_bytes()[:-40])
    else:
        (saved / damage).write_text("{not json")
    with pytest.raises(DataError) as info:
        list(io.read_rows(saved))
    assert info.value.path == str(saved) and info.value.field == "dataset"
