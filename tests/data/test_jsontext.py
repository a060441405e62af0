"""Strict JSON reading: what json.loads lets through or trips over is a DataError naming file, line and field."""

from __future__ import annotations

import json
import time

import pytest

from posttrain.data import jsontext
from posttrain.data.io import read_rows
from posttrain.errors import DataError

ROW = {"instruction": "q", "output": "a"}


def _rows(path):
    return [row for _, row in read_rows(path)]


def _error(path) -> DataError:
    with pytest.raises(DataError) as info:
        _rows(path)
    return info.value


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_invalid_utf8_names_file_line_and_byte(tmp_path, suffix):
    good = json.dumps(ROW).encode()
    bad = b'{"instruction": "caf\xe9", "output": "x"}'
    path = tmp_path / f"in{suffix}"
    path.write_bytes(b"[\n" + good + b",\n" + bad + b"\n]\n" if suffix == ".json" else good + b"\n" + bad + b"\n")
    error = _error(path)
    line = 3 if suffix == ".json" else 2
    assert str(error) == f"{path}:{line}: encoding: invalid UTF-8 (invalid continuation byte at byte 21); " \
                         "expected UTF-8 text"


def test_invalid_utf8_in_a_text_file_names_its_line(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(b"first line\nsecond \xff line\n")
    assert str(_error(path)) == f"{path}:2: encoding: invalid UTF-8 (invalid start byte at byte 8); expected UTF-8 text"


def test_invalid_utf8_between_array_elements_is_an_encoding_error(tmp_path):
    path = tmp_path / "in.json"
    path.write_bytes(b'[{"a": 1},\n\xff{"a": 2}]')
    error = _error(path)
    assert (error.line, error.field) == (2, "encoding")


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_bom_is_not_data(tmp_path, suffix):
    path = tmp_path / f"in{suffix}"
    text = json.dumps([ROW]) if suffix == ".json" else json.dumps(ROW) + "\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert _rows(path) == [ROW]


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
@pytest.mark.parametrize("depth", [jsontext.MAX_DEPTH + 1, 100_000])
def test_deep_nesting_is_a_data_error(tmp_path, suffix, depth):
    element = '{"instruction": ' + "[" * depth + "]" * depth + ', "output": "a"}'
    path = tmp_path / f"in{suffix}"
    path.write_text(f"[\n{json.dumps(ROW)},\n{element}\n]" if suffix == ".json" else f"{json.dumps(ROW)}\n{element}\n")
    error = _error(path)
    assert (error.line, error.field) == (3 if suffix == ".json" else 2, "json")
    assert f"nested more than {jsontext.MAX_DEPTH} levels deep" in error.expected


def test_nesting_up_to_the_limit_is_read(tmp_path):
    depth = jsontext.MAX_DEPTH - 1  # the row itself is a level
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": ' + "[" * depth + "]" * depth + "}\n")
    assert len(_rows(path)) == 1


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_duplicate_key_names_the_key_and_line(tmp_path, suffix):
    bad = '{"instruction": "q", "output": "a", "output": "b"}'
    path = tmp_path / f"in{suffix}"
    path.write_text(f"[\n{json.dumps(ROW)},\n{bad}\n]" if suffix == ".json" else f"{json.dumps(ROW)}\n{bad}\n")
    error = _error(path)
    assert (error.line, error.field) == (3 if suffix == ".json" else 2, "output")
    assert "given twice in one object" in error.expected


def test_a_duplicate_key_deep_inside_is_found(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "x", "role": "assistant"}]}\n')
    assert _error(path).field == "role"


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "x\\ud83d"])
def test_a_lone_surrogate_escape_names_its_field(tmp_path, escape):
    path = tmp_path / "in.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "' + escape + '"}]}\n')
    error = _error(path)
    assert error.field == "messages[0].content" and "lone surrogate" in error.expected


def test_a_surrogate_pair_is_one_character(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "\\ud83d\\ude00"}\n')
    assert _rows(path) == [{"text": "\U0001F600"}]


def test_a_number_too_long_for_python_is_a_data_error(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"a": ' + "1" * 5000 + "}\n")
    error = _error(path)
    assert (error.line, error.field) == (1, "json") and "4300 digits" in error.expected


@pytest.mark.parametrize("text,expected", [
    ('[{"a": 1} {"a": 2}]', "expected , or ] after an element"),
    ('[{"a": 1},]', "expected an element after ,"),
    ('[{"a": 1}] {"a": 2}', "extra data after the array's ]"),
    ('[{"a": 1},\n', "the array is not closed with ]"),
    ('[{"a": 1}, {"a": ', "Expecting value"),
    ('[{"a": "\x01"}]', "Invalid control character at"),
])
def test_a_malformed_array_is_refused(tmp_path, text, expected):
    path = tmp_path / "in.json"
    path.write_text(text)
    error = _error(path)
    assert error.field == "json" and expected in error.expected


def test_an_array_split_across_many_reads_keeps_its_line_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(jsontext, "_CHUNK", 7)
    rows = [{"n": i, "text": "x" * (i * 5)} for i in range(40)]
    path = tmp_path / "in.json"
    path.write_text("[\n" + ",\n".join(json.dumps(r, indent=1) for r in rows) + "\n]\n")
    numbered = list(read_rows(path))
    assert [row for _, row in numbered] == rows
    lines = path.read_text().splitlines()
    assert all(lines[line - 1].strip() == "{" for line, _ in numbered)


def test_numbers_cut_by_a_read_are_read_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(jsontext, "_CHUNK", 3)
    path = tmp_path / "in.json"
    path.write_text("[12345, 1e5, -0.25, 7]")
    assert _rows(path) == [12345, 1e5, -0.25, 7]


def test_a_20_mb_element_of_a_json_array_reads_in_linear_time(tmp_path):
    row = {"instruction": "Summarise.", "output": "x" * (20 << 20)}
    text = json.dumps(row)
    (tmp_path / "big.jsonl").write_text(text + "\n")
    (tmp_path / "big.json").write_text("[\n" + text + "\n]\n")
    start = time.perf_counter()
    assert len(_rows(tmp_path / "big.jsonl")) == 1
    as_jsonl = time.perf_counter() - start
    start = time.perf_counter()
    assert len(_rows(tmp_path / "big.json")) == 1
    as_json = time.perf_counter() - start
    # it took 17 s when each 64 KiB read decoded the element again from its start
    assert as_json < 3.0 and as_json < 5 * as_jsonl + 0.5, (as_json, as_jsonl)
