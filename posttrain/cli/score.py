"""`posttrain score`: score a file's pairs or responses with a trained reward model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from posttrain.cli.common import user_errors


@user_errors
def score(
    model: Path = typer.Option(..., "--model", help="The reward model: a reward_model (or process_reward) stage's "
                               "model directory."),
    data: Path = typer.Option(..., "--data", help="Preference pairs, conversations, or prompt + completion rows."),
    fmt: Optional[str] = typer.Option(None, "--format", help="The data format (default: detected)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write each record with its score(s) to this jsonl."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Responses scored at once."),
    step_separator: str = typer.Option("\n", "--step-separator", help="Process reward model: where a response "
                                       "is cut into steps."),
    aggregate: str = typer.Option("min", "--aggregate", help="Process reward model: a response's score from its "
                                  "step scores: min, mean or product."),
):
    """Score pairs (chosen and rejected score, and the accuracy), single responses (one score each) or, with a
    process reward model, step-labelled solutions (P(correct) per step, step accuracy, first-error F1)."""
    from rich.progress import Progress

    from posttrain.scoring.score_file import count_jobs, score_file

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    total = count_jobs(data, fmt)
    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("scoring", total=total)
        result = score_file(str(model), data, fmt, out, batch_size,
                            progress=lambda n: progress.advance(task, n),
                            step_separator=step_separator, aggregate=aggregate)
    console = Console(highlight=False, soft_wrap=True)
    if result.kind == "pairs":
        accuracy = "n/a" if result.accuracy is None else f"{result.accuracy:.4f}"
        margins = [r["chosen_score"] - r["rejected_score"] for r in result.rows if not r.get("tie")]
        mean_margin = sum(margins) / len(margins) if margins else float("nan")
        console.print(f"pairs: {result.pairs}  accuracy: {accuracy}  mean margin: {mean_margin:.4f}"
                      + (f"  ties (not counted): {result.ties}" if result.ties else ""))
    elif result.kind == "steps":
        metrics = "  ".join(f"{k.replace('_', ' ')}: {v:.4f}" for k, v in result.metrics.items())
        console.print(f"solutions: {len(result.rows)}  steps: {sum(len(r['step_scores']) for r in result.rows)}  "
                      f"{metrics}")
    else:
        values = [r["score"] for r in result.rows if isinstance(r.get("score"), (int, float))]
        mean = sum(values) / len(values) if values else float("nan")
        console.print(f"responses: {len(result.rows)}  mean score: {mean:.4f}")
    if out:
        console.print(f"wrote {out}")
