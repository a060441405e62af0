"""A process reward model's scores: P(correct) per step, and one number per completion for GRPO.

This module is the format a process reward model is saved in, which the
process_reward stage writes and the scorer reads: the marker (MARKER) with the
step separator the model was trained with, `encode_steps`, the two-label token
classifier and its metrics. Each step is scored at exactly the token it was
trained to predict at. A completion is split into steps by `separator` (often the same
text), empty steps are dropped, and the step probabilities are aggregated:

- `min`: the weakest step decides (a solution is as good as its worst step),
- `mean`: the share of steps that look right, a softer signal,
- `product`: the chance that every step is right, if steps were independent.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from posttrain.errors import PosttrainError
from posttrain.models.loading import is_adapter_dir, load_model, load_tokenizer, no_grad

MARKER = "posttrain_process_reward"  # the key in config.json that says how the model was trained
MARKER_FILE = "process_reward.json"  # the same, beside a LoRA adapter (which has no config.json)
LABELS = {0: "wrong", 1: "correct"}
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


def encode_steps(tokenizer, prompt: list[dict], steps: list[str], separator: str,
                 labels: list[bool] | None = None, max_length: int | None = None) -> dict:
    """input_ids, the position of each step's separator token, and labels (-100 except at those positions).

    Steps and separators are tokenized one piece at a time, so a step's tokens never merge with the next
    step's and its separator always ends in the same token, whatever the step's text. Steps whose separator
    falls past `max_length` are cut off (their positions are not returned).
    """
    text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    separator_ids = tokenizer(separator, add_special_tokens=False)["input_ids"]
    if not separator_ids:
        raise PosttrainError(f"step_separator {separator!r} tokenizes to nothing")
    positions = []
    for step in steps:
        ids = ids + tokenizer(step, add_special_tokens=False)["input_ids"] + separator_ids
        positions.append(len(ids) - 1)
    if max_length is not None and len(ids) > max_length:
        ids = ids[:max_length]
        positions = [p for p in positions if p < max_length]
    out = {"input_ids": ids, "positions": positions}
    if labels is not None:
        token_labels = [-100] * len(ids)
        for position, label in zip(positions, labels):
            token_labels[position] = int(bool(label))
        out["labels"] = token_labels
    return out


def load_token_classifier(path: str, dtype: str = "auto", trust_remote_code: bool = False,
                          attn_implementation: str | None = None):
    """A two-class token classifier from a causal LM (or a LoRA stage's output, merged); the head is new."""
    import transformers

    extra = {"num_labels": 2, "id2label": LABELS, "label2id": {v: k for k, v in LABELS.items()}}
    if is_adapter_dir(path):
        causal = load_model(path, dtype=dtype, trust_remote_code=trust_remote_code,
                            attn_implementation=attn_implementation)
        config = causal.config
        for key, value in extra.items():
            setattr(config, key, value)
        model = transformers.AutoModelForTokenClassification.from_config(config, dtype=causal.dtype,
                                                                         trust_remote_code=trust_remote_code)
        getattr(model, model.base_model_prefix).load_state_dict(
            getattr(causal, causal.base_model_prefix).state_dict())
        return model
    try:
        return load_model(path, dtype=dtype, trust_remote_code=trust_remote_code,
                          attn_implementation=attn_implementation, task="token_classification", **extra)
    except ValueError as e:
        raise PosttrainError(f"{path}: cannot load it as a token classifier: {e}") from None


def first_error(flags) -> int | None:
    """The index of the first false flag, or None."""
    return next((i for i, ok in enumerate(flags) if not ok), None)


def step_metrics(probabilities: list[list[float]], labels: list[list[bool]]) -> dict:
    """Step accuracy and first-error F1 (see the module docstring) of per-solution step probabilities."""
    right = total = 0
    hits = {True: 0, False: 0}  # keyed by "the solution has a wrong step"
    counts = {True: 0, False: 0}
    for probs, truth in zip(probabilities, labels):
        predicted = [p >= 0.5 for p in probs]
        right += sum(p == t for p, t in zip(predicted, truth))
        total += len(truth)
        wrong = first_error(truth) is not None
        counts[wrong] += 1
        hits[wrong] += first_error(predicted) == first_error(truth)
    acc_wrong = hits[True] / counts[True] if counts[True] else None
    acc_correct = hits[False] / counts[False] if counts[False] else None
    if acc_wrong is None or acc_correct is None:
        f1 = acc_wrong if acc_correct is None else acc_correct
    else:
        f1 = 2 * acc_wrong * acc_correct / (acc_wrong + acc_correct) if acc_wrong + acc_correct else 0.0
    out = {"step_accuracy": right / total if total else 0.0, "first_error_f1": f1 or 0.0}
    if acc_wrong is not None:
        out["first_error_acc_wrong"] = acc_wrong
    if acc_correct is not None:
        out["first_error_acc_correct"] = acc_correct
    return out


def _marker(root: Path) -> dict:
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
        import torch
        import transformers

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

    @no_grad
    def step_probabilities_many(self, items: list[tuple]) -> list[list[float]]:
        """P(correct) per step for each (prompt, steps) pair, `batch_size` solutions per forward pass."""
        import torch

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
