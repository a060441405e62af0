"""What the GPU-only options need of the machine, checked in one place before anything loads.

QLoRA, bf16 and tf32, flash attention, Liger kernels and vLLM rollouts each need a CUDA GPU (some a recent
one) and a package a CPU install leaves out. Left to the libraries, the first sign is an ImportError or a CUDA
error from deep inside transformers, TRL or vLLM, after the data and model have loaded. This module is the
machine (small functions, so tests can stand in a GPU machine) and one check per GPU-only option, each naming
the option, what this machine lacks and the fix. What a training stage asks of them is put together in
posttrain/training/requirements.py; an eval or GRPO stage adds its own in its module's `problems`.
"""

from __future__ import annotations

import importlib.util

from posttrain.errors import ConfigError

INSTALL = "pip install 'posttrain[gpu]'"
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
    import torch  # here: `posttrain --help` and the config types need no torch

    return torch.cuda.is_available()


def capability() -> tuple[int, int] | None:
    import torch

    return tuple(torch.cuda.get_device_capability()) if cuda() else None


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if cuda() else "none"


def device_count() -> int:
    import torch

    return torch.cuda.device_count() if cuda() else 0


def bf16_native() -> bool:
    """A GPU that computes in bf16 (Ampere, compute capability 8.0, or newer). torch's is_bf16_supported() says
    yes on older GPUs too, where bf16 is emulated at a fraction of fp16's speed."""
    cap = capability()
    return cap is not None and cap >= (8, 0)


def cpu_bf16_kind() -> str | None:
    """The CPU's own bf16 arithmetic, by torch's name for it (x86: amx_bf16 or avx512_bf16; Arm: sve_bf16 or
    bf16), or None where bf16 is emulated. torch's mkldnn check says yes on any AVX-512 CPU, so it is not used."""
    import torch

    capabilities = getattr(torch.cpu, "get_capabilities", dict)()  # torch >= 2.9
    return next((name for name in ("amx_bf16", "avx512_bf16", "sve_bf16", "bf16") if capabilities.get(name)), None)


def cpu_bf16_native() -> bool:
    """A CPU with bf16 arithmetic of its own; elsewhere bf16 is emulated and slower than fp32."""
    return cpu_bf16_kind() is not None


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a dotted name whose parent is missing or fails to import
        return False


def lacks(cap: tuple[int, int] | None, need: tuple[int, int]) -> str | None:
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
    lacking = lacks(capability(), need)
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


def needs_cuda_and(module: str, option: str, why: str, fix: str) -> str | None:
    missing = [m for m, ok in (("a CUDA GPU", cuda()), (f"the {module} package", installed(module))) if not ok]
    if not missing:
        return None
    return (f"{option}: needs a CUDA GPU and the {module} package ({why}); missing here: {' and '.join(missing)}. "
            f"{fix}")


