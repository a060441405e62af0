"""`posttrain vllm-serve`: TRL's vLLM generation server, for a GRPO stage with `vllm_mode: server`.

The command maps posttrain's options onto TRL's server (posttrain/serving/vllm.py), says what the machine lacks
before anything starts, and merges a LoRA stage's adapter into a standalone model first, because vLLM loads one
model directory.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from posttrain.cli.common import user_errors
from posttrain.errors import ConfigError


@user_errors
def vllm_serve_command(
    model: str = typer.Option(..., "--model", help="A model directory, a hub id, or a LoRA stage's adapter directory "
                              "(merged into its base first): the model the GRPO stage starts from."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for trainers on other "
                             "nodes; there is no authentication)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="The stage's vllm_server_port."),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", min=1, help="GPUs one model is split over."),
    gpu_memory_utilization: float = typer.Option(0.9, "--gpu-memory-utilization", help="Fraction of each server "
                                                 "GPU's memory vLLM reserves, in (0, 1]."),
    max_model_len: Optional[int] = typer.Option(None, "--max-model-len", min=1, help="Longest prompt + completion "
                                                "(default: the model's context length)."),
    merged_dir: Optional[Path] = typer.Option(None, "--merged-dir", help="Where to merge an adapter (default: a "
                                              "temporary directory, removed when the server stops)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow the model's own code to run."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the command and exit; start and merge nothing."),
):
    """Start TRL's vLLM generation server for GRPO with `vllm_mode: server` (on GPUs training does not use)."""
    from posttrain.export import export  # here: it loads torch, which --help should not pay for
    from posttrain.models.loading import is_adapter_dir
    from posttrain.serving import vllm as vllm_server  # and the launcher, the stage table and the config schema

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    vllm_server.check_options(model, gpu_memory_utilization)
    adapter = is_adapter_dir(model)
    options = dict(host=host, port=port, tensor_parallel_size=tensor_parallel_size,
                   gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                   trust_remote_code=trust_remote_code)
    if dry_run:
        served = str(merged_dir or "MERGED_DIR") if adapter else model
        if adapter:
            err.print(f"{model} is a LoRA adapter: it is merged into its base at {served} first")
        environment = [f"{k}={v}" for k, v in vllm_server.SERVER_ENV.items()]
        print(shlex.join(["env", *environment, *vllm_server.server_command(served, **options)]))
        # a dry run still says what would stop a real one
        for problem in vllm_server.machine_problems(tensor_parallel_size):
            err.print(f"note: on this machine the server would not start: {escape(problem)}")
        return
    found = vllm_server.machine_problems(tensor_parallel_size)
    if found:
        raise ConfigError("\n".join(found))
    temporary = None
    try:
        if adapter:
            if merged_dir is None:
                temporary = Path(tempfile.mkdtemp(prefix="posttrain-vllm-serve-"))
                merged_dir = temporary / "model"
            err.print(f"merging the adapter {model} into its base at {merged_dir}")
            export(model, out=merged_dir, trust_remote_code=trust_remote_code, say=lambda line: err.print(line))
            model = str(merged_dir)
        raise typer.Exit(vllm_server.serve(vllm_server.server_command(model, **options), err))
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
