"""The Bradley-Terry stage: learns a learnable preference on the tiny model, reports accuracy and margin, drops
ties, saves a one-output sequence classifier that `posttrain score` reproduces the eval accuracy with."""

from __future__ import annotations

import json
import random

import pytest

from posttrain.pipeline import read_manifest, run
from tests.conftest import write_jsonl

TOPICS = ["blood pressure", "heart rate", "fever", "asthma", "insulin", "anaemia", "migraine", "vaccines",
          "cholesterol", "kidneys", "placebo", "dropout"]


def pairs(n: int, seed: int, ask: str = "Tell me about") -> list[dict]:
    """Chosen: a complete, polite answer; rejected: a curt dismissal. The difference is in every token."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        topic = rng.choice(TOPICS)
        rows.append({"prompt": [{"role": "user", "content": f"{ask} {topic}."}],
                     "chosen": f"Sure, here is what {topic} means, explained in full.",
                     "rejected": rng.choice(["No.", "Go away.", "Whatever."])})
    return rows


def config(tmp_path, tiny_model, *, ties: int = 0, **stage):
    train = pairs(48, 0) + [{"chosen": "Same.", "rejected": "Same!", "tie": True}] * ties
    data = write_jsonl(tmp_path / "train.jsonl", train)
    held = write_jsonl(tmp_path / "eval.jsonl", pairs(16, 1, "What do you know about"))
    return {"name": "b", "model": str(tiny_model), "output_dir": str(tmp_path / "run"),
            "stages": [{"name": "rm", "type": "reward_model", "data": {"path": str(data), "format": "preference"},
                        "eval_data": {"path": str(held), "format": "preference"},
                        "trainer": {"max_steps": 12, "learning_rate": 3e-3, "per_device_train_batch_size": 8,
                                    "per_device_eval_batch_size": 8, "logging_steps": 4, "eval_strategy": "steps",
                                    "eval_steps": 6},
                        **stage}]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model):
    tmp_path = tmp_path_factory.mktemp("bt")
    run_dir = run(config(tmp_path, tiny_model, ties=3))
    return tmp_path, run_dir


def test_learns_the_preference_and_logs_accuracy_and_margin(trained):
    _, run_dir = trained
    entry = read_manifest(run_dir)["stages"]["rm"]
    assert entry["status"] == "done"
    metrics = json.loads((run_dir / "rm" / "metrics.json").read_text())
    assert metrics["eval_accuracy"] > 0.8 and metrics["eval_margin"] > 0, metrics
    assert metrics["ties_dropped"] == 3 and metrics["train_examples"] == 48
    logged = [json.loads(line) for line in (run_dir / "rm" / "trainer_log.jsonl").read_text().splitlines()]
    evals = [line for line in logged if "eval_accuracy" in line]
    assert len(evals) >= 2 and all("eval_margin" in line for line in evals)


def test_saved_model_is_a_one_output_sequence_classifier(trained):
    from transformers import AutoModelForSequenceClassification

    _, run_dir = trained
    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "rm" / "model")
    assert model.config.num_labels == 1 and model.config.pad_token_id is not None


def test_score_reproduces_the_eval_accuracy(trained):
    from typer.testing import CliRunner

    from posttrain.cli import app

    tmp_path, run_dir = trained
    out = tmp_path / "scores.jsonl"
    result = CliRunner().invoke(app, ["score", "--model", str(run_dir / "rm" / "model"), "--data",
                                      str(tmp_path / "eval.jsonl"), "--out", str(out), "--batch-size", "5"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run_dir / "rm" / "metrics.json").read_text())
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 16
    accuracy = sum(r["chosen_score"] > r["rejected_score"] for r in rows) / len(rows)
    margin = sum(r["chosen_score"] - r["rejected_score"] for r in rows) / len(rows)
    assert accuracy == pytest.approx(metrics["eval_accuracy"])
    assert margin == pytest.approx(metrics["eval_margin"], rel=1e-3)
    assert f"accuracy: {accuracy:.4f}" in result.output


def test_lora_reward_model_scores(tmp_path, tiny_model):
    from posttrain.scoring import load_scorer

    cfg = config(tmp_path, tiny_model, finetuning="lora", lora={"r": 4})
    cfg["stages"][0]["trainer"].update(max_steps=2, eval_strategy="no")
    del cfg["stages"][0]["eval_data"]
    run_dir = run(cfg)
    scorer = load_scorer(run_dir / "rm" / "model")
    scores = scorer.score_many([([{"role": "user", "content": "Hi"}], "Hello."), ([], "Go away.")])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)


def test_validate_builds_the_reward_config(tmp_path, tiny_model):
    from posttrain.pipeline.validate import validate

    cfg = config(tmp_path, tiny_model)
    assert validate(cfg).problems == []
    cfg["stages"][0]["trainer"]["center_rewards_coeficient"] = 0.01
    problems = validate(cfg).problems
    assert any("did you mean 'center_rewards_coefficient'" in p for p in problems), problems


def test_only_ties_is_a_clear_error(tmp_path, tiny_model):
    from posttrain.errors import PosttrainError

    cfg = config(tmp_path, tiny_model)
    cfg["stages"][0]["data"]["path"] = str(write_jsonl(tmp_path / "t.jsonl", [{"chosen": "a", "rejected": "b",
                                                                                "tie": True}]))
    with pytest.raises(PosttrainError, match="no preference pairs"):
        run(cfg)


def test_val_size_holds_out_pairs_and_evaluates_them(tmp_path, tiny_model):
    cfg = config(tmp_path, tiny_model, val_size=0.25)
    del cfg["stages"][0]["eval_data"]
    cfg["stages"][0]["trainer"].update(max_steps=2, eval_steps=2)
    metrics = json.loads((run(cfg) / "rm" / "metrics.json").read_text())
    assert (metrics["train_examples"], metrics["eval_examples"]) == (36, 12)
    assert 0 <= metrics["eval_accuracy"] <= 1 and "eval_margin" in metrics


def test_pairs_all_longer_than_max_length_are_an_error_not_an_empty_run(tmp_path, tiny_model):
    from posttrain.errors import PosttrainError

    pipeline = config(tmp_path, tiny_model)
    pipeline["stages"][0]["trainer"]["max_length"] = 4
    with pytest.raises(PosttrainError, match=r"all 48 pairs are longer than max_length=4.*trainer\.max_length"):
        run(pipeline)
