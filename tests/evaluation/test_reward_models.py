"""rm_accuracy: a reward model evaluated on preference pairs, alone and as a model of an eval stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain.data.sources import Source
from posttrain.errors import ConfigError, PosttrainError
from posttrain.evaluation import evaluate
from posttrain.scoring.score_file import score_file
from tests.conftest import write_jsonl

ROOT = Path(__file__).resolve().parents[2]
PAIRS = ROOT / "examples" / "data" / "preference" / "pairs_eval.jsonl"


def test_rm_accuracy_is_the_share_of_pairs_scored_the_right_way_round(reward_model, tmp_path):
    result = evaluate(str(reward_model), [Source(str(PAIRS), "preference")], "rm_accuracy", tmp_path / "out",
                      progress=False)
    scored = score_file(str(reward_model), PAIRS, "preference")
    margins = [row["chosen_score"] - row["rejected_score"] for row in scored.rows]
    assert result.metrics["metrics"]["rm_accuracy"] == pytest.approx(scored.accuracy)
    assert result.metrics["metrics"]["rm_margin"] == pytest.approx(sum(margins) / len(margins))
    assert 0 < scored.accuracy < 1  # an untrained head (tests/conftest.py): the figure is measured, not a constant
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert written == result.metrics and written["pairs"] == len(rows) == len(scored.rows)
    assert [row["scores"]["rm_accuracy"] for row in rows] == [float(m > 0) for m in margins]


def test_rm_accuracy_goes_alone_and_reads_preference_pairs(reward_model, tmp_path):
    with pytest.raises(ConfigError, match="rm_accuracy scores preference pairs .* list it alone"):
        evaluate(str(reward_model), [Source(str(PAIRS))], "rm_accuracy,bleu")
    chats = write_jsonl(tmp_path / "chats.jsonl", [{"messages": [{"role": "user", "content": "q"},
                                                                 {"role": "assistant", "content": "a"}]}])
    with pytest.raises(PosttrainError, match="makes conversation records; expected preference records"):
        evaluate(str(reward_model), [Source(str(chats))], "rm_accuracy")


def test_an_eval_stage_scores_a_reward_model_stage_on_held_out_pairs(tiny_model, tmp_path):
    from posttrain.pipeline import run
    from posttrain.pipeline.validate import validate

    config = {"name": "rm-eval", "model": str(tiny_model), "output_dir": str(tmp_path / "run"), "seed": 0,
              "stages": [
                  {"name": "rm", "type": "reward_model",
                   "data": {"path": str(ROOT / "examples/data/preference/pairs_train.jsonl"), "format": "preference"},
                   "trainer": {"max_steps": 2, "per_device_train_batch_size": 4, "max_length": 128}},
                  {"name": "eval", "type": "eval", "models": ["rm"],
                   "data": {"path": str(PAIRS), "format": "preference"}, "metrics": ["rm_accuracy"]}]}
    assert validate(config).problems == []
    run_dir = run(config)
    figures = json.loads((run_dir / "eval" / "metrics.json").read_text())["figures"]
    expected = score_file(str(run_dir / "rm" / "model"), PAIRS, "preference").accuracy
    assert figures["rm"]["rm_accuracy"] == pytest.approx(expected)
    report = (run_dir / "report.html").read_text()
    assert "rm_accuracy" in report and "rm_margin" in report


def test_rm_accuracy_reads_pairs_as_the_data_spec_says(reward_model):
    five = evaluate(str(reward_model), [Source(str(PAIRS), "preference", max_samples=5)], "rm_accuracy",
                    progress=False)
    assert five.metrics["count"] == 5 and [row["line"] for row in five.rows] == [1, 2, 3, 4, 5]
    limited = evaluate(str(reward_model), [Source(str(PAIRS), "preference")], "rm_accuracy", limit=3, progress=False)
    assert limited.metrics["count"] == 3
    assert [row["chosen_score"] for row in limited.rows] == pytest.approx([r["chosen_score"] for r in five.rows[:3]])
