"""Metrics on held-out preference pairs, which generate nothing: a reward model's or a policy's ranking.

`rm_accuracy`: a reward model (a reward_model stage's output, full or LoRA)
scores each pair's chosen and rejected answer with `posttrain.scoring`,
exactly as `posttrain score` and the stage's own eval do; the figures are the
share of non-tie pairs whose chosen answer scores higher (`rm_accuracy`) and
the mean margin chosen − rejected (`rm_margin`).

`preference_accuracy`: a causal LM (base, SFT, DPO, any stage) is read as
the implicit reward model DPO makes of it: an answer's reward is its mean
per-token log-probability given the prompt (scoring/likelihood.py), the
reference-free form SimPO optimises; length-normalised, so a short rejected
answer does not win by being short. The figures are the share of non-tie
pairs whose chosen answer the model finds likelier (`preference_accuracy`)
and the mean margin (`preference_margin`, in nats per token). One number
compares base, SFT and DPO models on the same pairs.

`implicit_reward_accuracy`: the reward DPO itself defines, beta times
log pi(y|x) - log pi_ref(y|x) summed over the answer's tokens, with the
model's reference (the model it was trained from: in an eval stage the
stage's input model, for `posttrain eval` `--reference`). TRL's
`rewards/accuracies` is this figure on the stage's own eval data; here any
held-out pairs, after training, beside the other models. beta scales every
reward alike and leaves the ranking as it is, so the margin
(`implicit_reward_margin`) is given in nats, beta = 1 (TRL's
`rewards/margins` is beta times it).

The files written have the shape of every other evaluation's:
`predictions.jsonl` (one row per pair with both scores) and `metrics.json`,
so eval stages, their tables and the report treat these like any other.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from posttrain.data.formats import load_records
from posttrain.data.io import write_json, write_records
from posttrain.errors import PosttrainError
from posttrain.evaluation.examples import source_format
from posttrain.evaluation.generation import load
from posttrain.evaluation.metrics import IMPLICIT_REWARD_ACCURACY, PREFERENCE_ACCURACY
from posttrain.evaluation.metrics import RM_ACCURACY as METRIC
from posttrain.evaluation.results import EvalResult, with_intervals
from posttrain.scoring import load_scorer, model_kind
from posttrain.scoring.likelihood import response_log_probs


def evaluate_reward_model(model: str, adapter: str | None, sources, out_dir=None, *, limit: int | None = None,
                          batch_size: int = 8):
    scored = adapter if adapter is not None else model  # a LoRA reward model is its adapter directory
    rows, formats = _read_pairs(sources, limit)
    if model_kind(scored) != "bradley_terry":
        raise PosttrainError(f"{scored}: {METRIC} needs a Bradley-Terry reward model (one score per response); "
                             "a process reward model is evaluated with `posttrain score` on step-labelled solutions")
    scorer = load_scorer(scored, batch_size=batch_size)
    return _ranked(METRIC, "rm_margin", scorer.score_many, rows, str(scored), None, sources, formats, out_dir)


def evaluate_policy(model: str, adapter: str | None, sources, out_dir=None, *, limit: int | None = None,
                    batch_size: int = 8, template: str | None = None, dtype: str = "auto",
                    trust_remote_code: bool = False, attn_implementation: str | None = None):
    rows, formats = _read_pairs(sources, limit)
    network, tokenizer = load(model, adapter, template=template, dtype=dtype, trust_remote_code=trust_remote_code,
                              attn_implementation=attn_implementation)

    def mean_log_probs(answers):
        return [total / max(count, 1) for total, count in response_log_probs(network, tokenizer, answers, batch_size)]

    return _ranked(PREFERENCE_ACCURACY, "preference_margin", mean_log_probs, rows, str(model),
                   None if adapter is None else str(adapter), sources, formats, out_dir)


def evaluate_implicit_reward(model: str, adapter: str | None, reference: str, reference_adapter: str | None,
                             sources, out_dir=None, *, limit: int | None = None, batch_size: int = 8,
                             template: str | None = None, dtype: str = "auto", trust_remote_code: bool = False,
                             attn_implementation: str | None = None):
    rows, formats = _read_pairs(sources, limit)
    options = {"template": template, "dtype": dtype, "trust_remote_code": trust_remote_code,
               "attn_implementation": attn_implementation}
    network, tokenizer = load(model, adapter, **options)
    reference_network, _ = load(reference, reference_adapter, **options)

    def log_ratios(answers):
        policy = response_log_probs(network, tokenizer, answers, batch_size)
        frozen = response_log_probs(reference_network, tokenizer, answers, batch_size)
        return [mine - theirs for (mine, _), (theirs, _) in zip(policy, frozen)]

    result = _ranked(IMPLICIT_REWARD_ACCURACY, "implicit_reward_margin", log_ratios, rows, str(model),
                     None if adapter is None else str(adapter), sources, formats, None)
    result.metrics["reference"] = {"model": str(reference),
                                   "adapter": None if reference_adapter is None else str(reference_adapter)}
    return _written(result, out_dir)


def _written(result: EvalResult, out_dir) -> EvalResult:
    if out_dir is None:
        return result
    out_dir = Path(out_dir)
    write_records(out_dir / "predictions.jsonl", result.rows, "jsonl")
    write_json(out_dir / "metrics.json", result.metrics)
    return EvalResult(result.metrics, result.rows, out_dir)


def _read_pairs(sources, limit: int | None) -> tuple[list[dict], list[str]]:
    rows, formats = [], []
    for source in sources:  # read (and check) every pair, as the data spec says, before the model loads
        name = source_format(source, records=("preference",))
        formats.append(name)
        records = load_records(source.path, name, columns=source.columns, tags=source.tags, split=source.split,
                               max_samples=source.max_samples, record="preference")
        rows += [{"path": str(source.path), "line": line, **record} for line, record in records]
    rows = rows[:limit] if limit else rows
    if not rows:
        raise PosttrainError(f"{', '.join(str(s.path) for s in sources)}: no preference pairs")
    return rows, formats


def _ranked(metric: str, margin_name: str, score: Callable[[list], list[float]], rows: list[dict], model: str,
            adapter: str | None, sources, formats: list[str], out_dir) -> EvalResult:
    """Each pair's chosen and rejected answer scored by `score`; `metric` is how often chosen is above."""
    started = time.time()
    scores = score([(row["prompt"], row[key]) for row in rows for key in ("chosen", "rejected")])
    for row, chosen, rejected in zip(rows, scores[0::2], scores[1::2]):
        row.update(chosen_score=chosen, rejected_score=rejected)
    decided = [row for row in rows if not row.get("tie")]
    margins = [row["chosen_score"] - row["rejected_score"] for row in decided]
    for row in rows:
        margin = row["chosen_score"] - row["rejected_score"]
        row["scores"] = {metric: float(margin > 0), margin_name: margin} if not row.get("tie") else {}
        # what a report shows of any evaluation, a reference and an output: here the pair and its two scores
        row["reference"] = f"chosen: {_text(row['chosen'])}\n\nrejected: {_text(row['rejected'])}"
        row["output"] = f"chosen {row['chosen_score']:+.3f}, rejected {row['rejected_score']:+.3f}"
    figures = {metric: sum(m > 0 for m in margins) / len(margins) if margins else float("nan"),
               margin_name: sum(margins) / len(margins) if margins else float("nan")}
    document = {"model": model, "adapter": adapter, "data": [str(s.path) for s in sources], "formats": formats,
                "count": len(rows), "pairs": len(decided), "ties": len(rows) - len(decided),
                "metric_names": [metric], "metrics": figures, "counts": {metric: len(decided)},
                "scoring_seconds": round(time.time() - started, 2), **with_intervals([metric], rows, 0)}
    return _written(EvalResult(document, rows, None), out_dir)


def _text(answer) -> str:
    return answer if isinstance(answer, str) else "\n".join(m.get("content", "") for m in answer)
