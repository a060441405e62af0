"""Check that an export is the model it was made from: its logits against the unmerged reference's.

A merge can go wrong quietly (an adapter left out, a chain merged out of
order, a tensor written wrong, fp16 overflowing a bf16-trained model), and a
served model gives no error, just worse answers. The reference is the base
with every adapter but the last merged and the last applied by peft, unmerged,
in fp32: the model as training left it. Both run on chat-templated prompts; the
largest |logit difference| must stay within what the export's dtype can
represent, a fraction of the logits' own scale (TOLERANCE, docs/export.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from posttrain.data.sources import Source
from posttrain.errors import PosttrainError
from posttrain.evaluation.examples import load_examples
from posttrain.models.lineage import lineage, load
from posttrain.models.loading import load_tokenizer

# Largest |logit difference| allowed, as a fraction of the reference's largest |logit|: rounding errors are
# relative, so the scale is the logits' own. Measured (docs/export.md): Qwen2-shaped models of 2-24 layers with a
# random r=16 LoRA and a trained 4-layer SFT+GRPO LoRA chain differ by at most 2.7e-6 in fp32 (summation order
# only), 0.037 in bf16 (4.8 eps of 2^-7) and 0.0144 in fp16 (15 eps of 2^-10). The tolerances leave 4-40x room for
# deeper models; a missing or wrong weight moves the logits by a large part of their scale.
TOLERANCE = {"fp32": 1e-4, "bf16": 0.25, "fp16": 0.0625}
DEFAULT_PROMPTS = [
    [{"role": "user", "content": "Hello! What can you help me with?"}],
    [{"role": "system", "content": "You are a careful assistant."},
     {"role": "user", "content": "Summarise the result of a randomised trial in one sentence."}],
    [{"role": "user", "content": "What is 12 times 7?"}, {"role": "assistant", "content": "84."},
     {"role": "user", "content": "And divided by 4?"}],
]
MAX_PROMPT_TOKENS = 512


class VerifyError(PosttrainError):
    """The export's logits are further from the reference's than its dtype explains; `posttrain export` exits 3."""

    exit_code = 3

    def __init__(self, message: str, result: "VerifyResult"):
        super().__init__(message)
        self.result = result


@dataclass
class VerifyResult:
    max_abs_diff: float
    tolerance: float
    scale: float  # the reference's largest |logit|
    dtype: str
    prompts: int
    positions: int
    top1_agreement: float
    adapter_effect: float | None = None  # the largest |logit| change the last adapter makes to its base

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def summary(self) -> str:
        text = (f"largest |logit difference| {self.max_abs_diff:.3g}, tolerance {self.tolerance:.3g} ({self.dtype}: "
                f"{TOLERANCE[self.dtype]:g} x the largest |logit| {self.scale:.3g}) over {self.positions} positions "
                f"of {self.prompts} prompts; top-1 token agrees at {self.top1_agreement:.1%}")
        if self.adapter_effect is not None:
            text += f"; the adapter moves the logits by up to {self.adapter_effect:.3g}"
            if self.adapter_effect <= self.tolerance:
                text += (f" (no more than the {self.dtype} tolerance: this check cannot tell a merged adapter from "
                         "a missing one; verify an fp32 export to check the merge itself)")
        return text

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def read_prompts(path: str | None) -> list[list[dict]]:
    """Verification prompts: the built-in ones, a .txt file (one user message a line) or any prompt data file."""
    if path is None:
        return DEFAULT_PROMPTS
    file = Path(path)
    if not file.is_file():
        raise PosttrainError(f"{path}: no such prompts file")
    if file.suffix.lower() == ".txt":
        lines = [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not lines:
            raise PosttrainError(f"{path}: no prompts (expected one user message a line)")
        return [[{"role": "user", "content": line}] for line in lines[:8]]

    return [example.prompt for example in load_examples([Source(str(file))], limit=8)[0]]


def verify(exported_dir: str | Path, model: str, adapter: str | None = None, *, prompts: str | None = None,
           trust_remote_code: bool = False) -> VerifyResult:
    """Compare the export's logits with the unmerged reference's; VerifyError when beyond the dtype's tolerance."""
    if not (Path(exported_dir) / "config.json").is_file():
        raise PosttrainError(f"{exported_dir}: no config.json; not an exported model directory")
    result = run_verify(Path(exported_dir), lineage(model, adapter), read_prompts(prompts),
                        trust_remote_code=trust_remote_code)
    if not result.passed:
        raise VerifyError(f"verify failed: {result.summary()}", result)
    return result


def run_verify(exported: Path, found, prompts: list[list[dict]], *, trust_remote_code: bool = False) -> VerifyResult:
    """`verify` on a lineage (posttrain.export.Lineage) already checked, with its prompts already read."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(str(exported), trust_remote_code=trust_remote_code)
    inputs = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    ids = [tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][:, :MAX_PROMPT_TOKENS]
           for text in inputs]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    reference = load(found, "fp32", merge_last=False, trust_remote_code=trust_remote_code).to(device)
    expected = _logits(reference, ids, device)
    effect = None
    if found.adapters:
        with reference.disable_adapter():
            effect = max((e - b).abs().max().item() for e, b in zip(expected, _logits(reference, ids, device)))
    del reference
    exported_model = AutoModelForCausalLM.from_pretrained(str(exported), dtype="auto",
                                                          trust_remote_code=trust_remote_code).to(device).eval()
    dtype = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(exported_model.dtype, "fp32")
    got = _logits(exported_model, ids, device)
    scale = max(e.abs().max().item() for e in expected)
    diffs = [(g - e).abs().max().item() for g, e in zip(got, expected)]
    # NaN compares false with everything: an overflowing fp16 export must count as the largest difference
    worst = float("inf") if any(not torch.isfinite(g).all() for g in got) else max(diffs)
    agree = sum((g.argmax(-1) == e.argmax(-1)).sum().item() for g, e in zip(got, expected))
    positions = sum(e.shape[0] for e in expected)
    return VerifyResult(worst, TOLERANCE[dtype] * scale, scale, dtype, len(prompts), positions, agree / positions,
                        effect)


def _logits(model, ids, device) -> list:
    import torch

    with torch.inference_mode():
        return [model(input_ids=i.to(device)).logits[0].float().cpu() for i in ids]
