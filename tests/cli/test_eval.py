"""`posttrain eval` (posttrain/cli/eval.py): a metrics table and two files, or exit 2 and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from posttrain.cli import app
from tests.conftest import make_chats, write_jsonl

runner = CliRunner()
PAIRWISE = Path(__file__).resolve().parents[2] / "examples" / "data" / "judges" / "rm_gallery_pairwise.jsonl"


def _flat(text: str) -> str:
    """Text without whitespace: off a terminal rich wraps at 80 columns."""
    return "".join(text.split())


def _invoke(*args):
    return runner.invoke(app, ["eval", *[str(a) for a in args]])


def test_eval_prints_the_metrics_and_writes_both_files(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "chats.jsonl", make_chats(5))
    result = _invoke("--model", tiny_model, "--data", data, "--metrics", "rouge,reward:medical_dialogue_quality",
                     "--limit", 3, "--max-new-tokens", 4, "--batch-size", 2, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["count"] == 3 and metrics["generation"]["batch_size"] == 2
    assert len((tmp_path / "out" / "predictions.jsonl").read_text().splitlines()) == 3
    printed = _flat(result.stdout)
    assert "3examples,openai" in printed
    for name in ("rouge1", "rouge2", "rougeL", "reward:medical_dialogue_quality"):
        low, high = metrics["intervals"][name]
        assert low <= metrics["metrics"][name] <= high
        assert f"{name}│{metrics['metrics'][name]:.4f}│[{low:.4f},{high:.4f}]" in printed


def test_eval_of_a_judge_with_a_named_format(tiny_model, tmp_path):
    result = _invoke("--model", tiny_model, "--data", PAIRWISE, "--format", "rm-gallery-pairwise", "--metrics",
                     "judge", "--limit", 4, "--max-new-tokens", 4)
    assert result.exit_code == 0, result.output
    printed = _flat(result.stdout)
    for name in ("judge.accuracy", "judge.unparsable", "judge.position_consistency"):
        assert name in printed
    assert "judge.majority_baseline" not in printed  # the data's, not the model's: a line under the table
    assert _flat("majority-class baseline (always the most common label): judge.accuracy") in printed
    assert not (tmp_path / "out").exists()


def test_a_bad_row_exits_2_and_writes_nothing(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "chats.jsonl", make_chats(1) + [{"messages": [{"role": "user", "content": "q"}]}])
    result = _invoke("--model", tiny_model, "--data", data, "--metrics", "rouge", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert _flat(result.stderr) == _flat(f"{data}:2: messages[0].role: expected the last turn to be assistant, "
                                         "got user")
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_an_unknown_metric_lists_the_valid_ones(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "chats.jsonl", make_chats(1))
    result = _invoke("--model", tiny_model, "--data", data, "--metrics", "rouge,bleu4", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert _flat("metric 'bleu4': unknown; metrics: bleu, rouge, exact_match, judge, rm_accuracy, preference_accuracy, "
                 "implicit_reward_accuracy, reward:NAME (NAME one of answer_tags,") in _flat(result.stderr)
    assert not (tmp_path / "out").exists()


def test_an_adapter_that_is_none_exits_2(tiny_model, tmp_path):
    data = write_jsonl(tmp_path / "chats.jsonl", make_chats(1))
    result = _invoke("--model", tiny_model, "--adapter", tiny_model, "--data", data, "--metrics", "rouge")
    assert result.exit_code == 2
    assert _flat(f"{tiny_model}: no adapter_config.json; expected a LoRA adapter directory (peft)") == _flat(result.stderr)


def test_implicit_reward_accuracy_reads_the_model_against_its_reference(tiny_model, tmp_path):
    from tests.stages.test_reward_model import pairs

    data = write_jsonl(tmp_path / "pairs.jsonl", pairs(6, 0))
    result = _invoke("--model", tiny_model, "--data", data, "--metrics", "implicit_reward_accuracy")
    assert result.exit_code == 2 and _flat("give that reference (posttrain eval --reference DIR") in \
        _flat(result.stderr), result.stderr
    # a model against itself: every log-ratio is 0, so no chosen answer is above its rejected one
    result = _invoke("--model", tiny_model, "--reference", tiny_model, "--data", data, "--metrics",
                     "implicit_reward_accuracy", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["metrics"] == {"implicit_reward_accuracy": 0.0, "implicit_reward_margin": 0.0}
    assert metrics["reference"] == {"model": str(tiny_model), "adapter": None} and metrics["pairs"] == 6
