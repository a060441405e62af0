"""`posttrain report RUN_DIR`: rebuild a run's report.html from what its directory holds.

An eval stage writes the report as it finishes; this command rebuilds it
later (after a report failed, a run was copied from another machine, or to
show more prompts side by side), without loading a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from posttrain.cli.common import user_errors


@user_errors
def report_command(
    run_dir: Path = typer.Argument(..., help="A run directory (the output_dir of a pipeline)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write the HTML (default: RUN_DIR/report.html, "
                                       "or RUN_DIR/STAGE/report.html with --stage)."),
    stage: Optional[str] = typer.Option(None, "--stage", help="Report on one eval stage (and the training stages "
                                        "before it) instead of the whole run."),
    examples: Optional[int] = typer.Option(None, "--examples", min=0, help="Prompts shown side by side per eval "
                                           "stage (default 8)."),
):
    """Build the HTML report of a run: training curves, evaluation tables and charts, outputs side by side."""
    from posttrain.evaluation.report import write_report

    path = write_report(run_dir, out, eval_stage=stage, **({} if examples is None else {"examples": examples}))
    Console(highlight=False, soft_wrap=True).print(f"wrote {path}")
