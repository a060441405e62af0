"""The rules a GRPO stage's rollouts must satisfy once it moves to GPUs, said before anything loads.

TRL checks these only inside GRPOTrainer, after the data and the model have loaded, and in its own words:
vLLM's modes (colocated in each training process, or a separate `posttrain vllm-serve`) and the share of GPU
memory a colocated engine takes, its tensor-parallel size against the training processes, and the generation
round (completions a round, whole groups, whole optimizer batches). `vllm_problems` and `generation_problems`
name each rule broken with its fix; `vllm_notes` tells `posttrain validate` how the chosen mode will run.
posttrain/machine.py asks this module for a GRPO stage, beside the other GPU-only options.
"""

from __future__ import annotations

import dataclasses
import math
import os

from posttrain import machine as gpu

VLLM_MODES = ("colocate", "server")
COLOCATE_SHARE = 0.5  # above this, colocated vLLM leaves training less memory than vLLM itself holds


def vllm_problems(stage, pipeline, where: str) -> list[str]:
    """What keeps a GRPO stage's vLLM rollouts from running here or as configured, each with its fix."""
    trainer, found = stage.trainer, []
    if not trainer.get("use_vllm"):
        return found
    mode = trainer.get("vllm_mode", "colocate")
    if mode not in VLLM_MODES:
        found.append(f"{where}.vllm_mode: expected colocate (vLLM inside each training process) or server (a "
                     f"separate `posttrain vllm-serve`), got {mode!r}")
    share = trainer.get("vllm_gpu_memory_utilization")
    if isinstance(share, (int, float)) and not 0 < share <= 1:
        found.append(f"{where}.vllm_gpu_memory_utilization: {share} is outside (0, 1]; it is the fraction of each "
                     "GPU's memory vLLM reserves. Fix: a value such as TRL's default 0.3")
    found.append(gpu.needs_cuda_and("vllm", f"{where}.use_vllm", "vLLM generates the rollouts on the GPU",
                                    f"Fix: {gpu.INSTALL} on a CUDA machine, or use_vllm: false here (rollouts then "
                                    "use transformers' generate)"))
    # a launched worker knows its world; validate knows the pipeline's `launch:` block, when it has one
    world = world_size(pipeline)
    tp = trainer.get("vllm_tensor_parallel_size", 1)
    if mode == "colocate" and isinstance(tp, int) and tp > 0 and world % tp:
        divisors = [str(n) for n in range(1, world + 1) if world % n == 0]
        found.append(f"{where}.vllm_tensor_parallel_size: {tp} does not divide the {world} training process"
                     f"{'es' if world > 1 else ''} (each colocated vLLM engine spans that many of them). Fix: one of "
                     f"{', '.join(divisors)}, or more processes (--nproc; `posttrain validate FILE launch.nproc=N` "
                     "checks such a run)")
    return found


def world_size(pipeline) -> int:
    """The training processes: a launched worker knows its world; otherwise the pipeline's `launch:`."""
    launch = getattr(pipeline, "launch", None)
    return int(os.environ.get("WORLD_SIZE") or (launch.processes if launch is not None else 1))


def vllm_notes(stage, pipeline, where: str) -> list[str]:
    trainer = stage.trainer
    set_keys = sorted(k for k in trainer if k.startswith("vllm_"))
    if not trainer.get("use_vllm"):
        return [f"{where}: {', '.join(set_keys)}: no effect without use_vllm: true"] if set_keys else []
    if trainer.get("vllm_mode", "colocate") not in VLLM_MODES:
        return []  # a problem already
    if trainer.get("vllm_mode", "colocate") == "server":
        url = trainer.get("vllm_server_base_url") or (f"http://{trainer.get('vllm_server_host', '0.0.0.0')}:"
                                                      f"{trainer.get('vllm_server_port', 8000)}")
        port = trainer.get("vllm_server_port", 8000)
        found = [f"{where}.vllm_mode: server: the trainer sends rollouts to a vLLM server at {url} (waiting up to "
                 f"vllm_server_timeout, 240 s by default); start it first on a GPU training does not use: "
                 f"CUDA_VISIBLE_DEVICES=0 posttrain vllm-serve --model {serve_model(stage, pipeline)} --port {port}"]
        colocate_only = [k for k in ("vllm_gpu_memory_utilization", "vllm_tensor_parallel_size") if k in trainer]
        if colocate_only:
            found.append(f"{where}: {', '.join(colocate_only)} {'apply' if len(colocate_only) > 1 else 'applies'} "
                         "to colocate mode only; give the server "
                         "--gpu-memory-utilization / --tensor-parallel-size instead")
        return found
    share = trainer.get("vllm_gpu_memory_utilization", 0.3)
    if not isinstance(share, (int, float)) or not 0 < share <= 1:
        return []  # a problem already
    note = (f"{where}.vllm_mode: colocate: vLLM runs inside each training process and reserves {share:g} of its "
            "GPU's memory for weights and KV cache")
    if share > COLOCATE_SHARE:
        note += (f"; that leaves training {1 - share:.0%} for its weights, gradients, optimizer states and "
                 "activations (full fine-tuning with AdamW: about 8 bytes a parameter in bf16, 16 in fp32, against "
                 "vLLM's 2 for bf16 weights). If training runs out of memory: lower vllm_gpu_memory_utilization "
                 "(TRL's default is 0.3), set vllm_enable_sleep_mode: true, or give vLLM its own GPU with "
                 "vllm_mode: server")
    return [note]


def serve_model(stage, pipeline) -> str:
    """The model a vLLM server for `stage` should load: the stage's input model, where a run will put it."""
    ref = stage.model or "base"
    if ref == "base":
        return pipeline.model
    if ref in {s.name for s in pipeline.stages}:
        return os.path.join(pipeline.output_dir, ref, "model")
    return ref


def generation_problems(settings: dict, where: str, processes: int) -> list[str]:
    """TRL's rules for the GRPO generation round, each with the fix (`settings` as GRPOConfig will get them)."""
    explicit, steps = settings.get("generation_batch_size"), settings.get("steps_per_generation")
    per_device = setting_value(settings, "per_device_train_batch_size")
    group = setting_value(settings, "num_generations")
    found = []
    if explicit and steps:
        found.append(f"{where}: generation_batch_size {explicit} and steps_per_generation {steps} both size the "
                     "generation round; keep one (generation_batch_size: completions a round; steps_per_generation: "
                     "optimizer steps one round feeds, each per_device_train_batch_size x processes completions)")
    if isinstance(group, int) and group < 2:
        found.append(f"{where}.num_generations: {group}; GRPO scores each completion against the others of its "
                     "prompt, so a group needs at least 2. Fix: num_generations: 2 or more")
    if isinstance(explicit, int) and not steps and isinstance(per_device, int) and per_device > 0:
        batch = per_device * processes
        if explicit % batch:
            step = math.lcm(batch, group) if isinstance(group, int) and group > 0 else batch
            found.append(f"{where}.generation_batch_size: {explicit} is not a whole number of optimizer batches "
                         f"of {batch} completions (per_device_train_batch_size {per_device} x {processes} "
                         f"process(es)). Fix: generation_batch_size: {step * -(-explicit // step)}")
    return found


def setting_value(settings: dict, key: str):
    """A trainer setting as GRPOConfig will have it: the stage's value, else TRL's default."""
    from trl import GRPOConfig

    if settings.get(key) is not None:
        return settings[key]
    return next(f.default for f in dataclasses.fields(GRPOConfig) if f.name == key)
