"""Seed 001's flashcard and ChatDoctor rows as SFT conversations and GRPO prompts, with one system prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain.data.formats import load_records
from posttrain.data.formats.medical_dialogue import SYSTEM_PROMPT, to_conversation, to_rl_prompt
from posttrain.errors import DataError, RecordError
from posttrain.rewards import get
from posttrain.rewards.adapters import compute_score
from tests.conftest import write_jsonl

FLASHCARD = {"instruction": "Answer this question truthfully", "input": "What does metformin treat?",
             "output": "Metformin treats type 2 diabetes."}
CHATDOCTOR = {"instruction": "If you are a doctor, please answer the medical questions based on the patient's "
                             "description.",
              "input": "Patient: Hello, I have a cough.\nDoctor: How long have you had it?\n"
                       "patient: Two weeks.\nPatient: It is worse at night.",
              "output": "Hi, thanks for your query. A cough for two weeks needs a chest examination."}
EXAMPLES = Path(__file__).parents[3] / "examples" / "data" / "medical_dialogue"


def test_a_flashcard_is_system_user_assistant_with_the_question_as_the_user_turn():
    assert to_conversation(FLASHCARD)["messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "What does metformin treat?"},
        {"role": "assistant", "content": "Metformin treats type 2 diabetes."}]


def test_patient_and_doctor_lines_become_alternating_turns_and_same_speaker_lines_merge():
    messages = to_conversation(CHATDOCTOR)["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert messages[1]["content"] == "Hello, I have a cough."
    assert messages[2]["content"] == "How long have you had it?"
    assert messages[3]["content"] == "Two weeks.\nIt is worse at night."
    assert messages[4]["content"] == CHATDOCTOR["output"]


def test_a_row_without_input_asks_its_instruction():
    messages = to_conversation({"instruction": "What is gout?", "output": "A form of arthritis."})["messages"]
    assert messages[1] == {"role": "user", "content": "What is gout?"}


def test_the_rl_prompt_stops_before_the_answer_and_its_ground_truth_is_the_reference():
    record = to_rl_prompt(CHATDOCTOR)
    assert record["prompt"] == to_conversation(CHATDOCTOR)["messages"][:-1]
    assert record["data_source"] == "medical_dialogue"
    assert record["ground_truth"] == CHATDOCTOR["output"]


def test_the_reward_scores_the_reference_itself_above_an_unrelated_answer_and_verl_finds_it():
    record = to_rl_prompt(FLASHCARD)
    reward = get("medical_dialogue_quality")
    own = reward(FLASHCARD["output"], record["ground_truth"])
    # 0.5 (length 20-200) + 2 x ROUGE-L 1.0 + 0.2 (ends with '.'); 5 words: no variety term
    assert own == pytest.approx(2.7)
    assert reward("Please rest and drink water.", record["ground_truth"]) < own
    assert compute_score(data_source="medical_dialogue_test", solution_str=FLASHCARD["output"],
                         ground_truth=record["ground_truth"]) == pytest.approx(own)


@pytest.mark.parametrize("row, field", [
    ({"instruction": "q", "input": "x"}, "output"),
    ({"instruction": "q", "input": "x", "output": "  "}, "output"),
    ({"instruction": "", "input": "", "output": "a"}, "input"),
    ({"instruction": "q", "input": 3, "output": "a"}, "input"),
    ({"instruction": "q", "input": "Doctor: hello\nPatient: hi", "output": "a"}, "input"),
    ({"instruction": "q", "input": "Patient: hi\nDoctor: hello", "output": "a"}, "input"),
])
def test_a_bad_row_names_its_field(row, field):
    for convert in (to_conversation, to_rl_prompt):
        with pytest.raises(RecordError) as error:
            convert(row)
        assert error.value.field == field


def test_a_bad_row_in_a_file_is_named_by_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [FLASHCARD, {"instruction": "q", "input": "x"}])
    with pytest.raises(DataError) as error:
        list(load_records(path, "medical-dialogue"))
    assert str(error.value) == f"{path}:2: output: missing; expected a string"


def test_the_shipped_sample_data_is_split_80_10_10_without_overlap():
    for source in ("flashcards", "chatdoctor"):
        raw = [json.loads(line) for line in (EXAMPLES / f"{source}.jsonl").read_text().splitlines()]
        splits = {name: [json.loads(line) for line in (EXAMPLES / source / f"{name}.jsonl").read_text().splitlines()]
                  for name in ("train", "validation", "test")}
        assert {k: len(v) for k, v in splits.items()} == {"train": 80, "validation": 10, "test": 10}
        inputs = [row["input"] for rows in splits.values() for row in rows]
        assert sorted(inputs) == sorted(row["input"] for row in raw) and len(set(inputs)) == len(inputs)
        for name in splits:
            records = list(load_records(EXAMPLES / source / f"{name}.jsonl", "medical-dialogue-rl"))
            assert len(records) == len(splits[name])


@pytest.mark.parametrize("row", [["a list"], "text", None])
def test_a_row_that_is_not_an_object_is_refused(row):
    for convert in (to_conversation, to_rl_prompt):
        with pytest.raises(RecordError) as error:
            convert(row)
        assert error.value.field == "record"
