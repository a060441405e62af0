"""Parquet in and out: a damaged file or a column of mixed types is a DataError naming file, row and column."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from posttrain.data import parquet
from posttrain.data.convert import convert
from posttrain.data.io import read_rows, write_records
from posttrain.errors import DataError

CHAT = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}


def _table(path, **columns):
    pq.write_table(pa.table(columns), path, compression="none", use_dictionary=False)
    return path


@pytest.mark.parametrize("damage", [lambda data: data[:-5], lambda data: b"", lambda data: b"not parquet at all",
                                    lambda data: data[:len(data) // 2]])
def test_a_file_that_is_not_parquet_names_the_file(tmp_path, damage):
    path = _table(tmp_path / "in.parquet", text=["a", "b"])
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError) as info:
        list(read_rows(path))
    assert info.value.path == str(path) and info.value.field == "parquet"
    assert "not a readable parquet file" in info.value.expected


def test_damaged_column_data_names_the_row_and_the_column(tmp_path):
    path = _table(tmp_path / "in.parquet", id=[1, 2, 3], text=["MARKERAAAA", "MARKERBBBB", "MARKERCCCC"])
    data = bytearray(path.read_bytes())
    at = data.find(b"MARKERAAAA")
    data[at - 4:at] = (1 << 30).to_bytes(4, "little")  # the page no longer holds what its header says
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as info:
        list(read_rows(path))
    assert (info.value.path, info.value.line, info.value.field) == (str(path), 1, "text")


def test_a_field_of_another_type_names_the_input_line_and_field(tmp_path):
    rows = [{"prompt": "q", "data_source": "s", "ground_truth": "2"},
            {"prompt": "q", "data_source": "s", "ground_truth": "3"},
            {"prompt": "q", "data_source": "s", "ground_truth": [3]}]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out" / "o.parquet"
    with pytest.raises(DataError) as info:
        convert(src, out, "rl_prompt", progress=False)
    assert (info.value.path, info.value.line, info.value.field) == (str(src), 3, "ground_truth")
    assert "write .jsonl or .json" in info.value.expected and str(out) in info.value.expected
    assert list(out.parent.iterdir()) == []


def test_without_an_origin_the_output_record_is_named(tmp_path):
    out = tmp_path / "o.parquet"
    with pytest.raises(DataError) as info:
        write_records(out, [{"a": 1}, {"a": "x"}])
    assert (info.value.path, info.value.line, info.value.field) == (str(out), 2, "a")
    assert not out.exists()


def test_a_field_the_first_batch_lacked_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(parquet, "WRITE_BATCH", 2)
    records = [{"a": 1}, {"a": 2}, {"a": 3}, {"a": 4, "b": "new"}]
    with pytest.raises(DataError) as info:
        write_records(tmp_path / "o.parquet", records)
    assert (info.value.line, info.value.field) == (4, "b") and "first 2 records" in info.value.expected


def test_a_value_too_large_for_int64_is_named(tmp_path):
    with pytest.raises(DataError) as info:
        write_records(tmp_path / "o.parquet", [{"n": 1}, {"n": 10 ** 30}])
    assert (info.value.line, info.value.field) == (2, "n")


def test_records_of_one_shape_round_trip(tmp_path):
    assert write_records(tmp_path / "o.parquet", [CHAT, CHAT]) == 2
    assert [row for _, row in read_rows(tmp_path / "o.parquet")] == [CHAT, CHAT]
