"""bf16 autocast for SFT on a CPU that has bf16 arithmetic, with the attention kept in fp32.

On a CPU with AVX512_BF16 or AMX, autocast to bf16 over the fp32 weights halves the time of the matmuls. torch's
CPU sdpa, though, is slower in bf16 than in fp32, its backward about three times (32 against 10 ms of a step in a
profile of bench/sft_throughput.py), which took back most of the gain. So under that autocast the attention runs in
fp32: transformers' sdpa, registered under another name, with q, k and v cast up and the output cast back. A CPU
without bf16 arithmetic emulates it, slower than fp32, and keeps fp32. docs/benchmarks.md has the measurements.
"""

from __future__ import annotations

import torch

from posttrain import machine

FP32_SDPA = "sdpa_fp32"


def autocast_by_default(pipeline) -> bool:
    """Whether an SFT stage autocasts to bf16 unless its trainer block says otherwise: the pipeline leaves the dtype
    to posttrain, there is no CUDA GPU, and the CPU has bf16 arithmetic."""
    return pipeline.dtype == "auto" and not machine.cuda() and machine.cpu_bf16_native()


def sdpa_in_fp32(module, query, key, value, attention_mask, **kwargs):
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    with torch.autocast("cpu", enabled=False):
        out, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask,
                                              **kwargs)
    return out.to(query.dtype), weights


def attention_in_fp32(model) -> None:
    """Run the model's sdpa attention in fp32 from now on (its saved config still says sdpa)."""
    from transformers import AttentionInterface, AttentionMaskInterface
    from transformers.masking_utils import sdpa_mask

    AttentionInterface.register(FP32_SDPA, sdpa_in_fp32)
    AttentionMaskInterface.register(FP32_SDPA, sdpa_mask)  # the masks sdpa gets, for calls without a 4-D one
    model.set_attn_implementation(FP32_SDPA)
