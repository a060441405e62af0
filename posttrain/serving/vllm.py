"""TRL's vLLM generation server, for a GRPO stage with `vllm_mode: server`: its command, what it needs, running it.

In server mode the GRPO trainer sends its prompts to a separate vLLM server and pushes the updated weights into it
after every step, so generation has its own GPU(s) and training keeps the rest. TRL builds that server's command
line (trl/scripts/vllm_serve.py, what `trl vllm-serve` runs: `vllm serve` with NCCL weight transfer and processed
logprobs turned on, VLLM_SERVER_DEV_MODE=1 in its environment); posttrain/cli/vllm.py maps posttrain's options
onto it.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from pathlib import Path

from posttrain import machine as gpu
from posttrain.errors import ConfigError
from posttrain.launch.process import die_with_parent

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


def serve(command: list[str], err) -> int:
    """Run the server until it exits; a stop signal to this process stops it too (and the merged model goes)."""
    err.print(f"starting: {shlex.join(command)}")
    # the server holds GPUs: it goes when this process goes, even killed with SIGKILL
    process = subprocess.Popen(command, env={**os.environ, **SERVER_ENV}, preexec_fn=die_with_parent)
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
