"""A process reward model's scores: P(correct) per step, and one number per completion for GRPO.

The inputs are built by the process_reward stage's own `encode_steps`, with
the step separator the model was trained with (read from the marker the
stage saves), so each step is scored at exactly the token it was trained to
predict at. A completion is split into steps by `separator` (often the same
text), empty steps are dropped, and the step probabilities are aggregated:

- `min`: the weakest step decides (a solution is as good as its worst step),
- `mean`: the share of steps that look right, a softer signal,
- `product`: the chance that every step is right, if steps were independent.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from posttrain.errors import PosttrainError

AGGREGATES = {
    "min": min,
    "mean": lambda ps: sum(ps) / len(ps),
    "product": math.prod,
}


def aggregate_scores(probabilities: list[float], aggregate: str = "min") -> float:
    """One score from step probabilities; no steps scores 0.0 (an empty answer earns nothing)."""
    if aggregate not in AGGREGATES:
        raise PosttrainError(f"aggregate: expected one of {', '.join(AGGREGATES)}, got {aggregate!r}")
    return float(AGGREGATES[aggregate](probabilities)) if probabilities else 0.0


def split_steps(completion: str, separator: str = "\n") -> list[str]:
    """The completion's steps: split at `separator`, stripped, empty ones dropped."""
    if not separator:
        raise PosttrainError("separator: expected a non-empty string to split steps at")
    return [step.strip() for step in completion.split(separator) if step.strip()]


def _marker(root: Path) -> dict:
    from posttrain.stages.process_reward import MARKER, MARKER_FILE

    for name in ("config.json", MARKER_FILE):
        file = root / name
        if file.exists():
            found = json.loads(file.read_text(encoding="utf-8")).get(MARKER)
            if found:
                return found
    raise PosttrainError(f"{root}: no {MARKER} entry in config.json or {MARKER_FILE}; expected the model folder of "
                         "a process_reward stage")


class ProcessScorer:
    """Scores solutions step by step with a token-classification process reward model, in batches."""

    kind = "process"

    def __init__(self, path: str, device: str | None = None, *, batch_size: int = 16, template: str | None = None):
        import transformers

        from posttrain.models.loading import load_tokenizer
        from posttrain.stages.process_reward import load_token_classifier

        root = Path(path)
        self.path = str(path)
        self.batch_size = batch_size
        marker = _marker(root)
        self.step_separator = marker["step_separator"]
        if (root / "adapter_config.json").exists():
            from peft import PeftModel

            base = json.loads((root / "adapter_config.json").read_text()).get("base_model_name_or_path")
            if not base:
                raise PosttrainError(f"{path}/adapter_config.json: base_model_name_or_path: missing")
            model = PeftModel.from_pretrained(load_token_classifier(base, "fp32"), str(root)).merge_and_unload()
        else:
            try:
                model = transformers.AutoModelForTokenClassification.from_pretrained(str(root))
            except (OSError, ValueError) as e:
                raise PosttrainError(f"{path}: cannot load the process reward model: {e}") from None
        self.tokenizer = load_tokenizer(str(root), template=template)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = model.to(self.device).eval()

    @staticmethod
    def _messages(prompt) -> list[dict]:
        return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)

    @torch.no_grad()
    def step_probabilities_many(self, items: list[tuple]) -> list[list[float]]:
        """P(correct) per step for each (prompt, steps) pair, `batch_size` solutions per forward pass."""
        from posttrain.stages.process_reward import encode_steps

        encoded = [encode_steps(self.tokenizer, self._messages(prompt), list(steps), self.step_separator)
                   if steps else None for prompt, steps in items]
        out: list[list[float]] = [[] for _ in items]
        todo = [i for i, e in enumerate(encoded) if e is not None]
        pad = self.tokenizer.pad_token_id or 0
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start:start + self.batch_size]
            width = max(len(encoded[i]["input_ids"]) for i in batch)
            # right padding: a causal model's positions before the padding are unaffected by it
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, i in enumerate(batch):
                n = len(encoded[i]["input_ids"])
                ids[row, :n] = torch.tensor(encoded[i]["input_ids"])
                mask[row, :n] = 1
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            probs = torch.softmax(logits.float(), dim=-1)[..., 1].cpu()
            for row, i in enumerate(batch):
                out[i] = [float(probs[row, p]) for p in encoded[i]["positions"]]
        return out

    def step_probabilities(self, prompt, steps: list[str]) -> list[float]:
        """P(correct) at each step's separator token; `prompt` is text or messages."""
        return self.step_probabilities_many([(prompt, steps)])[0]

    def score_many(self, items: list[tuple], separator: str = "\n", aggregate: str = "min") -> list[float]:
        """`score` for many (prompt, completion) pairs, batched."""
        aggregate_scores([], aggregate)  # an unknown aggregate fails before the model runs
        probabilities = self.step_probabilities_many([(p, split_steps(c, separator)) for p, c in items])
        return [aggregate_scores(ps, aggregate) for ps in probabilities]

    def score(self, prompt_messages, completion_text: str, separator: str = "\n", aggregate: str = "min") -> float:
        """One score for a completion: split into steps at `separator`, step probabilities aggregated
        (min, mean or product); a completion with no steps scores 0.0."""
        return self.score_many([(prompt_messages, completion_text)], separator, aggregate)[0]
