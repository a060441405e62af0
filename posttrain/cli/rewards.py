"""`posttrain rewards ...`: list the reward library and test a reward before training with it."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from posttrain.cli.common import user_errors

rewards_app = typer.Typer(help="List and test rewards.", no_args_is_help=True)


@rewards_app.command("list")
def list_rewards():
    """The built-in rewards."""
    from posttrain.rewards import get, names

    table = Table()
    table.add_column("reward")
    table.add_column("what it scores", overflow="fold")
    for name in names():
        doc = (get(name).__doc__ or "").strip().splitlines()
        table.add_row(name, doc[0] if doc else "")
    Console().print(table)


@rewards_app.command("test")
@user_errors
def test_reward(
    name: str = typer.Argument(..., help="A built-in reward, module:function or path/to/file.py:function."),
    cases: Optional[str] = typer.Option(None, "--cases", help="jsonl of {completion, ground_truth, expected}."),
):
    """Run a reward's cases, then the probes every reward must survive. Exit 2 on any failure."""
    from posttrain.rewards import get
    from posttrain.rewards.harness import read_cases, run_cases, run_probes

    form = get(name).describe()  # a signature no call can fill stops here, exit 2
    checks = (run_cases(name, read_cases(cases)) if cases else []) + run_probes(name)
    out = Console(highlight=False, soft_wrap=True)
    table = Table(title=f"reward {name}")
    for column in ("check", "result", "detail"):
        table.add_column(column, overflow="fold")
    for check in checks:
        table.add_row(check.name, "[green]pass[/]" if check.ok else "[red]FAIL[/]", check.detail)
    out.print(f"called in the {form}")
    out.print(table)
    failed = sum(not c.ok for c in checks)
    out.print(f"{len(checks) - failed} passed, {failed} failed")
    if failed:
        raise typer.Exit(2)
