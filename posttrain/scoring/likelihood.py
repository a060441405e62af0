"""How likely a causal LM finds a response to a prompt: the log-probability of the response's tokens.

A policy trained with DPO is an implicit reward model: it ranks the answers
of a pair by their likelihood. This is that reading, on the text the DPO
stage trains on (TRL's rendering: the prompt with the generation prompt, then
prompt plus response through the chat template, the response starting where
the two token rows part), so `preference_accuracy` in an eval stage measures
what the stage optimised.
"""

from __future__ import annotations

from posttrain.models.loading import no_grad


def response_ids(tokenizer, prompt: list[dict], response: list[dict] | str) -> tuple[list[int], int]:
    """(the ids of prompt + response, the index of the response's first token)."""
    if isinstance(response, str):
        response = [{"role": "assistant", "content": response}]
    full = _ids(tokenizer.apply_chat_template(list(prompt) + list(response), tokenize=True, return_dict=True))
    if not prompt:
        return full, 0
    head = _ids(tokenizer.apply_chat_template(list(prompt), tokenize=True, return_dict=True,
                                              add_generation_prompt=True))
    start = next((i for i, (a, b) in enumerate(zip(head, full)) if a != b), min(len(head), len(full)))
    return full, start


def _ids(encoding) -> list[int]:
    ids = encoding["input_ids"]
    return list(ids[0] if ids and isinstance(ids[0], list) else ids)


@no_grad
def response_log_probs(model, tokenizer, items, batch_size: int = 8) -> list[tuple[float, int]]:
    """(sum of the response tokens' log-probabilities, how many tokens) for each (prompt, response) item."""
    import torch

    rows = [response_ids(tokenizer, prompt, response) for prompt, response in items]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    out: list[tuple[float, int]] = []
    for begin in range(0, len(rows), batch_size):
        batch = rows[begin:begin + batch_size]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        scored = torch.zeros((len(batch), width - 1), dtype=torch.bool)  # which next-token predictions count
        for i, (row, start) in enumerate(batch):
            ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, :len(row)] = 1
            scored[i, max(start, 1) - 1:len(row) - 1] = True
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, :-1].float()
        taken = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
        taken = taken.cpu() * scored
        out += [(float(total), int(count)) for total, count in zip(taken.sum(-1), scored.sum(-1))]
    return out
