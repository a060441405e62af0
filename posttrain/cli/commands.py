"""The `posttrain` command: parse, call the library, print. No logic lives here."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from posttrain.cli.common import user_errors
from posttrain.cli.data import data_app
from posttrain.cli.rewards import rewards_app
from posttrain.cli.search import search_app
from posttrain.cli.verl import verl_app
from posttrain.cli.score import score as score_command
from posttrain.cli.eval import eval_command
from posttrain.cli.report import report_command
from posttrain.cli.export import export_command
from posttrain.cli.chat import chat_command
from posttrain.cli.serve import serve_command
from posttrain.cli.vllm import vllm_serve_command
from posttrain.cli.ui import ui_command

app = typer.Typer(
    help="posttrain: post-train an open language model (data, SFT, reward models, GRPO, evaluation, export) "
    "from one YAML file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data", help="Convert, split and check data files.")
app.add_typer(search_app, name="search", help="Build and query the study-search index; query live PubMed.")
app.add_typer(rewards_app, name="rewards", help="List and test rewards.")
app.add_typer(verl_app, name="verl", help="Hand a GRPO stage to VERL on a Ray cluster.")
app.command("score")(score_command)
app.command("eval")(eval_command)
app.command("report")(report_command)
app.command("export")(export_command)
app.command("chat")(chat_command)
app.command("serve")(serve_command)
app.command("vllm-serve")(vllm_serve_command)
app.command("ui")(ui_command)
err = Console(stderr=True)
out = Console()


def _setup_logging() -> None:
    from rich.logging import RichHandler

    logger = logging.getLogger("posttrain")
    if not logger.handlers:
        logger.addHandler(RichHandler(console=err, show_time=False, show_path=False))
        logger.setLevel(logging.INFO)
        logger.propagate = False


OVERRIDES = typer.Argument(None, help="Dotted overrides, e.g. stages.sft1.trainer.learning_rate=2e-5 model=DIR")
ALLOW_IGNORED = typer.Option(None, "--allow-ignored", metavar="KEY",
                             help="A LLaMA-Factory recipe key that changes training and that posttrain has no "
                                  "equivalent for: train without it (as the recipe's compat: {ignore: [KEY]}).")


def _with_allowed(overrides, allowed) -> list[str]:
    return [*(overrides or []), *(f"compat.ignore+={key}" for key in allowed or [])]
# how training stages are launched (docs/distributed.md); each overrides the file's `launch:` block
NPROC = typer.Option(None, "--nproc", help="Processes per node for each training stage (one per GPU).")
NNODES = typer.Option(None, "--nnodes", help="Nodes taking part; run the same command on each.")
NODE_RANK = typer.Option(None, "--node-rank", help="This node's rank, 0 to nnodes-1; node 0 keeps the manifest.")
MASTER_ADDR = typer.Option(None, "--master-addr", help="Address of node 0, where the processes meet.")
MASTER_PORT = typer.Option(None, "--master-port", help="Port on node 0 (default: a free one; 29500 across nodes).")


def _launch(nproc, nnodes, node_rank, master_addr, master_port) -> dict:
    return {"nproc": nproc, "nnodes": nnodes, "node_rank": node_rank, "master_addr": master_addr,
            "master_port": master_port}


@app.command()
@user_errors
def run(
    config: Path = typer.Argument(..., help="Pipeline YAML (or a LLaMA-Factory recipe)."),
    overrides: Optional[List[str]] = OVERRIDES,
    only: Optional[str] = typer.Option(None, "--only", help="Run just this stage."),
    from_stage: Optional[str] = typer.Option(None, "--from", help="Run this stage and the ones after it."),
    force: bool = typer.Option(False, "--force", help="Rerun stages even if finished and unchanged."),
    nproc: Optional[int] = NPROC, nnodes: Optional[int] = NNODES, node_rank: Optional[int] = NODE_RANK,
    master_addr: Optional[str] = MASTER_ADDR, master_port: Optional[int] = MASTER_PORT,
    allow_ignored: Optional[List[str]] = ALLOW_IGNORED,
):
    """Run a pipeline: stages in order, finished ones skipped, interrupted ones resumed."""
    _setup_logging()
    from posttrain.pipeline import run as run_pipeline

    run_pipeline(config, _with_allowed(overrides, allow_ignored), only=only, from_stage=from_stage, force=force,
                 console=err,
                 launch=_launch(nproc, nnodes, node_rank, master_addr, master_port))


@app.command()
@user_errors
def train(
    config: Path = typer.Argument(..., help="A training YAML: one stage, a pipeline, or a LLaMA-Factory recipe."),
    overrides: Optional[List[str]] = OVERRIDES,
    force: bool = typer.Option(False, "--force", help="Retrain even if finished and unchanged."),
    nproc: Optional[int] = NPROC, nnodes: Optional[int] = NNODES, node_rank: Optional[int] = NODE_RANK,
    master_addr: Optional[str] = MASTER_ADDR, master_port: Optional[int] = MASTER_PORT,
    allow_ignored: Optional[List[str]] = ALLOW_IGNORED,
):
    """Train from one file, e.g. a LLaMA-Factory recipe with its dataset_info.json, unchanged."""
    _setup_logging()
    from posttrain.pipeline import run as run_pipeline

    run_pipeline(config, _with_allowed(overrides, allow_ignored), force=force, console=err,
                 launch=_launch(nproc, nnodes, node_rank, master_addr, master_port))


@app.command()
@user_errors
def validate(
    config: Path = typer.Argument(..., help="Pipeline YAML or LLaMA-Factory recipe."),
    overrides: Optional[List[str]] = OVERRIDES,
    allow_ignored: Optional[List[str]] = ALLOW_IGNORED,
):
    """Check a config, its models and every data file without training. Exit 0 when fine, 2 otherwise."""
    _setup_logging()
    from rich.markup import escape

    from posttrain.pipeline.validate import validate as run_validate

    report = run_validate(config, _with_allowed(overrides, allow_ignored))
    # escaped: rich would take "[gpu]" in "pip install 'posttrain[gpu]'" for a style and drop it
    for note in report.notes:
        out.print(f"[green]ok[/green] {escape(note)}", highlight=False, soft_wrap=True)
    for problem in report.problems:
        err.print(f"[bold red]problem[/bold red] {escape(problem)}", highlight=False, soft_wrap=True)
    if not report.ok:
        err.print(f"[bold red]{len(report.problems)} problem(s)[/bold red]")
        raise typer.Exit(2)
    out.print("[bold green]valid[/bold green]")


@app.command()
@user_errors
def status(run_dir: Path = typer.Argument(..., help="A run directory (output_dir of a pipeline).")):
    """Print each stage's state in a run directory."""
    from posttrain.runs.manifest import stage_states

    table = Table(title=str(run_dir))
    for column in ("stage", "type", "status", "seconds", "train loss", "eval loss"):
        table.add_column(column, no_wrap=True)
    colors = {"done": "green", "running": "cyan", "interrupted": "yellow", "failed": "red", "pending": "dim"}
    for row in stage_states(run_dir):
        state = row.get("status", "pending")
        metrics = row.get("metrics", {})
        table.add_row(row["name"], row.get("type", ""), f"[{colors.get(state, 'white')}]{state}[/]",
                      str(row.get("seconds", "")), _number(metrics.get("train_loss")),
                      _number(metrics.get("eval_loss")))
    out.print(table)
    for row in stage_states(run_dir):
        if row.get("status") == "done":
            out.print(f"{row['name']} → {row['output']}{_trend(row.get('metrics', {}))}", highlight=False,
                      soft_wrap=True)
        if row.get("error"):
            err.print(f"[red]{row['name']}[/red]: {row['error']}", highlight=False, soft_wrap=True)


def _number(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else ""


def _trend(metrics: dict) -> str:
    if "reward_first_fifth" not in metrics:
        return ""
    return (f"; mean reward {_number(metrics['reward_first_fifth'])} (first fifth of steps) → "
            f"{_number(metrics['reward_last_fifth'])} (last fifth)")


@app.command("init-model")
@user_errors
def init_model(
    out_dir: Path = typer.Argument(..., help="Where to write the model directory (new, empty, or an earlier model, which is replaced)."),
    corpus: List[Path] = typer.Option(..., "--corpus", help="Text to train the tokenizer on (.txt/.json/.jsonl/.parquet)."),
    size: str = typer.Option("tiny", "--size", help="tiny (~0.1 M parameters), small (~2.5 M), or qwen2.5-0.5b (Qwen2.5-0.5B's shape, ~494 M, for GPU benchmarks)."),
    seed: int = typer.Option(0, "--seed"),
):
    """Build a small random Qwen2 model with its own BPE tokenizer and ChatML template, offline."""
    from posttrain.models.tiny import init_model as build

    path = build(out_dir, corpus, size=size, seed=seed)
    out.print(f"model written to {path}")


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # `posttrain ... | head`
        sys.exit(0)


if __name__ == "__main__":
    main()
