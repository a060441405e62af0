"""ProcessScorer: steps split from a completion, probabilities at the trained separator, aggregates."""

from __future__ import annotations

import json
import math

import pytest

from posttrain.errors import PosttrainError
from posttrain.scoring.process import ProcessScorer, aggregate_scores, split_steps


def make_prm(folder, base):
    """An untrained process reward model as the stage saves one (head new, marker in config.json)."""
    from posttrain.models.loading import load_tokenizer
    from posttrain.stages.process_reward import MARKER, load_token_classifier

    out = folder / "prm" / "model"
    load_token_classifier(str(base)).save_pretrained(out)
    load_tokenizer(str(base)).save_pretrained(out)
    config = json.loads((out / "config.json").read_text())
    config[MARKER] = {"step_separator": "\n"}
    (out / "config.json").write_text(json.dumps(config))
    return out


@pytest.fixture(scope="module")
def prm(tiny_model, tmp_path_factory):
    return make_prm(tmp_path_factory.mktemp("prm"), tiny_model)


def test_aggregates():
    ps = [0.9, 0.5, 0.8]
    assert aggregate_scores(ps, "min") == 0.5
    assert aggregate_scores(ps, "mean") == pytest.approx(2.2 / 3)
    assert aggregate_scores(ps, "product") == pytest.approx(0.36)
    assert aggregate_scores([], "product") == 0.0
    with pytest.raises(PosttrainError, match="aggregate: expected one of min, mean, product"):
        aggregate_scores(ps, "max")


def test_steps_are_split_stripped_and_empty_ones_dropped():
    assert split_steps("2 + 3 = 5\n\n 5 - 1 = 4 \nAnswer: 4\n") == ["2 + 3 = 5", "5 - 1 = 4", "Answer: 4"]
    assert split_steps("a. ки b. ки", " ки") == ["a.", "b."]
    assert split_steps("  \n ") == []


def test_score_aggregates_the_step_probabilities(prm):
    scorer = ProcessScorer(str(prm), device="cpu")
    prompt = [{"role": "user", "content": "Compute 2 + 3 - 1."}]
    steps = ["2 + 3 = 5", "5 - 1 = 4", "Answer: 4"]
    probs = scorer.step_probabilities(prompt, steps)
    assert len(probs) == 3 and all(0 < p < 1 for p in probs)
    completion = "2 + 3 = 5\n5 - 1 = 4\n\nAnswer: 4"
    assert scorer.score(prompt, completion) == pytest.approx(min(probs), abs=1e-5)
    assert scorer.score(prompt, completion, aggregate="mean") == pytest.approx(sum(probs) / 3, abs=1e-5)
    assert scorer.score(prompt, completion, aggregate="product") == pytest.approx(math.prod(probs), abs=1e-5)
    # steps split at another separator are still scored at the separator the model was trained with
    assert scorer.score(prompt, "2 + 3 = 5 | 5 - 1 = 4 | Answer: 4", separator="|") == pytest.approx(min(probs),
                                                                                                    abs=1e-5)
    assert scorer.score(prompt, "") == 0.0 and scorer.score(prompt, "\n\n") == 0.0
    # a string prompt is a user turn; a batch of different lengths scores as one at a time
    assert scorer.step_probabilities("Compute 2 + 3 - 1.", steps) == pytest.approx(probs, abs=1e-5)
    batch = scorer.score_many([(prompt, completion), (prompt, "2 + 3 = 6"), (prompt, "")])
    assert batch[0] == pytest.approx(min(probs), abs=1e-5)
    assert batch[1] == pytest.approx(scorer.score(prompt, "2 + 3 = 6"), abs=1e-5) and batch[2] == 0.0


def test_a_model_without_the_marker_is_refused(tiny_model):
    with pytest.raises(PosttrainError, match="posttrain_process_reward"):
        ProcessScorer(str(tiny_model))
