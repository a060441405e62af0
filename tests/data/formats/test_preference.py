"""Preference pairs in TRL's explicit and implicit forms and LLaMA-Factory's ranking rows become preference records."""

import pytest

from posttrain.data.formats import load_records
from posttrain.errors import DataError, RecordError
from posttrain.data.formats import preference
from tests.conftest import write_jsonl

Q = [{"role": "user", "content": "What is BP?"}]


def test_explicit_prompt_with_strings():
    record = preference.to_record({"prompt": Q, "chosen": "Blood pressure.", "rejected": "No idea."})
    assert record == {"prompt": Q, "chosen": [{"role": "assistant", "content": "Blood pressure."}],
                      "rejected": [{"role": "assistant", "content": "No idea."}], "tie": False, "margin": None}


def test_implicit_prompt_is_the_shared_opening():
    record = preference.to_record({"chosen": Q + [{"role": "assistant", "content": "Blood pressure."}],
                                   "rejected": Q + [{"role": "assistant", "content": "No idea."}]})
    assert record["prompt"] == Q
    assert record["chosen"][0]["content"] == "Blood pressure." and record["rejected"][0]["content"] == "No idea."


def test_no_prompt_at_all_and_tie_and_margin_kept():
    record = preference.to_record({"chosen": "A", "rejected": "B", "tie": True, "margin": 2})
    assert record["prompt"] == [] and record["tie"] is True and record["margin"] == 2.0


def test_alpaca_ranking_row_joins_instruction_and_input():
    record = preference.to_record({"instruction": "Define", "input": "HR", "chosen": "Heart rate.", "rejected": "?",
                                   "system": "Be brief."})
    assert record["prompt"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Define\nHR"}]


def test_sharegpt_ranking_row_with_its_tags():
    row = {"conversations": [{"from": "human", "value": "Hi"}], "chosen": {"from": "gpt", "value": "Hello!"},
           "rejected": {"from": "gpt", "value": "Go away."}}
    record = preference.to_record(row)
    assert record["prompt"] == [{"role": "user", "content": "Hi"}]
    assert (record["chosen"][0]["content"], record["rejected"][0]["content"]) == ("Hello!", "Go away.")


@pytest.mark.parametrize("row, field", [
    ({"chosen": "A"}, "rejected"),
    ({"chosen": "A", "rejected": ""}, "rejected"),
    ({"chosen": [{"role": "user", "content": "x"}], "rejected": "B", "prompt": Q}, "chosen[0]"),
    ({"chosen": "A", "rejected": "B", "tie": "yes"}, "tie"),
    ({"chosen": "A", "rejected": "B", "margin": "big"}, "margin"),
    ({"prompt": [{"role": "assistant", "content": "x"}], "chosen": "A", "rejected": "B"}, "prompt[0].role"),
    ({"prompt": 0, "chosen": "A", "rejected": "B"}, "prompt"),
    ({"prompt": False, "chosen": "A", "rejected": "B"}, "prompt"),
    ({"chosen": Q + [{"role": "assistant", "content": "same"}],
      "rejected": Q + [{"role": "assistant", "content": "same"}]}, "chosen"),
])
def test_bad_rows_name_the_field(row, field):
    with pytest.raises(RecordError) as e:
        preference.to_record(row)
    assert e.value.field == field


def test_a_bad_row_in_a_file_names_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": Q, "chosen": "A", "rejected": "B"},
                                              {"prompt": Q, "chosen": "A"}])
    with pytest.raises(DataError, match=r"p.jsonl:2.*rejected"):
        list(load_records(path, "preference", record="preference"))


def test_detected_and_written_back(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": Q, "chosen": "A", "rejected": "B", "margin": 1.5}])
    [(_, record)] = list(load_records(path, record="preference"))
    assert preference.to_record(preference.from_record(record)) == record


def test_an_unpaired_prompt_of_zero_is_refused_not_dropped():
    from posttrain.data.formats import unpaired_preference

    with pytest.raises(RecordError) as e:
        unpaired_preference.to_record({"prompt": 0, "completion": "A", "label": True})
    assert e.value.field == "prompt"
