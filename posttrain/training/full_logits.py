"""The next-token loss from the model's own logits, for batches whose logits are small enough to hold.

TRL's SFTTrainer scores every batch through its fused, chunked LM head (trl.kernels.chunked_logprob), which never
holds the [tokens, vocab] logits: right for a real vocabulary at a real batch size. Without Triton (on a CPU) that
head falls back to plain torch tiles: about ten elementwise passes forward for its metrics, the logits computed again
in the backward, every tile cast to fp32 under autocast. With a small vocabulary the whole logits take a few MB, and
one cross-entropy over them made an SFT step ~1.3x faster (docs/benchmarks.md). The rule is their size:
`FULL_LOGITS_LIMIT` elements, above which TRL's head keeps the memory bound, on any device.
"""

from __future__ import annotations

import torch

FULL_LOGITS_LIMIT = 2**26  # elements of [rows, length, vocab]: 256 MB a fp32 copy; the loss holds about four at once


def fits(input_ids: torch.Tensor, vocab_size: int) -> bool:
    return input_ids.numel() * vocab_size <= FULL_LOGITS_LIMIT


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor, num_items_in_batch=None):
    """(loss, entropy sum, top-1 hits, scored positions): what TRL's fused head gives for its `nll` loss.

    The loss is the summed negative log-likelihood of each kept next token (label != -100), in fp32, over
    `num_items_in_batch` (the Trainer's count across gradient accumulation) or else over the positions scored.
    The entropy and hits feed TRL's `entropy` and `mean_token_accuracy` metrics, and take no gradient.
    """
    # position t predicts token t + 1; the last position predicts nothing. Scoring every position and masking
    # costs less than selecting the kept ones, whose backward scatters into a zeroed copy of the logits.
    targets = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100)
    kept = targets != -100
    log_probs = logits.float().log_softmax(-1)
    picked = log_probs.gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)
    scored = kept.sum()
    loss = -picked.masked_fill(~kept, 0).sum() / torch.as_tensor(
        scored if num_items_in_batch is None else num_items_in_batch).clamp(min=1)
    with torch.no_grad():
        entropy = -(log_probs.exp() * log_probs).sum(-1).masked_fill(~kept, 0).sum()
        hits = ((log_probs.argmax(-1) == targets) & kept).sum()
    return loss, entropy, hits, scored
