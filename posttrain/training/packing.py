"""Exact packing: several examples in one row without attention crossing between them.

Padding-free collators restart `position_ids` per example and drop the
attention mask. Only flash-attention's varlen kernels read example
boundaries from `position_ids`; with `sdpa` or `eager` (every CPU run) the
examples in a row would attend to each other and the loss would differ from
training them apart. This collator passes a block-diagonal causal 4-D mask
instead, which transformers hands to the attention kernel as is, so a packed
row computes exactly what its examples would compute one by one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ExactPackingCollator:
    """Collate rows of `input_ids`, `labels` and (when packed) `seq_lengths`.

    varlen=True (flash attention) returns flattened rows with `position_ids`
    only, via TRL's padding-free collator; otherwise a 4-D mask of `mask_dtype`
    (bool for sdpa; a float dtype gives the additive mask eager attention needs).
    """

    pad_token_id: int
    varlen: bool = False
    mask_dtype: torch.dtype = torch.bool

    def __call__(self, rows: list[dict]) -> dict:
        if self.varlen:
            from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

            return DataCollatorForLanguageModeling(pad_token_id=self.pad_token_id, padding_free=True)(rows)
        width = max(len(row["input_ids"]) for row in rows)
        batch = len(rows)
        input_ids = torch.full((batch, width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch, width), -100, dtype=torch.long)
        position_ids = torch.zeros((batch, width), dtype=torch.long)
        segments = torch.full((batch, width), -1, dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            input_ids[i, :n] = torch.as_tensor(row["input_ids"])
            labels[i, :n] = torch.as_tensor(row.get("labels", row["input_ids"]))
            start = 0
            for k, length in enumerate(row.get("seq_lengths") or [n]):
                position_ids[i, start : start + length] = torch.arange(length)
                segments[i, start : start + length] = k
                # nothing may learn to predict an example's first token from the previous example
                labels[i, start] = -100
                start += length
        same = segments[:, :, None] == segments[:, None, :]
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        mask = same & causal & (segments[:, :, None] >= 0)
        # padding attends to itself only, so its softmax stays finite
        mask |= torch.eye(width, dtype=torch.bool)
        mask = mask[:, None]
        if self.mask_dtype != torch.bool:
            mask = torch.zeros(mask.shape, dtype=self.mask_dtype).masked_fill(~mask, torch.finfo(self.mask_dtype).min)
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "attention_mask": mask,
                # the trainer's token count; TRL's would sum the 4-D mask
                "num_real_tokens": (segments >= 0).sum()}
