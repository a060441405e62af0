"""DataEva rows -> judge conversations, with the seed's metadata prefix (or without it)."""

from __future__ import annotations

import json

import pytest

from posttrain.data.formats import load_records
from posttrain.errors import DataError

ROW = {"conversations": [{"from": "human", "value": "Rate this step."}, {"from": "gpt", "value": "{\"a\": 1}"}],
       "metadata": {"model_name": "gpt-4o", "provider": "openai", "task_id": "t1", "evaluation_type": "clip",
                    "clip_number": 1, "category": "web_search", "timestamp": 1}}


def _write(tmp_path, rows):
    path = tmp_path / "finetune.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prefix_and_switch(tmp_path):
    final = {**ROW, "metadata": {**ROW["metadata"], "evaluation_type": "final", "category": None}}
    path = _write(tmp_path, [ROW, final])
    records = [r for _, r in load_records(path, "agent-eval")]
    assert records[0]["messages"][0]["content"] == \
        "[EVAL_TYPE: clip] [MODEL: gpt-4o] [TASK: t1] [CATEGORY: web_search] Rate this step."
    assert records[1]["messages"][0]["content"].startswith("[EVAL_TYPE: final] [MODEL: gpt-4o] [TASK: t1] Rate")
    assert records[0]["messages"][1] == {"role": "assistant", "content": "{\"a\": 1}"}
    plain = [r for _, r in load_records(path, "agent-eval-no-metadata")]
    assert plain[0]["messages"][0]["content"] == "Rate this step."


def test_bad_evaluation_type(tmp_path):
    bad = {**ROW, "metadata": {**ROW["metadata"], "evaluation_type": "step"}}
    with pytest.raises(DataError, match=r"finetune.jsonl:2: metadata.evaluation_type: expected one of clip"):
        list(load_records(_write(tmp_path, [ROW, bad]), "agent-eval"))


def test_rl_prompts_for_json_judge(tmp_path):
    from posttrain.rewards.judges import json_judge

    reference = {"reasonableness_score": 0.8, "summary": "fine"}
    row = {**ROW, "conversations": [ROW["conversations"][0], {"from": "gpt", "value": json.dumps(reference)}]}
    [record] = [r for _, r in load_records(_write(tmp_path, [row]), "agent-eval-judge")]
    assert record["data_source"] == "json_judge"
    assert record["prompt"][0]["content"].startswith("[EVAL_TYPE: clip] ")
    assert json_judge(json.dumps(reference), record["ground_truth"]) == 1.0
    assert json_judge(json.dumps({**reference, "reasonableness_score": 0.4}), record["ground_truth"]) == \
        pytest.approx(0.6)


def test_variant_rows_read_as_the_same_judge_prompts(tmp_path):
    """A row of a `posttrain data variants` file (what a judge is trained and held out on) makes the same
    rl_prompt as the DataEva row it came from; a variant row without its answer is FILE:LINE: field."""
    from posttrain.data.variants import read_agent_eval

    [variant] = read_agent_eval(_write(tmp_path, [ROW]))
    variants = tmp_path / "variant.jsonl"
    variants.write_text(json.dumps(variant) + "\n" + json.dumps({**variant, "output": " "}) + "\n")
    [(_, from_row)] = load_records(_write(tmp_path, [ROW]), "agent-eval-judge")
    records = load_records(variants, "agent-eval-judge")
    assert next(records)[1] == from_row
    with pytest.raises(DataError, match=r"variant.jsonl:2: output: missing or empty; expected text"):
        next(records)


@pytest.mark.parametrize("fmt", ["agent-eval", "agent-eval-judge"])
@pytest.mark.parametrize("key, value", [("model_name", {"a": {}}), ("task_id", [1, 2]), ("category", float("nan")),
                                        ("task_id", True), ("evaluation_type", ["clip"])])
def test_a_metadata_value_written_into_the_prompt_must_be_text(tmp_path, fmt, key, value):
    row = {**ROW, "metadata": {**ROW["metadata"], key: value}}
    with pytest.raises(DataError) as info:
        list(load_records(_write(tmp_path, [row]), fmt))
    assert info.value.field == f"metadata.{key}"
