"""`posttrain verl ...`: hand a GRPO stage to VERL (volcengine/verl) on a Ray cluster."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from posttrain.cli.common import user_errors

verl_app = typer.Typer(help="Prepare a GRPO stage for VERL on a Ray cluster.", no_args_is_help=True)


@verl_app.command("prepare")
@user_errors
def prepare(
    config: Path = typer.Argument(..., help="Pipeline YAML."),
    overrides: Optional[List[str]] = typer.Argument(
        None, help="Dotted overrides, e.g. stages.rl.trainer.num_generations=12 (also as --set KEY=VALUE)."),
    stage: str = typer.Option(..., "--stage", help="The GRPO stage to prepare."),
    out: Path = typer.Option(..., "--out", help="Directory for train/val/test.parquet and run_verl.sh."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="A dotted override KEY=VALUE; repeatable."),
    val_size: float = typer.Option(0.1, "--val-size", help="Fraction of prompts for validation."),
    test_size: float = typer.Option(0.1, "--test-size", help="Fraction of prompts held out for testing (0: none)."),
    gpus: int = typer.Option(1, "--gpus", help="GPUs per node (trainer.n_gpus_per_node)."),
    nodes: int = typer.Option(1, "--nodes", help="Nodes (trainer.nnodes)."),
    max_prompt_length: Optional[int] = typer.Option(
        None, "--max-prompt-length", help="data.max_prompt_length; default: the longest prompt, measured."),
    force: bool = typer.Option(False, "--force", help="Replace the files of an earlier prepare in --out."),
):
    """Write VERL parquet splits and a run_verl.sh that trains the stage with `verl.trainer.main_ppo`."""
    from posttrain.integrations.verl import prepare as run_prepare

    result = run_prepare(config, stage, out, overrides=[*(overrides or []), *(set_ or [])], val_size=val_size,
                         test_size=test_size, gpus=gpus, nodes=nodes, max_prompt_length=max_prompt_length,
                         force=force)
    out_console = Console(highlight=False, soft_wrap=True)
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    table = Table(title=str(result.out_dir))
    table.add_column("split")
    table.add_column("prompts", justify="right")
    table.add_column("file")
    for split, count in result.counts.items():
        table.add_row(split, str(count), f"{split}.parquet" if count else "(none)")
    out_console.print(table)
    out_console.print(f"script: {result.script}", markup=False)
    out_console.print(f"run on the Ray head node: {result.command} [more Hydra overrides]", markup=False)
    for note in result.notes:
        err.print(f"note: {note}", markup=False)
    for warning in result.warnings:
        err.print(f"warning: {warning}", markup=False, style="yellow")
