"""What a training stage asks of the machine, checked before anything loads: one list, each line with its fix.

posttrain/machine.py says what the machine has and what each GPU-only option needs; this module goes through a
training stage's options (QLoRA, precision, Liger, nccl, the optimizer, one process per GPU) and asks it.
`posttrain validate` lists what it finds, and every training stage calls `require` before it reads anything. A
stage type with options of its own (GRPO's vLLM rollouts) adds them in its module's `problems`; the stage table
(posttrain/stages/__init__.py) picks the module's hook or this one.
"""

from __future__ import annotations

import os

from posttrain import machine
from posttrain.errors import ConfigError


def _precision(stage, pipeline, where: str) -> list[str]:
    trainer, found = stage.trainer, []
    cap = machine.capability()
    if trainer.get("tf32"):
        lacking = machine.lacks(cap, (8, 0))
        if lacking:
            found.append(f"{where}.trainer.tf32: TF32 needs an NVIDIA GPU of compute capability 8.0 or newer "
                         f"(Ampere or later); {lacking}. Fix: drop tf32 on this machine")
    bf16 = [label for label, asked in (("dtype", pipeline.dtype == "bf16"),
                                       (f"{where}.trainer.bf16", trainer.get("bf16") is True)) if asked]
    if cap is not None and cap < (8, 0):  # without CUDA, bf16 trains on the CPU (see notes)
        found += [f"{label}: bf16 needs a GPU of compute capability 8.0 or newer; this GPU "
                  f"({machine.device_name()}) is "
                  f"{cap[0]}.{cap[1]}. Fix: train in fp16 mixed precision here (dtype: fp32 with trainer fp16: true)"
                  for label in bf16]
    fp16_mixed = trainer.get("fp16", pipeline.dtype == "fp16")
    if (cap is not None and pipeline.dtype == "fp16" and fp16_mixed and getattr(stage, "finetuning", "full") == "full"
            and not (trainer.get("deepspeed") or getattr(stage, "deepspeed", None))):  # DeepSpeed keeps its own
        # accelerate's gradient scaler unscales every gradient and torch refuses fp16 ones
        found.append(f"dtype: fp16 with {where}.finetuning: full: fp16 mixed precision needs fp32 master weights "
                     "(torch's gradient scaler stops with 'Attempting to unscale FP16 gradients'). Fix: dtype: fp32 "
                     "(trainer fp16: true stays), or dtype: bf16 on a GPU of compute capability 8.0 or newer")
    return found


def _one_process_per_gpu(stage, pipeline, where: str, launched: bool) -> list[str]:
    """accelerate gives each process one GPU by its local rank: more processes than GPUs share one (NCCL stops with
    'Duplicate GPU detected'), and one unlaunched process with several GPUs visible gets nn.DataParallel, which
    splits each batch over them (TRL's SFT trainer refuses it)."""
    launch, gpus = getattr(pipeline, "launch", None), machine.device_count()
    if launch is None or not machine.cuda() or os.environ.get("WORLD_SIZE"):
        return []
    nproc = getattr(launch, "nproc", launch.processes)
    if launched and nproc > gpus:
        return [f"launch.nproc: {nproc} processes on this node, but {gpus} CUDA GPU{'s are' if gpus > 1 else ' is'} "
                f"visible; two processes would share a GPU. Fix: --nproc {gpus} (or make more GPUs visible with "
                "CUDA_VISIBLE_DEVICES)"]
    if not launched and gpus > 1:
        return [f"{where}: {gpus} CUDA GPUs are visible and the stage runs in one process, so transformers would "
                "spread each batch over them with nn.DataParallel (slow, and TRL's SFT trainer refuses it). Fix: "
                f"--nproc {gpus} (one process a GPU), or CUDA_VISIBLE_DEVICES=0 to train on one"]
    return []


# TrainingArguments' `optim` values that import a package a plain install leaves out: name prefix -> (module, pip name)
OPTIMIZER_PACKAGES = [
    (("adamw_bnb", "adamw_8bit", "ademamix", "paged_", "lion_", "rmsprop_bnb"),
     ("bitsandbytes", "bitsandbytes")),
    (("galore_",), ("galore_torch", "galore-torch")),
    (("lomo", "adalomo"), ("lomo_optim", "lomo-optim")),
    (("grokadamw",), ("grokadamw", "grokadamw")),
    (("schedule_free_",), ("schedulefree", "schedulefree")),
    (("apollo_",), ("apollo_torch", "apollo-torch")),
    (("stable_adamw",), ("optimi", "torch-optimi")),
    (("adamw_torch_4bit", "adamw_torch_8bit"), ("torchao", "torchao")),
    (("adamw_anyprecision",), ("torchdistx", "torchdistx")),
]


def _optimizer(optim, where: str) -> list[str]:
    """An optimizer from a package that is not installed fails only when training starts, as an ImportError."""
    if not isinstance(optim, str):
        return []
    needs = next((package for prefixes, package in OPTIMIZER_PACKAGES if optim.startswith(prefixes)), None)
    found = []
    if needs and not machine.installed(needs[0]):
        found.append(f"{where}: {optim} comes from the {needs[0]} package, which is not installed. Fix: pip install "
                     f"{needs[1]}, or optim: adamw_torch (the default)")
    if optim.startswith("paged_") and not machine.cuda():
        found.append(f"{where}: {optim} pages optimizer states between GPU and CPU memory, and needs a CUDA GPU; this "
                     "machine has none. Fix: optim: adamw_torch here")
    return found


def attention_problems(stage, pipeline, training: bool = True) -> list[str]:
    """What the pipeline's attn_implementation needs here, for a stage that loads a model (to train or to score)."""
    attention = machine.attention_problem(pipeline.attn_implementation, training=training)
    found = [attention]
    autocast = training and (stage.trainer.get("bf16") or stage.trainer.get("fp16"))
    if not attention and pipeline.attn_implementation in machine.FLASH and pipeline.dtype == "fp32" and not autocast:
        without = " and no bf16/fp16 autocast" if training else ""
        found.append(f"attn_implementation: {pipeline.attn_implementation} computes in bf16 or fp16 only, and "
                     f"stage {stage.name} runs in fp32 (dtype: fp32{without}): flash-attn would stop at the first "
                     "forward pass. Fix: dtype: bf16 (or auto), or attn_implementation: sdpa")
    return [p for p in found if p]


def problems(stage, pipeline, launched: bool = False) -> list[str]:
    """What this machine cannot do of what a training stage asks, each with its fix; empty when it can run.
    `launched`: whether the stage runs under `accelerate launch` (posttrain.launch.launched says)."""
    where = f"stages.{stage.name}"
    found = attention_problems(stage, pipeline)
    if getattr(stage, "finetuning", None) == "qlora":
        found.append(machine.qlora_problem(f"{where}.finetuning"))
    found += _precision(stage, pipeline, where)
    if stage.trainer.get("use_liger_kernel"):
        found.append(machine.needs_cuda_and("liger_kernel", f"{where}.trainer.use_liger_kernel", "Liger's kernels "
                                            "are Triton code for CUDA GPUs", f"Fix: {machine.INSTALL} on a CUDA "
                                            "machine, or drop use_liger_kernel here"))
    if stage.trainer.get("ddp_backend") == "nccl" and not machine.cuda():
        found.append(f"{where}.trainer.ddp_backend: nccl needs CUDA GPUs; this machine has none. Fix: leave "
                     "ddp_backend out (posttrain launches CPU processes with gloo; on GPUs accelerate picks nccl)")
    found += _optimizer(stage.trainer.get("optim"), f"{where}.trainer.optim")
    found += _one_process_per_gpu(stage, pipeline, where, launched)
    return [p for p in found if p]


def buildable(stage):
    """The stage without what its trainer config refuses to build here, so `validate` still checks the rest:
    TrainingArguments raises on tf32 without an Ampere GPU and on nccl without CUDA, which `problems` has already
    said with the fix."""
    refused = {"tf32"} if stage.trainer.get("tf32") and machine.lacks(machine.capability(), (8, 0)) else set()
    if stage.trainer.get("ddp_backend") == "nccl" and not machine.cuda():
        refused.add("ddp_backend")
    if refused:
        return stage.model_copy(update={"trainer": {k: v for k, v in stage.trainer.items() if k not in refused}})
    return stage


def require(found: list[str]) -> None:
    """Stop a stage before it loads anything when this machine cannot run what it asks (`found`: its problems)."""
    if found:
        raise ConfigError("\n".join(found))


def notes(stage, pipeline, *, cpu_bf16_is_fast: bool = False) -> list[str]:
    """What `validate` should tell about a training stage's GPU options that is not a problem. With
    `cpu_bf16_is_fast` (a stage measured faster in bf16 on this CPU), bf16 on the CPU is not noted as slow."""
    where, trainer, found = f"stages.{stage.name}", stage.trainer, []
    if not machine.cuda():
        slow = ("fp16",) if cpu_bf16_is_fast else ("bf16", "fp16")
        asked = [label for label, on in (("dtype", pipeline.dtype in slow),
                                         (f"{where}.trainer.bf16", "bf16" in slow and trainer.get("bf16") is True),
                                         (f"{where}.trainer.fp16", trainer.get("fp16") is True)) if on]
        found += [f"{label}: no CUDA GPU here, so half precision trains on the CPU (posttrain sets use_cpu: true): "
                  "fine for checking a GPU config, not for speed" for label in asked]
    return found
