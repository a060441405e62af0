"""`posttrain eval`: one model answers a file's prompts; the answers are scored and the figures printed."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from posttrain.cli.common import user_errors


@user_errors
def eval_command(
    model: Path = typer.Option(..., "--model", help="A model directory (or a LoRA stage's adapter directory, loaded "
                               "on the base it names), or a hub id when online."),
    data: Path = typer.Option(..., "--data", help="Prompts: rl_prompt records (any format that makes them) or "
                              "conversations (the last assistant turn is the reference)."),
    metrics: str = typer.Option(..., "--metrics", help="Comma-separated: bleu, rouge, exact_match, judge, "
                                "reward:NAME (a library reward or module:function); or one of rm_accuracy, "
                                "preference_accuracy, implicit_reward_accuracy, which score preference pairs."),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="A LoRA adapter directory to put on --model."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="implicit_reward_accuracy: the model --model "
                                             "was trained from (a model directory, or a LoRA stage's adapter "
                                             "directory, loaded on the base it names)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="The data format (default: detected from the records)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write predictions.jsonl and metrics.json into this "
                                       "directory."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Prompts generated at once."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate the first N records only."),
    temperature: Optional[float] = typer.Option(None, "--temperature", min=0, help="Sampling temperature "
                                                "(giving one above 0 turns sampling on; default greedy)."),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="Nucleus sampling (turns sampling on)."),
    do_sample: Optional[bool] = typer.Option(None, "--do-sample/--greedy", help="Force sampling or greedy decoding."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for sampling."),
    num_samples: int = typer.Option(1, "--num-samples", min=1, help="Answers sampled per prompt (needs sampling): "
                                    "each figure becomes the mean over them, and each reward gets pass@1 and pass@k."),
    pass_threshold: float = typer.Option(0.0, "--pass-threshold", help="With --num-samples: an answer passes "
                                         "(pass@k) when its reward is above this."),
    template: Optional[str] = typer.Option(None, "--template", help="A chat template (chatml, qwen, llama3, "
                                           "mistral) for a tokenizer without one."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, bf16, fp16 or fp32."),
    backend: str = typer.Option("auto", "--backend", help="hf (transformers' generate), vllm (needs vLLM and a "
                                "CUDA GPU), or auto: vLLM where it can run, else hf."),
):
    """Evaluate one model by generation: BLEU, ROUGE, exact match, any reward (the training reward is the metric)
    and judge metrics."""
    from posttrain.data.sources import Source
    from posttrain.evaluation import GenerationSettings, evaluate
    from posttrain.evaluation.compare import baseline_text, baselines, figures, not_above

    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size, temperature=temperature,
                                  top_p=top_p, do_sample=do_sample, seed=seed, num_samples=num_samples)
    result = evaluate(str(model), [Source(str(data), fmt)], metrics, out,
                      adapter=None if adapter is None else str(adapter), limit=limit, settings=settings,
                      template=template, dtype=dtype, backend=backend, pass_threshold=pass_threshold,
                      **_reference(reference))
    console = Console(highlight=False, soft_wrap=True)
    table = Table(title=f"{result.metrics['count']} examples, {', '.join(result.metrics['formats'])}")
    table.add_column("metric", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("95 % interval", justify="right", no_wrap=True)
    intervals, shown = result.metrics.get("intervals", {}), figures(result.metrics["metrics"])
    for name, value in shown.items():
        bounds = intervals.get(name)
        table.add_row(name, f"{value:.4f}", f"[{bounds[0]:.4f}, {bounds[1]:.4f}]" if bounds else "")
    console.print(table)
    for name, baseline in baselines(result.metrics["metrics"]).items():  # what a model ignoring its input scores
        below = not_above(shown.get(name), intervals.get(name), baseline)
        console.print(baseline_text(name, baseline) + ("; the 95 % interval does not lie above it" if below else ""))
    if out:
        console.print(f"wrote {out / 'predictions.jsonl'} and {out / 'metrics.json'}")


def _reference(reference: Optional[Path]) -> dict:
    from posttrain.models.lineage import adapter_base
    from posttrain.models.loading import is_adapter_dir

    if reference is None:
        return {}
    if is_adapter_dir(reference):
        return {"reference": adapter_base(str(reference)), "reference_adapter": str(reference)}
    return {"reference": str(reference)}
