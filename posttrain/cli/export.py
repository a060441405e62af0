"""`posttrain export`: a trained model (a LoRA adapter merged into its base) as one directory a server can load."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from posttrain.cli.common import fail, user_errors


@user_errors
def export_command(
    model: str = typer.Option(..., "--model", help="The base model directory (or hub id), a full model, or a LoRA "
                              "stage's adapter directory (its base is found from adapter_config.json)."),
    out: Path = typer.Option(..., "--out", help="The directory to write; it must be empty or absent (see --force)."),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="A LoRA adapter directory to merge into --model."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="bf16, fp16 or fp32 (default: the model's own dtype)."),
    verify: bool = typer.Option(False, "--verify", help="Compare the export's logits with the unmerged model's on "
                                "sample prompts; exit 3 when they differ beyond the dtype's tolerance."),
    prompts: Optional[Path] = typer.Option(None, "--prompts", help="Prompts for --verify: a .txt file (one user "
                                           "message a line) or a data file of prompts or conversations."),
    template: Optional[str] = typer.Option(None, "--template", help="A chat template (chatml, qwen, llama3, "
                                           "mistral) to save with a tokenizer that has none."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty --out that holds a model, an earlier export "
                               "(the old one is removed only once the new export is complete)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow the model's own code to run."),
):
    """Merge a LoRA adapter into its base, cast to a dtype and save safetensors, tokenizer and a model card."""
    from posttrain.export import VerifyError, export

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        export(model, None if adapter is None else str(adapter), out=out, dtype=dtype, verify=verify,
               prompts=None if prompts is None else str(prompts), template=template,
               trust_remote_code=trust_remote_code, force=force, say=lambda line: err.print(line, markup=False))
    except VerifyError as e:
        fail(str(e))  # prints the message; the status tells a failed check (3) from bad input (2)
        raise typer.Exit(e.exit_code) from None
    Console(highlight=False, soft_wrap=True).print(str(out))
