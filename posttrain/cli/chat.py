"""`posttrain chat`: a terminal chat with a model (or a scripted one through a pipe)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from posttrain.cli.common import user_errors

MODEL_HELP = ("A model directory (or a LoRA stage's adapter directory, loaded on the base it names), or a hub id "
              "when online.")


@user_errors
def chat_command(
    model: Path = typer.Option(..., "--model", help=MODEL_HELP),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="A LoRA adapter directory to put on --model."),
    system: Optional[str] = typer.Option(None, "--system", help="The system prompt."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1, help="Most tokens in one answer."),
    temperature: Optional[float] = typer.Option(None, "--temperature", min=0, help="Sampling temperature "
                                                "(above 0 turns sampling on; default greedy)."),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="Nucleus sampling (turns sampling on)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for sampling."),
    template: Optional[str] = typer.Option(None, "--template", help="A chat template (chatml, qwen, llama3, "
                                           "mistral) for a tokenizer without one."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, bf16, fp16 or fp32."),
):
    """Chat with a model in the terminal: answers stream as generated, the history is kept; /reset, /system TEXT,
    /exit. From a pipe, each line is a turn and each answer one printed block."""
    from posttrain.serving.chat import chat
    from posttrain.evaluation.generation import GenerationSettings
    from posttrain.serving.inference import Engine

    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=1, temperature=temperature,
                                  top_p=top_p, seed=seed)
    engine = Engine.load(str(model), None if adapter is None else str(adapter), template=template, dtype=dtype)
    try:
        chat(engine, settings, system=system)
    finally:
        engine.close()
