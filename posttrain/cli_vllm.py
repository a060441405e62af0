"""`posttrain vllm-serve`: TRL's vLLM generation server, for a GRPO stage with `vllm_mode: server`.

In server mode the GRPO trainer sends its prompts to a separate vLLM server and pushes the updated weights into it
after every step, so generation has its own GPU(s) and training keeps the rest. TRL builds that server's command
line (trl/scripts/vllm_serve.py, what `trl vllm-serve` runs: `vllm serve` with NCCL weight transfer and processed
logprobs turned on, VLLM_SERVER_DEV_MODE=1 in its environment); this command maps posttrain's options onto it,
says what the machine lacks before anything starts, and merges a LoRA stage's adapter into a standalone model
first, because vLLM loads one model directory.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from posttrain.cli_common import user_errors
from posttrain.errors import ConfigError

SERVER_ENV = {"VLLM_SERVER_DEV_MODE": "1"}  # the weight-transfer endpoints trainers use live behind vLLM's dev mode


def server_command(model: str, *, host: str = "127.0.0.1", port: int = 8000, tensor_parallel_size: int = 1,
                   gpu_memory_utilization: float = 0.9, max_model_len: int | None = None, dtype: str = "auto",
                   trust_remote_code: bool = False) -> list[str]:
    """The command line TRL's `vllm-serve` script would run for these options (nothing is started)."""
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    return build_command(ScriptArguments(model=model, host=host, port=port, tensor_parallel_size=tensor_parallel_size,
                                         gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                                         dtype=dtype, trust_remote_code=trust_remote_code))


def check_options(model: str, gpu_memory_utilization: float) -> None:
    if not 0 < gpu_memory_utilization <= 1:
        raise ConfigError(f"--gpu-memory-utilization: {gpu_memory_utilization} is outside (0, 1]; it is the fraction "
                          "of each of the server's GPUs vLLM reserves (0.9 when it has the GPUs to itself)")
    root = Path(model)
    if root.exists():
        if not (root / "config.json").is_file() and not (root / "adapter_config.json").is_file():
            raise ConfigError(f"--model: {model}: neither a model directory (no config.json) nor a LoRA adapter "
                              "directory (no adapter_config.json)")
    elif model.startswith((".", "/", "~")) or "/" not in model:
        raise ConfigError(f"--model: {model}: no such model directory")


def machine_problems(tensor_parallel_size: int) -> list[str]:
    """What this machine lacks for a vLLM server, each with its fix."""
    found = []
    from posttrain import machine as gpu  # here, not at import: it imports torch, which every other command would pay for

    if not gpu.installed("vllm"):
        found.append(f"posttrain vllm-serve needs the vllm package, which is not installed: {gpu.INSTALL} (on a "
                     "CUDA machine), or train with use_vllm: false here")
    if not gpu.cuda():
        found.append("posttrain vllm-serve needs a CUDA GPU; none is present. Run it on the GPU machine, or train "
                     "with use_vllm: false here")
    elif gpu.device_count() < tensor_parallel_size:
        found.append(f"--tensor-parallel-size {tensor_parallel_size} needs that many GPUs; {gpu.device_count()} "
                     "visible (CUDA_VISIBLE_DEVICES). Fix: a smaller --tensor-parallel-size, or make more GPUs visible")
    return found


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
    from posttrain.models.loading import is_adapter_dir

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    check_options(model, gpu_memory_utilization)
    adapter = is_adapter_dir(model)
    options = dict(host=host, port=port, tensor_parallel_size=tensor_parallel_size,
                   gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                   trust_remote_code=trust_remote_code)
    if dry_run:
        served = str(merged_dir or "MERGED_DIR") if adapter else model
        if adapter:
            err.print(f"{model} is a LoRA adapter: it is merged into its base at {served} first")
        print(shlex.join(["env", *[f"{k}={v}" for k, v in SERVER_ENV.items()], *server_command(served, **options)]))
        for problem in machine_problems(tensor_parallel_size):  # a dry run still says what would stop a real one
            err.print(f"note: on this machine the server would not start: {escape(problem)}")
        return
    found = machine_problems(tensor_parallel_size)
    if found:
        raise ConfigError("\n".join(found))
    temporary = None
    try:
        if adapter:
            from posttrain.export import export

            if merged_dir is None:
                temporary = Path(tempfile.mkdtemp(prefix="posttrain-vllm-serve-"))
                merged_dir = temporary / "model"
            err.print(f"merging the adapter {model} into its base at {merged_dir}")
            export(model, out=merged_dir, trust_remote_code=trust_remote_code, say=lambda line: err.print(line))
            model = str(merged_dir)
        raise typer.Exit(_serve(server_command(model, **options), err))
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def _serve(command: list[str], err: Console) -> int:
    """Run the server until it exits; a stop signal to this process stops it too (and the merged model goes)."""
    err.print(f"starting: {shlex.join(command)}")
    from posttrain.launch.runner import _die_with_parent

    # the server holds GPUs: it goes when this process goes, even killed with SIGKILL
    process = subprocess.Popen(command, env={**os.environ, **SERVER_ENV}, preexec_fn=_die_with_parent)
    previous = signal.signal(signal.SIGTERM, lambda *_: process.terminate())
    interrupts = 0
    try:
        while True:
            try:
                return process.wait()
            except KeyboardInterrupt:  # the server got Ctrl-C too (same process group): let it shut down
                interrupts += 1
                if interrupts >= 2:  # a second Ctrl-C: stop waiting for it
                    process.kill()
    finally:
        signal.signal(signal.SIGTERM, previous)
