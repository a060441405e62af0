"""A Bradley-Terry reward model's scores: one number per (prompt, response).

The text a response is scored on is built here, once, for training and for
scoring alike: the prompt messages plus the response as assistant turns,
rendered with the tokenizer's chat template (TRL's conversational reward
format, explicit prompt). A score in `posttrain score` or in a GRPO stage is
therefore the score the reward model was trained to give.
"""

from __future__ import annotations

import json
from pathlib import Path

from posttrain.errors import PosttrainError
from posttrain.models.loading import load_tokenizer, no_grad


def encode(tokenizer, prompt: list[dict], response: list[dict] | str) -> list[int]:
    """The token ids of prompt + response, chat template applied (as the reward_model stage trains on)."""
    if isinstance(response, str):
        response = [{"role": "assistant", "content": response}]
    out = tokenizer.apply_chat_template(list(prompt) + list(response), tokenize=True, return_dict=True)
    return list(out["input_ids"])


def load_reward_model(path: str, dtype=None, template: str | None = None):
    """The sequence classifier and tokenizer at `path` (a merged LoRA adapter too), pad token set."""
    import transformers

    root = Path(path)
    kwargs = {"num_labels": 1, **({"dtype": dtype} if dtype is not None else {})}
    auto = transformers.AutoModelForSequenceClassification
    try:
        if (root / "adapter_config.json").exists():
            from peft import PeftModel

            base = json.loads((root / "adapter_config.json").read_text()).get("base_model_name_or_path")
            model = PeftModel.from_pretrained(auto.from_pretrained(base, **kwargs), str(root)).merge_and_unload()
        else:
            model = auto.from_pretrained(str(root), **kwargs)
    except OSError as e:
        raise PosttrainError(f"{path}: cannot load the reward model: {e}") from None
    tokenizer = load_tokenizer(str(root), template=template)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    return model, tokenizer


class BradleyTerryScorer:
    """Scores responses with a sequence-classification reward model, in batches."""

    kind = "bradley_terry"

    def __init__(self, path: str, *, batch_size: int = 8, template: str | None = None, device: str | None = None):
        import torch

        self.path = path
        self.model, self.tokenizer = load_reward_model(path, template=template)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device)
        self.batch_size = batch_size

    @no_grad
    def score_ids(self, rows: list[list[int]]) -> list[float]:
        """One score per token-id row; rows are right-padded as TRL's reward collator pads them."""
        import torch

        scores: list[float] = []
        pad = self.model.config.pad_token_id
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start:start + self.batch_size]
            width = max(len(r) for r in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, row in enumerate(batch):
                ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
                mask[i, :len(row)] = 1
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            scores += logits[:, 0].float().cpu().tolist()
        return scores

    def score_many(self, items: list[tuple[list[dict], list[dict] | str]]) -> list[float]:
        """Scores for (prompt messages, response) items."""
        return self.score_ids([encode(self.tokenizer, prompt, response) for prompt, response in items])

    def score(self, prompt_messages: list[dict], completion) -> float:
        return self.score_many([(prompt_messages, completion)])[0]
