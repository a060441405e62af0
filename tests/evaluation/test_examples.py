"""posttrain/evaluation/examples.py: prompts and references from rl_prompt records and conversations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain.data.sources import Source
from posttrain.errors import DataError, PosttrainError
from posttrain.evaluation.examples import load_examples, require_references
from tests.conftest import write_jsonl

JUDGES = Path(__file__).resolve().parents[2] / "examples" / "data" / "judges"
SYSTEM = {"role": "system", "content": "be brief"}


def _turn(role, content):
    return {"role": role, "content": content}


def test_a_conversation_is_cut_before_its_last_assistant_turn(tmp_path):
    path = write_jsonl(tmp_path / "chats.jsonl", [{"messages": [
        SYSTEM, _turn("user", "q1"), _turn("assistant", "a1"), _turn("user", "q2"), _turn("assistant", "a2")]}])
    [example], formats = load_examples([Source(str(path))])
    assert formats == ["openai"]
    assert example.prompt == [SYSTEM, _turn("user", "q1"), _turn("assistant", "a1"), _turn("user", "q2")]
    assert example.reference == "a2"
    assert (example.line, example.data_source, example.extra_info) == (1, None, {})


def test_rl_prompts_keep_ground_truth_and_extra_info(tmp_path):
    rows = [{"prompt": "q", "data_source": "exact_match", "ground_truth": "42", "extra_info": {"k": 1}},
            {"prompt": [_turn("user", "q")], "data_source": "numeric_match", "ground_truth": {"target": 4}}]
    examples, formats = load_examples([Source(str(write_jsonl(tmp_path / "rl.jsonl", rows)))])
    assert formats == ["rl_prompt"]
    assert [e.reference for e in examples] == ["42", None]
    assert examples[0].prompt == [_turn("user", "q")] and examples[0].extra_info == {"k": 1}
    assert examples[1].ground_truth == {"target": 4}


def test_a_metric_needing_a_reference_names_itself_and_the_line(tmp_path):
    rows = [{"prompt": "q", "data_source": "s", "ground_truth": "a"},
            {"prompt": "q", "data_source": "s", "ground_truth": {"target": 4}}]
    path = write_jsonl(tmp_path / "rl.jsonl", rows)
    examples, _ = load_examples([Source(str(path))])
    with pytest.raises(DataError, match=rf"^{path}:2: ground_truth: metric rouge compares the output with a "
                                        "reference text; expected a string, got dict"):
        require_references(examples, "rouge")


def test_judge_formats_make_examples(tmp_path):
    examples, formats = load_examples([Source(str(JUDGES / "rm_gallery_pairwise.jsonl"), "rm-gallery-pairwise")],
                                     limit=4)
    assert formats == ["rm-gallery-pairwise"] and len(examples) == 4
    assert [e.extra_info["swapped"] for e in examples] == [False, True, False, True]
    assert examples[0].data_source == "pairwise_preference"


def test_the_held_out_agent_judge_variant_reads_as_json_judge_prompts():
    path = JUDGES / "reward_model_full_eval.json"
    examples, _ = load_examples([Source(str(path), "agent-eval-judge")])
    rows = json.loads(open(path, encoding="utf-8").read())
    assert len(examples) == len(rows)
    # the prompt the judge was trained on (the variant's instruction), the reference its answer
    assert examples[0].prompt == [_turn("user", rows[0]["instruction"])]
    assert examples[0].ground_truth == {"evaluation_type": rows[0]["metadata"]["evaluation_type"],
                                        "reference": rows[0]["output"]}


def test_limit_and_max_samples(tmp_path):
    path = write_jsonl(tmp_path / "rl.jsonl", [{"prompt": f"q{i}", "data_source": "s", "ground_truth": str(i)}
                                               for i in range(5)])
    assert len(load_examples([Source(str(path))], limit=2)[0]) == 2
    both = load_examples([Source(str(path), max_samples=3), Source(str(path), max_samples=1)])[0]
    assert [e.reference for e in both] == ["0", "1", "2", "0"]


def test_formats_that_make_no_prompts_are_refused(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"chosen": "a", "rejected": "b"}])
    with pytest.raises(PosttrainError, match="format preference makes preference records; evaluation reads prompts"):
        load_examples([Source(str(path))])


def test_a_bad_record_is_file_line_field(tmp_path):
    path = write_jsonl(tmp_path / "chats.jsonl", [{"messages": [_turn("user", "q"), _turn("assistant", "a")]},
                                                  {"messages": [_turn("user", "q")]}])
    with pytest.raises(DataError, match=rf"^{path}:2: messages\[0\].role: expected the last turn to be assistant"):
        load_examples([Source(str(path))])


def test_a_conversation_with_tools_is_refused_not_evaluated_without_them(tmp_path):
    chat = {"tools": [{"name": "get_weather", "parameters": {"type": "object"}}],
            "messages": [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": "Sunny."}]}
    path = write_jsonl(tmp_path / "tools.jsonl", [chat])
    with pytest.raises(DataError) as info:
        load_examples([Source(str(path), "openai")], None)
    assert f"{path}:1: tools:" in str(info.value) and "generated without the tools" in str(info.value)
