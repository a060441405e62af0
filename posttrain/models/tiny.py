"""Build a small random-initialised model with its own tokenizer, offline.

Tests, the quickstart and CPU users need a real Hugging Face model directory
without downloading one. `init_model` trains a byte-level BPE tokenizer on
the given texts, gives it a ChatML template whose assistant turns are marked
for assistant-only loss, and saves a random Qwen2-architecture model
(safetensors) sized for a laptop CPU.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from posttrain.data.io import read_rows
from posttrain.errors import PosttrainError
from posttrain.models.loading import is_model_dir
from posttrain.models.templates import CHATML
from posttrain.runs.ownership import remove_tree

SIZES = {
    # ~0.1 M parameters: fast enough for unit tests on one core
    "tiny": dict(vocab=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2),
    # ~2.5 M parameters: learns visibly within a CPU demo
    "small": dict(vocab=4096, hidden_size=192, intermediate_size=512, num_hidden_layers=4,
                  num_attention_heads=6, num_key_value_heads=2),
    # Qwen2.5-0.5B's shape (~494 M parameters), random weights: GPU throughput and memory figures for a 0.5 B
    # model without downloading one. The embedding has Qwen's 151,936 rows, though the tokenizer uses only its
    # first few thousand, so the LM head costs what it costs in the real model.
    "qwen2.5-0.5b": dict(vocab=8192, model_vocab=151936, hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         max_position_embeddings=32768, rope_theta=1000000.0),
}
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def corpus_texts(paths: Iterable[str | Path]) -> Iterator[str]:
    """Every string in the given files: .txt lines, or string values inside json/jsonl/parquet records."""
    for path in paths:
        path = Path(path)
        if path.suffix.lower() in (".txt", ".md"):
            with open(path, encoding="utf-8") as f:
                yield from (line for line in f if line.strip())
            continue
        for _, row in read_rows(path):
            yield from _strings(row)


def _strings(value) -> Iterator[str]:
    if isinstance(value, str):
        if value.strip():
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
    )
    tokenizer.chat_template = CHATML
    return tokenizer


def model_config(size: str, tokenizer):
    """The Qwen2 config of a model of `size` for `tokenizer`."""
    from transformers import Qwen2Config

    spec = {"max_position_embeddings": 4096, "rope_theta": 10000.0, **SIZES[size]}
    spec.pop("vocab")
    vocab = max(len(tokenizer), spec.pop("model_vocab", 0))
    return Qwen2Config(vocab_size=vocab, tie_word_embeddings=True, bos_token_id=None,
                       eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
                       pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"), **spec)


def _check_replaceable(out: Path) -> None:
    """init-model replaces a model directory (an earlier tiny model) and nothing else: not `.`, not a home."""
    if out.is_symlink():
        raise PosttrainError(f"{out}: a symbolic link to {os.path.realpath(out)}; name that directory itself")
    if out.exists() and not (out.is_dir() and (is_model_dir(out) or not any(out.iterdir()))):
        raise PosttrainError(f"{out}: exists and is not a model directory (no config.json); init-model replaces "
                             "only an earlier model. Choose a new or empty directory")


def init_model(out: str | Path, corpus: Iterable[str | Path], *, size: str = "tiny", seed: int = 0) -> Path:
    """Write a tokenizer + random Qwen2 model to `out` (atomically) and return the path."""
    import torch
    from transformers import GenerationConfig, Qwen2ForCausalLM

    if size not in SIZES:
        raise PosttrainError(f"size: expected one of {', '.join(SIZES)}, got {size!r}")
    out = Path(os.path.abspath(out))  # `.` has no name to put a temporary directory beside
    _check_replaceable(out)
    corpus = [Path(p) for p in corpus]
    for path in corpus:
        if not path.exists():
            raise PosttrainError(f"{path}: no such corpus file")
    texts = list(corpus_texts(corpus))
    if not texts:
        raise PosttrainError("the corpus holds no text to train a tokenizer on")
    tokenizer = train_tokenizer(texts, SIZES[size]["vocab"])
    config = model_config(size, tokenizer)
    eos, pad = config.eos_token_id, config.pad_token_id
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, bos_token_id=None)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        remove_tree(out, out.parent)
        tmp.rename(out)
    except BaseException:
        remove_tree(tmp, out.parent)
        raise
    return out


def with_spread_weights(model_dir: str | Path, out: str | Path, *, std: float, seed: int = 0) -> Path:
    """A copy of a model whose matrices are drawn again from N(0, std): a freshly initialised tiny model answers
    every prompt alike (the same newlines), one with wider weights gives each prompt its own greedy answer, which
    tests and benchmarks of generation need to tell answers apart."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0, std, generator=generator)
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(str(out))
    return Path(out)
