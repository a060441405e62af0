"""Evaluation by generation: the models of a pipeline answer held-out prompts, and the answers are scored.

- `examples`: prompts and references from rl_prompt records or conversations;
- `generation`: batched, chat-templated, left-padded generation (greedy by default);
- `metrics`: BLEU, ROUGE, exact match, any reward of the library (the training reward is the
  metric), and judge metrics;
- `evaluate`: one model on one file -> predictions.jsonl and metrics.json;
- `compare`: several models' figures side by side.

`posttrain eval` runs one model; a `type: eval` stage runs several (posttrain/stages/eval.py).
"""

from __future__ import annotations

from posttrain.evaluation.evaluate import EvalResult, evaluate, score_outputs
from posttrain.evaluation.generation import GenerationSettings

__all__ = ["EvalResult", "GenerationSettings", "evaluate", "score_outputs"]
