"""`posttrain data ...`: convert, split and check data files from the shell.

Thin on purpose: each command parses its options, calls the library function
a notebook would call, and prints the result. Bad input (a PosttrainError)
prints one clear message to stderr and exits 2, never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from typing import List, Optional

import typer
from rich.console import Console

from posttrain.cli.common import user_errors
from posttrain.errors import PosttrainError

data_app = typer.Typer(help="Convert, split and check data files.", no_args_is_help=True)


def _out() -> Console:
    # made per call so output goes wherever sys.stdout points now (test runners swap it)
    return Console(highlight=False, soft_wrap=True)


def _json_option(name: str, text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise PosttrainError(f"--{name}: invalid JSON ({e.msg}); expected an object such as '{{\"prompt\": \"q\"}}'")
    if not isinstance(value, dict):
        raise PosttrainError(f"--{name}: expected a JSON object, got {type(value).__name__}")
    return value


@contextlib.contextmanager
def _terminated_as_interrupted():
    """SIGTERM (timeout, a scheduler, kill) stops the command as Ctrl-C does, so the atomic writer removes its
    temporary file; Python's default is to die on the spot and leave it beside the output."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@data_app.command()
@user_errors
def convert(
    in_path: str = typer.Argument(..., metavar="IN", help="Input file (.json, .jsonl, .parquet) or directory."),
    out_path: str = typer.Argument(..., metavar="OUT", help="Output file; its extension picks json, jsonl or parquet."),
    from_format: Optional[str] = typer.Option(None, "--from", help="Input format (alpaca, sharegpt, openai); "
                                              "detected from the first record when left out."),
    to_format: Optional[str] = typer.Option(None, "--to", help="Output format (default: openai for conversations, "
                                            "rl_prompt for RL prompts; verl writes VERL's parquet rows)."),
    columns: Optional[str] = typer.Option(None, help="LLaMA-Factory columns mapping as JSON."),
    tags: Optional[str] = typer.Option(None, help="LLaMA-Factory sharegpt tags as JSON."),
    progress: bool = typer.Option(True, help="Show a progress bar on a terminal."),
    workers: Optional[int] = typer.Option(None, help="Processes that convert a .jsonl file into .jsonl "
                                          "(default: every core for a file over 64 MB, else 1)."),
):
    """Convert IN from one format to another, writing OUT atomically."""
    from posttrain.data.convert import convert as run

    with _terminated_as_interrupted():
        count = run(in_path, out_path, from_format, to_format, columns=_json_option("columns", columns),
                    tags=_json_option("tags", tags), progress=progress, workers=workers)
    _out().print(f"wrote {count} records to {out_path}", markup=False)


@data_app.command()
@user_errors
def split(
    in_path: str = typer.Argument(..., metavar="IN", help="Input file."),
    out_dir: str = typer.Argument(..., metavar="OUTDIR", help="Directory for train/validation/test files."),
    ratios: str = typer.Option("0.8,0.1,0.1", help="Comma-separated ratios summing to 1 (2 or 3 of them)."),
    seed: int = typer.Option(42, help="Shuffle seed; the same seed gives the same split."),
    names: Optional[str] = typer.Option(None, help="Comma-separated split names, one per ratio."),
):
    """Shuffle IN with SEED and split it into OUTDIR/train, validation, test."""
    from posttrain.data.split import split as run

    try:
        values = [float(r) for r in ratios.split(",")]
    except ValueError:
        raise PosttrainError(f"--ratios: expected comma-separated numbers such as 0.8,0.1,0.1, got {ratios!r}")
    with _terminated_as_interrupted():
        counts = run(in_path, out_dir, values, seed=seed, names=names.split(",") if names else None)
    _out().print(", ".join(f"{name}: {n}" for name, n in counts.items()), markup=False)


@data_app.command()
@user_errors
def check(
    file: str = typer.Argument(..., help="Data file to check."),
    stage: str = typer.Option("sft", help="The stage that will read it (which record type to expect)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Input format; detected when left out."),
    model: Optional[str] = typer.Option(None, help="Model directory whose tokenizer measures token lengths."),
    template: Optional[str] = typer.Option(None, help="Chat template for a tokenizer that has none."),
    max_length: Optional[int] = typer.Option(None, help="Token limit training will cut at (default 1024)."),
    against: List[str] = typer.Option([], help="Another split file to check for overlap; repeatable."),
    columns: Optional[str] = typer.Option(None, help="LLaMA-Factory columns mapping as JSON."),
    tags: Optional[str] = typer.Option(None, help="LLaMA-Factory sharegpt tags as JSON."),
    progress: bool = typer.Option(True, help="Show a progress bar on a terminal."),
):
    """Report schema, role-order, duplicate, overlap and length problems; exit 2 on errors."""
    from posttrain import stages
    from posttrain.data.check import check as run

    report = run(file, record_type=stages.reads(stage), reader=stage, fmt=fmt, model=model, max_length=max_length,
                 other_splits=against,
                 columns=_json_option("columns", columns), tags=_json_option("tags", tags), template=template,
                 progress=progress)
    _out().print(report.to_text(), markup=False)
    if not report.ok:
        raise typer.Exit(2)


def _listed(values: List[str]) -> list[str] | None:
    # repeatable and comma-separated both work: --model-names a --model-names b, or --model-names a,b
    items = [v.strip() for value in values for v in value.split(",") if v.strip()]
    return items or None


@data_app.command()
@user_errors
def variants(
    in_path: str = typer.Argument(..., metavar="IN", help="Agent-evaluation file (DataEva's finetune.jsonl)."),
    out_dir: str = typer.Argument(..., metavar="OUTDIR", help="Directory for the variant files and dataset_info.json."),
    evaluation_types: List[str] = typer.Option([], help="Only these evaluation types (clip, category, final); "
                                               "writes reward_model_custom only. Repeatable or comma-separated."),
    model_names: List[str] = typer.Option([], help="Only these model names (custom variant)."),
    task_ids: List[str] = typer.Option([], help="Only these task ids (custom variant)."),
    split_eval: bool = typer.Option(False, "--split-eval", help="Hold out an eval file per variant."),
    eval_ratio: float = typer.Option(0.15, help="Share of a variant held out for eval."),
    min_samples: int = typer.Option(5, help="A variant smaller than this is not split."),
    seed: int = typer.Option(42, help="Shuffle seed of the eval split."),
    no_metadata: bool = typer.Option(False, "--no-metadata", help="Leave out the [EVAL_TYPE: ...] prefix."),
):
    """Write the seed's agent-judge dataset variants of IN and a dataset_info.json into OUTDIR."""
    from posttrain.data.variants import write_variants

    counts = write_variants(
        in_path, out_dir, evaluation_types=_listed(evaluation_types), model_names=_listed(model_names),
        task_ids=_listed(task_ids), split_eval=split_eval, eval_ratio=eval_ratio, min_samples=min_samples,
        seed=seed, with_metadata=not no_metadata)
    for name, count in counts.items():
        held = f" + {count['eval']} eval" if "eval" in count else ""
        _out().print(f"{name}: {count['train']} train{held}", markup=False)
    _out().print(f"wrote {len(counts)} variants and dataset_info.json to {out_dir}", markup=False)
