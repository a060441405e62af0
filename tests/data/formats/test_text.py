"""Raw text records for continued pretraining: {"text": ...} rows and .txt files, a row a line."""

from __future__ import annotations

import json

import pytest

from posttrain.data.check import check
from posttrain.data.formats import detect_format, load_records
from posttrain.errors import DataError


def test_a_txt_file_is_a_record_a_non_empty_line_numbered_as_in_the_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("The trial enrolled 120 patients.\n\nThe primary endpoint was met.\n")
    assert list(load_records(path, None, record="text")) == [
        (1, {"text": "The trial enrolled 120 patients."}), (3, {"text": "The primary endpoint was met."})]


def test_text_rows_are_detected_and_a_bad_one_is_named_with_its_line(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in [{"text": "one"}, {"text": 3}]) + "\n")
    assert detect_format({"text": "one"}) == "text"
    with pytest.raises(DataError, match=r"docs.jsonl:2: text: expected a string, got int"):
        list(load_records(path, "text", record="text"))


def test_the_data_doctor_checks_text_records(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "a"}\n{"text": "   "}\n{"text": "a"}\n')
    report = check(path, record_type="text")
    assert not report.ok
    assert [(f.line, f.level) for f in report.findings if f.level == "error"] == [(2, "error")]
    assert report.stats["duplicates"] == 1
