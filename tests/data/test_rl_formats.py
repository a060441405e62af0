"""RL prompts: TrialPanorama sources -> rl_prompt -> VERL parquet and back; VERL's reward call scores them."""

from __future__ import annotations

import importlib.util
import json

import pyarrow.parquet as pq
import pytest

from posttrain.data.convert import convert
from posttrain.data.formats import load_records
from posttrain.data.records import validate_rl_prompt
from posttrain.errors import DataError, RecordError

STUDY = {"inputs": {"background": "Statins lower cholesterol.", "objectives": "Assess statins in heart failure.",
                    "selection criteria": "Randomized trials in adults."},
         "labels": ["111", 222], "metadata": {"review_pmid": "999"}}
SAMPLE = {"question": "Two arms of 120 adults each were randomized.", "answer": "240", "answer_type": "total",
          "trial_id": "NCT01", "pmid": "555", "explanation": "2 arms x 120 = 240."}
TEMPLATE_TOKENS = ("<|im_start|>", "<|im_end|>", "<|start_header_id|>", "<|eot_id|>", "[INST]", "<s>",
                   "<|begin_of_text|>")


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_trialpanorama_to_rl_prompts(tmp_path):
    study = list(load_records(jsonl(tmp_path / "s.jsonl", [STUDY]), "trialpanorama-study-search"))[0][1]
    assert study["data_source"] == "study_search"
    assert study["ground_truth"] == {"relevant_pmids": ["111", "222"], "review_pmid": "999"}
    content = study["prompt"][0]["content"]
    assert study["prompt"][0]["role"] == "user" and len(study["prompt"]) == 1
    assert "Statins lower cholesterol." in content and "<answer></answer>" in content
    sample = list(load_records(jsonl(tmp_path / "z.jsonl", [SAMPLE]), "trialpanorama-sample-size"))[0][1]
    assert sample["ground_truth"] == {"target": 240.0, "answer_type": "total", "trial_id": "NCT01", "pmid": "555"}
    for record in (study, sample):
        assert not any(token in m["content"] for m in record["prompt"] for token in TEMPLATE_TOKENS)


def test_sample_size_sft_conversation(tmp_path):
    record = list(load_records(jsonl(tmp_path / "z.jsonl", [SAMPLE]), "trialpanorama-sample-size-sft"))[0][1]
    assert record["messages"][1] == {"role": "assistant",
                                     "content": "<think>2 arms x 120 = 240.</think><answer>240</answer>"}


def test_bad_source_record_names_line_and_field(tmp_path):
    path = jsonl(tmp_path / "z.jsonl", [SAMPLE, {**SAMPLE, "answer": "many"}])
    with pytest.raises(DataError, match=r"z.jsonl:2: answer: expected a number, got 'many'"):
        list(load_records(path, "trialpanorama-sample-size"))


def test_verl_parquet_round_trip_and_the_verl_reward_call(tmp_path):
    source = jsonl(tmp_path / "z.jsonl", [SAMPLE, {**SAMPLE, "answer": "1,000"}])
    assert convert(source, tmp_path / "train.parquet", "trialpanorama-sample-size", "verl", progress=False) == 2
    rows = pq.read_table(tmp_path / "train.parquet").to_pylist()
    assert set(rows[0]) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
    assert rows[0]["ability"] == "sample_size_estimation" and rows[0]["reward_model"]["style"] == "rule"
    back = [r for _, r in load_records(tmp_path / "train.parquet")]  # detected as verl
    assert back == [r for _, r in load_records(source, "trialpanorama-sample-size")]

    import posttrain.rewards.adapters as adapters

    spec = importlib.util.spec_from_file_location("custom_module", adapters.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    answers = ["<think>t</think><answer>250</answer>", "<think>t</think><answer>700</answer>"]
    scores = [module.compute_score(data_source=row["data_source"], solution_str=answer,
                                   ground_truth=row["reward_model"]["ground_truth"], extra_info=row["extra_info"])
              for row, answer in zip(rows, answers)]
    assert scores == [1.1, 0.0]


def test_rl_prompt_jsonl_is_the_default_target(tmp_path):
    source = jsonl(tmp_path / "s.jsonl", [STUDY])
    convert(source, tmp_path / "out.jsonl", "trialpanorama-study-search", progress=False)
    record = json.loads((tmp_path / "out.jsonl").read_text())
    assert record == validate_rl_prompt(record) and record["data_source"] == "study_search"


@pytest.mark.parametrize("record, field", [
    ({"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "data_source": "x",
      "ground_truth": 1}, "prompt[1].role"),
    ({"prompt": "q", "ground_truth": 1}, "data_source"),
    ({"prompt": "q", "data_source": "x"}, "ground_truth"),
    ({"prompt": [{"role": "user", "content": ""}], "data_source": "x", "ground_truth": 1}, "prompt[0].content"),
])
def test_rl_prompt_validation(record, field):
    with pytest.raises(RecordError) as info:
        validate_rl_prompt(record)
    assert info.value.field == field


def test_converting_rl_prompts_to_a_chat_format_is_refused(tmp_path):
    from posttrain.errors import PosttrainError

    with pytest.raises(PosttrainError, match="openai holds conversation records"):
        convert(jsonl(tmp_path / "s.jsonl", [STUDY]), tmp_path / "o.jsonl", "trialpanorama-study-search", "openai",
                progress=False)
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("labels, field", [
    ([{"x": 1}, 2], "labels[0]"),
    (["111", float("nan")], "labels[1]"),
    (["111", True], "labels[1]"),
    (["111", "PMID 222"], "labels[1]"),
    ([[111]], "labels[0]"),
])
def test_a_study_search_label_that_is_no_pmid_is_refused(tmp_path, labels, field):
    path = jsonl(tmp_path / "s.jsonl", [{**STUDY, "labels": labels}])
    with pytest.raises(DataError) as info:
        list(load_records(path, "trialpanorama-study-search"))
    assert (info.value.line, info.value.field) == (1, field) and "expected a PMID" in info.value.expected


def test_study_search_pmids_as_whole_numbers_are_digits(tmp_path):
    path = jsonl(tmp_path / "s.jsonl", [{**STUDY, "labels": [111.0, " 222 "], "metadata": {"review_pmid": 999}}])
    record = next(load_records(path, "trialpanorama-study-search"))[1]
    assert record["ground_truth"] == {"relevant_pmids": ["111", "222"], "review_pmid": "999"}


@pytest.mark.parametrize("row, field", [
    ({**STUDY, "metadata": 1.5}, "metadata"),
    ({**STUDY, "metadata": {"review_pmid": {"x": 1}}}, "metadata.review_pmid"),
    ([STUDY], "record"),
])
def test_a_study_search_row_of_the_wrong_shape_names_its_field(tmp_path, row, field):
    with pytest.raises(DataError) as info:
        list(load_records(jsonl(tmp_path / "s.jsonl", [row]), "trialpanorama-study-search"))
    assert info.value.field == field


@pytest.mark.parametrize("fmt", ["trialpanorama-sample-size", "trialpanorama-sample-size-sft", "verl"])
def test_a_row_that_is_not_an_object_is_refused(tmp_path, fmt):
    with pytest.raises(DataError) as info:
        list(load_records(jsonl(tmp_path / "s.jsonl", [["a list"]]), fmt))
    assert info.value.field == "record"


def test_a_verl_extra_info_that_is_not_an_object_is_refused(tmp_path):
    row = {"data_source": "gsm8k", "prompt": [{"role": "user", "content": "q"}], "reward_model": {"ground_truth": "2"},
           "extra_info": 1.5}
    with pytest.raises(DataError) as info:
        list(load_records(jsonl(tmp_path / "v.jsonl", [row]), "verl"))
    assert info.value.field == "extra_info"
