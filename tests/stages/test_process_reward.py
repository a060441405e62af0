"""The process reward stage: labels only at step separators, training, metrics, and what it saves."""

from __future__ import annotations

import json
import random
import statistics

import pytest

from posttrain.errors import PosttrainError
from posttrain.pipeline import read_manifest, run
from posttrain.stages.process_reward import MARKER, encode_steps, step_metrics
from tests.conftest import write_jsonl


def solutions(n: int, seed: int) -> list[dict]:
    """Sums of two digits 1-4; a wrong step's result is 5 too big: learnable by a tiny model in seconds."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        steps, labels = [], []
        value = rng.randint(1, 4)
        for _ in range(rng.randint(2, 3)):
            n_ = rng.randint(1, 4)
            ok = rng.random() < 0.6
            result = value + n_ + (0 if ok else 5)
            steps.append(f"{value} + {n_} = {result}")
            labels.append(ok)
            value = rng.randint(1, 4)
        rows.append({"prompt": "Check each sum.", "completions": steps, "labels": labels})
    return rows


def held_out(n: int, seed: int) -> list[dict]:
    """Solutions the training set (seed 0) does not hold."""
    seen = solutions(160, 0)
    return [row for row in solutions(3 * n, seed) if row not in seen][:n]


def config(tmp_path, model, **stage):
    train = write_jsonl(tmp_path / "train.jsonl", solutions(160, 0))
    held = write_jsonl(tmp_path / "held.jsonl", held_out(40, 1))
    return {"name": "p", "model": str(model), "output_dir": str(tmp_path / "run"),
            "stages": [{"name": "prm", "type": "process_reward", "data": {"path": str(train), "format": "steps"},
                        "eval_data": {"path": str(held), "format": "trl-stepwise"},
                        "trainer": {"max_steps": 60, "per_device_train_batch_size": 16, "learning_rate": 3e-3,
                                    "logging_steps": 20, "eval_strategy": "steps", "eval_steps": 60,
                                    "save_steps": 60, "per_device_eval_batch_size": 40},
                        **stage}]}


def test_labels_sit_only_on_each_steps_separator_token(tiny_model):
    from posttrain.models.loading import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_model))
    steps = ["2 + 3 = 5", "5 + 1 = 7", "Answer: 7"]
    out = encode_steps(tokenizer, [{"role": "user", "content": "Compute 2 + 3 + 1."}], steps, "\n",
                       [True, False, False])
    marked = [i for i, label in enumerate(out["labels"]) if label != -100]
    assert marked == out["positions"] and len(marked) == 3
    assert [out["labels"][i] for i in marked] == [1, 0, 0]
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"][-1]
    assert all(out["input_ids"][i] == newline for i in marked)
    # the prompt comes first, chat template and generation prompt applied
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Compute 2 + 3 + 1."}], tokenize=False,
                                           add_generation_prompt=True)
    assert tokenizer.decode(out["input_ids"]).startswith(prompt)
    assert tokenizer.decode(out["input_ids"]).endswith("2 + 3 = 5\n5 + 1 = 7\nAnswer: 7\n")
    # a step past max_length is dropped, not labelled at a cut position
    short = encode_steps(tokenizer, [{"role": "user", "content": "Compute 2 + 3 + 1."}], steps, "\n", [True] * 3,
                         max_length=out["positions"][1])
    assert short["positions"] == out["positions"][:1] and len(short["input_ids"]) == out["positions"][1]


def test_first_error_f1_is_processbenchs():
    probs = [[0.9, 0.2, 0.1], [0.9, 0.8], [0.3, 0.9], [0.9, 0.9, 0.9]]
    labels = [[True, False, False], [True, True], [True, True], [True, False, False]]
    m = step_metrics(probs, labels)
    assert m["step_accuracy"] == pytest.approx(7 / 10)  # 3 + 2 + 1 + 1 of 10 steps on the right side of 0.5
    assert m["first_error_acc_wrong"] == 0.5  # first wrong step found in 1 of 2 solutions that have one
    assert m["first_error_acc_correct"] == 0.5  # "none" predicted for 1 of 2 all-correct solutions
    assert m["first_error_f1"] == pytest.approx(0.5)
    only_wrong = step_metrics([[0.9, 0.2]], [[True, False]])
    assert only_wrong["first_error_f1"] == 1.0 and "first_error_acc_correct" not in only_wrong


def test_the_stage_learns_to_tell_wrong_steps_on_held_out_data(tmp_path, tiny_model):
    from posttrain.scoring.process import ProcessScorer

    run_dir = run(config(tmp_path, tiny_model))
    manifest = read_manifest(run_dir)["stages"]["prm"]
    assert manifest["status"] == "done"
    model_dir = run_dir / "prm" / "model"
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved[MARKER]["step_separator"] == "\n" and saved["architectures"] == ["Qwen2ForTokenClassification"]
    log = [json.loads(line) for line in (run_dir / "prm" / "trainer_log.jsonl").read_text().splitlines()]
    evals = [line for line in log if "eval_step_accuracy" in line]
    assert evals and {"eval_first_error_f1", "eval_loss"} <= set(evals[-1])
    assert evals[-1]["eval_step_accuracy"] > 0.8

    scorer = ProcessScorer(str(model_dir))
    right, wrong = [], []
    for row in held_out(40, 2):
        for p, label in zip(scorer.step_probabilities(row["prompt"], row["completions"]), row["labels"]):
            (right if label else wrong).append(p)
    assert statistics.mean(right) - statistics.mean(wrong) > 0.3, (statistics.mean(right), statistics.mean(wrong))


def test_lora_saves_an_adapter_the_scorer_loads(tmp_path, tiny_model):
    from posttrain.scoring import model_kind
    from posttrain.scoring.process import ProcessScorer

    cfg = config(tmp_path, tiny_model, finetuning="lora", step_separator=" ||")
    cfg["stages"][0]["trainer"].update(max_steps=2, eval_steps=2, save_steps=2)
    run_dir = run(cfg)
    model_dir = run_dir / "prm" / "model"
    assert json.loads((model_dir / "adapter_config.json").read_text())["task_type"] == "TOKEN_CLS"
    assert model_kind(model_dir) == "process"
    scorer = ProcessScorer(str(model_dir))
    assert scorer.step_separator == " ||"
    probs = scorer.step_probabilities("Check each sum.", ["1 + 2 = 3", "2 + 2 = 9"])
    assert len(probs) == 2 and all(0 < p < 1 for p in probs)


def test_validate_builds_the_training_arguments(tmp_path, tiny_model):
    from posttrain.pipeline.validate import validate

    cfg = config(tmp_path, tiny_model)
    assert validate(cfg).problems == []
    cfg["stages"][0]["trainer"]["learning_rat"] = 1e-3
    report = validate(cfg)
    assert any("learning_rat" in p and "did you mean 'learning_rate'" in p for p in report.problems), report.problems
    # only TrainingArguments itself knows this one: the plan builds it as a run would
    cfg["stages"][0]["trainer"] = {"eval_strategy": "steps", "save_strategy": "epoch", "load_best_model_at_end": True}
    report = validate(cfg)
    assert any("stages.prm.trainer" in p for p in report.problems), report.problems


def test_conversation_records_are_refused(tmp_path, tiny_model):
    cfg = config(tmp_path, tiny_model)
    cfg["stages"][0]["data"] = {"path": str(write_jsonl(tmp_path / "c.jsonl", [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}]))}
    with pytest.raises(PosttrainError, match="steps"):
        run(cfg)
