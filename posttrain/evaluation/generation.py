"""Generate answers to prompts with a Hugging Face model, in batches, the way it was trained to read them.

The prompt messages go through the tokenizer's chat template once
(`add_generation_prompt=True`), as training rendered them, and are tokenized
without adding special tokens again. Batches are left-padded, so every row's
answer starts at the same position; transformers derives position ids from the
attention mask, and under greedy decoding an output does not depend on the
batch it was in (a test checks this token for token). Prompts are batched
longest first, so rows of similar length share a batch and little is padding.
Decoding is greedy unless sampling is asked for; only posttrain's settings
apply (temperature, top_p; no top_k, no repetition penalty from the model's
generation_config), so the same settings mean the same decoding on any model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from posttrain.errors import ConfigError, PosttrainError
from posttrain.models.loading import is_adapter_dir, load_model, load_tokenizer


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 256
    batch_size: int = 8
    temperature: float | None = None
    top_p: float | None = None
    do_sample: bool | None = None  # default: sample when a temperature above 0 or a top_p is given
    seed: int | None = None
    num_samples: int = 1  # answers sampled per prompt (pass@k, mean@k); more than 1 needs sampling

    def __post_init__(self):
        if self.max_new_tokens < 1 or self.batch_size < 1 or self.num_samples < 1:
            raise ConfigError("max_new_tokens, batch_size and num_samples: expected integers of at least 1")
        if self.num_samples > 1 and not self.sampling:
            raise ConfigError(f"num_samples {self.num_samples}: greedy decoding gives the same answer every time; "
                              "give a temperature above 0 (or top_p, or do_sample) to sample")
        if self.temperature is not None and self.temperature < 0:
            raise ConfigError(f"temperature: expected a number of at least 0, got {self.temperature}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p: expected a number in (0, 1], got {self.top_p}")
        if self.sampling and self.temperature == 0:
            raise ConfigError("temperature 0 is greedy decoding; for sampling give a temperature above 0")

    @property
    def sampling(self) -> bool:
        if self.do_sample is not None:
            return self.do_sample
        return bool(self.temperature) or self.top_p is not None

    def as_dict(self) -> dict:
        return {**asdict(self), "do_sample": self.sampling}


def load(model: str, adapter: str | None = None, *, template: str | None = None, dtype: str = "auto",
         trust_remote_code: bool = False, attn_implementation: str | None = None):
    """(model, tokenizer) for generation: a model directory (a LoRA stage's adapter is merged into its base),
    or a base model with a LoRA adapter on top, merged for speed."""
    import torch

    tokenizer = tokenizer_for(model, adapter, template=template, trust_remote_code=trust_remote_code)
    network = load_model(str(model), dtype=dtype, trust_remote_code=trust_remote_code,
                         attn_implementation=attn_implementation)
    if adapter is not None:
        from peft import PeftModel

        network = PeftModel.from_pretrained(network, str(adapter)).merge_and_unload()
    if torch.cuda.is_available():
        network = network.to("cuda")
    network.eval()
    return network, tokenizer


def tokenizer_for(model: str, adapter: str | None = None, *, template: str | None = None,
                  trust_remote_code: bool = False):
    """The tokenizer that goes with `model` (plus `adapter`), left-padded for batched generation."""
    if adapter is not None and not is_adapter_dir(adapter):
        raise PosttrainError(f"{adapter}: no adapter_config.json; expected a LoRA adapter directory (peft)")
    # a LoRA stage saves its tokenizer beside the adapter; it is the one the adapter was trained with
    tokenizer_dir = adapter if adapter is not None and (Path(adapter) / "tokenizer_config.json").exists() else model
    tokenizer = load_tokenizer(str(tokenizer_dir), template=template, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    return tokenizer


def encode(tokenizer, prompts: list[list[dict]]) -> list[list[int]]:
    """Each prompt through the chat template, ending where the assistant's answer begins, as token ids; the
    template writes any special tokens (a BOS) itself, so the tokenizer adds none."""
    texts = [tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
             for messages in prompts]
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]


def end_of_turn_ids(eos_token_id, tokenizer) -> list[int]:
    """End-of-turn tokens: a generation config's eos id(s) and the tokenizer's eos (they differ for some models)."""
    ids = list(eos_token_id) if isinstance(eos_token_id, (list, tuple)) else [] if eos_token_id is None \
        else [eos_token_id]
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _stop_ids(model, tokenizer) -> list[int]:
    return end_of_turn_ids(model.generation_config.eos_token_id, tokenizer)


def generation_config(model, tokenizer, settings: GenerationSettings):
    from transformers import GenerationConfig

    options = dict(max_new_tokens=settings.max_new_tokens, do_sample=settings.sampling, num_beams=1,
                   repetition_penalty=1.0, eos_token_id=_stop_ids(model, tokenizer),
                   pad_token_id=tokenizer.pad_token_id)
    if settings.sampling:
        options.update(temperature=settings.temperature if settings.temperature is not None else 1.0,
                       top_p=settings.top_p if settings.top_p is not None else 1.0, top_k=0)
    return GenerationConfig(**options)


def generate_ids(model, tokenizer, prompts: list[list[dict]], settings: GenerationSettings,
                 progress: Callable[[int], None] | None = None) -> list[list[int]]:
    """The token ids of the answer to each prompt (without the padding after an early stop), in prompt order."""
    import torch
    from transformers import set_seed

    encoded = encode(tokenizer, prompts)
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    config = generation_config(model, tokenizer, settings)
    if settings.seed is not None:
        set_seed(settings.seed)
    answers: list[list[int]] = [[] for _ in prompts]
    device = next(model.parameters()).device
    for start in range(0, len(order), settings.batch_size):
        batch = order[start:start + settings.batch_size]
        padded = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, padding=True, return_tensors="pt")
        with torch.inference_mode():
            generated = model.generate(input_ids=padded["input_ids"].to(device),
                                       attention_mask=padded["attention_mask"].to(device), generation_config=config)
        for i, ids in zip(batch, generated[:, padded["input_ids"].shape[1]:].tolist()):
            while ids and ids[-1] == tokenizer.pad_token_id:
                ids.pop()
            answers[i] = ids
        if progress is not None:
            progress(len(batch))
    return answers


def generate(model, tokenizer, prompts: list[list[dict]], settings: GenerationSettings,
             progress: Callable[[int], None] | None = None) -> list[str]:
    """The answer to each prompt as text (special tokens dropped), in the order of `prompts`."""
    return [tokenizer.decode(ids, skip_special_tokens=True)
            for ids in generate_ids(model, tokenizer, prompts, settings, progress)]
