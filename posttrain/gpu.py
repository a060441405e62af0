"""What the GPU-only options need of the machine, checked in one place before anything loads.

QLoRA, bf16 and tf32, flash attention, Liger kernels and vLLM rollouts each need a CUDA GPU (some a recent
one) and a package a CPU install leaves out. Left to the libraries, the first sign is an ImportError or a CUDA
error from deep inside transformers, TRL or vLLM, after the data and model have loaded. `problems` names the
option, what this machine lacks and the fix; `posttrain validate` lists them all, and every training stage
calls `require` before it reads anything. The GRPO rollout rules (vLLM's modes and memory share, the
generation round) are in posttrain/rollouts.py, which this module asks for a GRPO stage.
"""

from __future__ import annotations

import importlib.util
import os

import torch

from posttrain.errors import ConfigError

INSTALL = "pip install 'posttrain[gpu]'"
TRAINING = ("sft", "grpo", "reward_model", "process_reward")
LOADS_MODEL = (*TRAINING, "eval")  # stages that load a model with the pipeline's attn_implementation
# attention -> (module to import, compute capability it needs, how to install it)
FLASH = {
    "flash_attention_2": ("flash_attn", (8, 0), "pip install flash-attn --no-build-isolation"),
    "flash_attention_3": ("flash_attn_interface", (9, 0),
                          "build FlashAttention-3 from the flash-attention repository's hopper/ directory"),
    "flash_attention_4": ("flash_attn.cute", (9, 0), "pip install flash-attn-4"),
}
ATTENTION = ("eager", "sdpa", *FLASH, "flex_attention")


# The machine, as small functions so tests can stand in a GPU machine for this one.
def cuda() -> bool:
    return torch.cuda.is_available()


def capability() -> tuple[int, int] | None:
    return tuple(torch.cuda.get_device_capability()) if cuda() else None


def device_name() -> str:
    return torch.cuda.get_device_name() if cuda() else "none"


def device_count() -> int:
    return torch.cuda.device_count() if cuda() else 0


def bf16_native() -> bool:
    """A GPU that computes in bf16 (Ampere, compute capability 8.0, or newer). torch's is_bf16_supported() says
    yes on older GPUs too, where bf16 is emulated at a fraction of fp16's speed."""
    cap = capability()
    return cap is not None and cap >= (8, 0)


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a dotted name whose parent is missing or fails to import
        return False


def _has(cap: tuple[int, int] | None, need: tuple[int, int]) -> str | None:
    """None when the GPU is recent enough, else what this machine has instead."""
    if cap is None:
        return "this machine has no CUDA GPU"
    if cap < need:
        return f"this GPU ({device_name()}) is compute capability {cap[0]}.{cap[1]}"
    return None


def qlora_problem(where: str = "finetuning") -> str | None:
    if not cuda():
        return f"{where}: qlora needs a CUDA GPU; none is present. Use `lora` on this machine."
    if not installed("bitsandbytes"):
        return f"{where}: qlora needs bitsandbytes, which is not installed: {INSTALL}, or use `lora` on this machine."
    return None


def require_qlora() -> None:
    problem = qlora_problem()
    if problem:
        raise ConfigError(problem)


def attention_problem(implementation: str | None, training: bool = True) -> str | None:
    """sdpa and eager run anywhere; flash attention needs its package and a recent CUDA GPU; FlexAttention needs
    CUDA; a Hub kernel (org/name) needs the kernels package."""
    if implementation in (None, "eager", "sdpa"):
        return None
    if implementation == "flex_attention":
        if not cuda():  # no backward pass on the CPU; generation there goes through an inductor build that fails
            return ("attn_implementation: flex_attention needs a CUDA GPU (torch's FlexAttention has no backward "
                    f"pass on the CPU{', to train' if training else ' and generates there only through a C++ build'})"
                    ". Fix: attn_implementation: sdpa on this machine")
        return None
    if "/" in implementation and not implementation.startswith("paged|"):
        if installed("kernels"):
            return None
        return (f"attn_implementation: {implementation} is a kernel from the Hugging Face Hub, which needs the "
                "kernels package (not installed) and the Hub or its cache. Fix: pip install kernels, or "
                "attn_implementation: sdpa")
    if implementation not in FLASH:
        return (f"attn_implementation: expected one of {', '.join(ATTENTION)} or a Hub kernel (org/name), got "
                f"{implementation!r}")
    module, need, install = FLASH[implementation]
    lacking = _has(capability(), need)
    missing = [lacking] if lacking else []
    if not installed(module):
        missing.append(f"the {module} package is not installed")
    if not missing:
        return None
    need_text = f"{need[0]}.{need[1]}"
    fix = f"{install}, or" if not lacking else f"on a GPU of compute capability {need_text}+, {install}; on this one"
    return (f"attn_implementation: {implementation} needs a CUDA GPU of compute capability {need_text} or newer and "
            f"the {module} package; {' and '.join(missing)}. Fix: {fix} set attn_implementation: sdpa (sdpa and "
            "eager run on any machine)")


def _precision(stage, pipeline, where: str) -> list[str]:
    trainer, found = stage.trainer, []
    cap = capability()
    if trainer.get("tf32"):
        lacking = _has(cap, (8, 0))
        if lacking:
            found.append(f"{where}.trainer.tf32: TF32 needs an NVIDIA GPU of compute capability 8.0 or newer "
                         f"(Ampere or later); {lacking}. Fix: drop tf32 on this machine")
    bf16 = [label for label, asked in (("dtype", pipeline.dtype == "bf16"),
                                       (f"{where}.trainer.bf16", trainer.get("bf16") is True)) if asked]
    if cap is not None and cap < (8, 0):  # without CUDA, bf16 trains on the CPU (see notes)
        found += [f"{label}: bf16 needs a GPU of compute capability 8.0 or newer; this GPU ({device_name()}) is "
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


def needs_cuda_and(module: str, option: str, why: str, fix: str) -> str | None:
    missing = [m for m, ok in (("a CUDA GPU", cuda()), (f"the {module} package", installed(module))) if not ok]
    if not missing:
        return None
    return (f"{option}: needs a CUDA GPU and the {module} package ({why}); missing here: {' and '.join(missing)}. "
            f"{fix}")


def _one_process_per_gpu(stage, pipeline, where: str) -> list[str]:
    """accelerate gives each process one GPU by its local rank: more processes than GPUs share one (NCCL stops with
    'Duplicate GPU detected'), and one unlaunched process with several GPUs visible gets nn.DataParallel, which
    splits each batch over them (TRL's SFT trainer refuses it)."""
    from posttrain.launch import launched

    launch, gpus = getattr(pipeline, "launch", None), device_count()
    if launch is None or not cuda() or os.environ.get("WORLD_SIZE"):
        return []
    nproc = getattr(launch, "nproc", launch.processes)
    if launched(stage, pipeline) and nproc > gpus:
        return [f"launch.nproc: {nproc} processes on this node, but {gpus} CUDA GPU{'s are' if gpus > 1 else ' is'} "
                f"visible; two processes would share a GPU. Fix: --nproc {gpus} (or make more GPUs visible with "
                "CUDA_VISIBLE_DEVICES)"]
    if not launched(stage, pipeline) and gpus > 1:
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
    if needs and not installed(needs[0]):
        found.append(f"{where}: {optim} comes from the {needs[0]} package, which is not installed. Fix: pip install "
                     f"{needs[1]}, or optim: adamw_torch (the default)")
    if optim.startswith("paged_") and not cuda():
        found.append(f"{where}: {optim} pages optimizer states between GPU and CPU memory, and needs a CUDA GPU; this "
                     "machine has none. Fix: optim: adamw_torch here")
    return found


def problems(stage, pipeline) -> list[str]:
    """What this machine cannot do of what `stage` asks, each with its fix; empty when it can run."""
    attention = (attention_problem(pipeline.attn_implementation, training=stage.type in TRAINING)
                 if stage.type in LOADS_MODEL else None)
    found = [attention]
    autocast = stage.type in TRAINING and (stage.trainer.get("bf16") or stage.trainer.get("fp16"))
    if (stage.type in LOADS_MODEL and not attention and pipeline.attn_implementation in FLASH
            and pipeline.dtype == "fp32" and not autocast):
        without = " and no bf16/fp16 autocast" if stage.type in TRAINING else ""
        found.append(f"attn_implementation: {pipeline.attn_implementation} computes in bf16 or fp16 only, and "
                     f"stage {stage.name} runs in fp32 (dtype: fp32{without}): flash-attn would stop at the first "
                     "forward pass. Fix: dtype: bf16 (or auto), or attn_implementation: sdpa")
    if stage.type == "eval" and getattr(stage, "backend", "auto") == "vllm":
        found.append(needs_cuda_and("vllm", f"stages.{stage.name}.backend: vllm", "vLLM generates on the GPU",
                                     "Fix: backend: hf (or auto, which takes vLLM where it can run)"))
    if stage.type in TRAINING:
        where = f"stages.{stage.name}"
        if getattr(stage, "finetuning", None) == "qlora":
            found.append(qlora_problem(f"{where}.finetuning"))
        found += _precision(stage, pipeline, where)
        if stage.trainer.get("use_liger_kernel"):
            found.append(needs_cuda_and("liger_kernel", f"{where}.trainer.use_liger_kernel", "Liger's kernels are "
                                         "Triton code for CUDA GPUs", f"Fix: {INSTALL} on a CUDA machine, or drop "
                                         "use_liger_kernel here"))
        if stage.trainer.get("ddp_backend") == "nccl" and not cuda():
            found.append(f"{where}.trainer.ddp_backend: nccl needs CUDA GPUs; this machine has none. Fix: leave "
                         "ddp_backend out (posttrain launches CPU processes with gloo; on GPUs accelerate picks nccl)")
        found += _optimizer(stage.trainer.get("optim"), f"{where}.trainer.optim")
        found += _one_process_per_gpu(stage, pipeline, where)
        if stage.type == "grpo":
            from posttrain import rollouts

            found += rollouts.vllm_problems(stage, pipeline, f"{where}.trainer")
    return [p for p in found if p]


def buildable(stage):
    """The stage without what its trainer config refuses to build here, so `validate` still checks the rest:
    TrainingArguments raises on tf32 without an Ampere GPU and on nccl without CUDA, which `problems` has already
    said with the fix."""
    refused = {"tf32"} if stage.trainer.get("tf32") and _has(capability(), (8, 0)) else set()
    if stage.trainer.get("ddp_backend") == "nccl" and not cuda():
        refused.add("ddp_backend")
    if refused:
        return stage.model_copy(update={"trainer": {k: v for k, v in stage.trainer.items() if k not in refused}})
    return stage


def require(stage, pipeline) -> None:
    """Stop a stage before it loads anything when this machine cannot run what it asks."""
    found = problems(stage, pipeline)
    if found:
        raise ConfigError("\n".join(found))


def notes(stage, pipeline) -> list[str]:
    """What `validate` should tell about a stage's GPU options that is not a problem."""
    if stage.type not in TRAINING:
        return []
    where, trainer, found = f"stages.{stage.name}", stage.trainer, []
    if not cuda():
        asked = [label for label, on in (("dtype", pipeline.dtype in ("bf16", "fp16")),
                                         (f"{where}.trainer.bf16", trainer.get("bf16") is True),
                                         (f"{where}.trainer.fp16", trainer.get("fp16") is True)) if on]
        found += [f"{label}: no CUDA GPU here, so half precision trains on the CPU (posttrain sets use_cpu: true): "
                  "fine for checking a GPU config, not for speed" for label in asked]
    if stage.type == "grpo":
        from posttrain import rollouts

        found += rollouts.vllm_notes(stage, pipeline, f"{where}.trainer")
    return found
