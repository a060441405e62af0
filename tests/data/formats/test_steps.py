"""`steps` records and the steps / trl-stepwise formats: what loads, and what a bad record says."""

from __future__ import annotations

import pytest

from posttrain.data.formats import CANONICAL, get_format, load_records, writer
from posttrain.data.records import validate_steps
from posttrain.errors import DataError, RecordError
from tests.conftest import write_jsonl

GOOD = {"prompt": "Compute 2 + 3 - 1.", "completions": ["2 + 3 = 5", "5 - 1 = 4", "Answer: 4"],
        "labels": [True, True, True]}


def test_a_string_prompt_becomes_a_user_turn_and_01_labels_become_bools():
    record = validate_steps({**GOOD, "labels": [1, 0, 0]})
    assert record == {"prompt": [{"role": "user", "content": "Compute 2 + 3 - 1."}],
                      "completions": GOOD["completions"], "labels": [True, False, False]}


@pytest.mark.parametrize("change, field", [
    ({"prompt": None}, "prompt"),
    ({"prompt": "  "}, "prompt"),
    ({"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, "prompt[1].role"),
    ({"completions": []}, "completions"),
    ({"completions": "2 + 3 = 5"}, "completions"),
    ({"completions": ["2 + 3 = 5", "", "Answer: 4"]}, "completions[1]"),
    ({"labels": [True, True]}, "labels"),
    ({"labels": [True, "yes", True]}, "labels[1]"),
    ({"labels": [True, 2, True]}, "labels[1]"),
])
def test_a_bad_record_names_its_field(change, field):
    with pytest.raises(RecordError) as error:
        validate_steps({**GOOD, **change})
    assert error.value.field == field


@pytest.mark.parametrize("fmt", ["steps", "trl-stepwise", None])
def test_trl_stepwise_rows_load_from_jsonl_and_parquet(tmp_path, fmt):
    import pandas as pd

    rows = [GOOD, {**GOOD, "prompt": [{"role": "system", "content": "Be careful."},
                                      {"role": "user", "content": "Compute 2 + 3 - 1."}],
                   "labels": [True, False, False]}]
    jsonl = write_jsonl(tmp_path / "steps.jsonl", rows)
    parquet = tmp_path / "steps.parquet"
    pd.DataFrame([GOOD, {**GOOD, "labels": [True, False, False]}]).to_parquet(parquet)
    from_jsonl = [r for _, r in load_records(jsonl, fmt, record="steps")]
    from_parquet = [r for _, r in load_records(parquet, fmt, record="steps")]
    assert [r["labels"] for r in from_jsonl] == [[True, True, True], [True, False, False]]
    assert from_jsonl[1]["prompt"][0] == {"role": "system", "content": "Be careful."}
    assert from_parquet[1]["labels"] == [True, False, False]
    assert from_parquet[0]["completions"] == GOOD["completions"]


def test_a_bad_row_names_file_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "steps.jsonl", [GOOD, {**GOOD, "labels": [True]}])
    with pytest.raises(DataError, match=r"steps.jsonl:2.*labels"):
        list(load_records(path, "steps", record="steps"))


def test_records_write_back_as_trl_rows():
    record = validate_steps(GOOD)
    assert CANONICAL["steps"] == "steps"
    assert writer(get_format("trl-stepwise"))(record) == GOOD
