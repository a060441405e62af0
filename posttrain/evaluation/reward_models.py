"""Reward-model accuracy as an evaluation metric: a reward model scores held-out preference pairs.

A reward model generates nothing, so `rm_accuracy` is the one metric that
does not go through generation: the model (a reward_model stage's output,
full or LoRA) scores each pair's chosen and rejected answer with
`posttrain.scoring`, exactly as `posttrain score` and the stage's own eval
do, and the figures are the share of non-tie pairs whose chosen answer
scores higher (`rm_accuracy`) and the mean margin chosen − rejected
(`rm_margin`). The files written have the shape of every other evaluation's:
`predictions.jsonl` (one row per pair with both scores) and `metrics.json`,
so eval stages, their tables and the report treat a reward model like any
other model.
"""

from __future__ import annotations

import time
from pathlib import Path

from posttrain.data.formats import load_records
from posttrain.data.io import write_json, write_records
from posttrain.errors import PosttrainError
from posttrain.evaluation.examples import source_format
from posttrain.evaluation.metrics import RM_ACCURACY as METRIC
from posttrain.evaluation.results import EvalResult, with_intervals
from posttrain.scoring import load_scorer, model_kind


def evaluate_reward_model(model: str, adapter: str | None, sources, out_dir=None, *, limit: int | None = None,
                          batch_size: int = 8):
    scored = adapter if adapter is not None else model  # a LoRA reward model is its adapter directory
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
    if model_kind(scored) != "bradley_terry":
        raise PosttrainError(f"{scored}: {METRIC} needs a Bradley-Terry reward model (one score per response); "
                             "a process reward model is evaluated with `posttrain score` on step-labelled solutions")
    scorer = load_scorer(scored, batch_size=batch_size)
    started = time.time()
    answers = [(row["prompt"], row[key]) for row in rows for key in ("chosen", "rejected")]
    scores = scorer.score_many(answers)
    for row, chosen, rejected in zip(rows, scores[0::2], scores[1::2]):
        row.update(chosen_score=chosen, rejected_score=rejected)
    decided = [row for row in rows if not row.get("tie")]
    margins = [row["chosen_score"] - row["rejected_score"] for row in decided]
    for row in rows:
        margin = row["chosen_score"] - row["rejected_score"]
        row["scores"] = {METRIC: float(margin > 0), "rm_margin": margin} if not row.get("tie") else {}
        # what a report shows of any evaluation, a reference and an output: here the pair and its two scores
        row["reference"] = f"chosen: {_text(row['chosen'])}\n\nrejected: {_text(row['rejected'])}"
        row["output"] = f"chosen {row['chosen_score']:+.3f}, rejected {row['rejected_score']:+.3f}"
    figures = {METRIC: sum(m > 0 for m in margins) / len(margins) if margins else float("nan"),
               "rm_margin": sum(margins) / len(margins) if margins else float("nan")}
    document = {"model": str(scored), "adapter": None, "data": [str(s.path) for s in sources], "formats": formats,
                "count": len(rows), "pairs": len(decided), "ties": len(rows) - len(decided),
                "metric_names": [METRIC], "metrics": figures, "counts": {METRIC: len(decided)},
                "scoring_seconds": round(time.time() - started, 2), **with_intervals([METRIC], rows, 0)}
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_records(out_dir / "predictions.jsonl", rows, "jsonl")
        write_json(out_dir / "metrics.json", document)
    return EvalResult(document, rows, out_dir)


def _text(answer) -> str:
    return answer if isinstance(answer, str) else "\n".join(m.get("content", "") for m in answer)
