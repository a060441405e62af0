"""posttrain/models/tiny.py: an offline random Qwen2 model with its own BPE tokenizer and ChatML template."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from posttrain.errors import PosttrainError
from posttrain.models.templates import CHATML
from posttrain.models.tiny import SIZES, init_model
from tests.conftest import WORDS, make_chats, write_jsonl


def test_files_written(tiny_model):
    names = {p.name for p in tiny_model.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
            "generation_config.json"} <= names
    assert not any(p.name.startswith(".") for p in tiny_model.parent.iterdir())  # no temporary dir left
    assert (tiny_model / "chat_template.jinja").read_text() == CHATML
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["model_type"] == "qwen2"
    assert config["hidden_size"] == SIZES["tiny"]["hidden_size"]
    assert config["num_hidden_layers"] == SIZES["tiny"]["num_hidden_layers"]


def test_loads_with_transformers(tiny_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert tokenizer.chat_template == CHATML
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.config.vocab_size == len(tokenizer)
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    n_params = sum(p.numel() for p in model.parameters())
    assert 50_000 <= n_params <= 200_000, n_params
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "the patient"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()


def test_special_tokens_are_single_tokens(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    for token in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        assert tokenizer.tokenize(token) == [token]
    text = tokenizer.apply_chat_template([{"role": "user", "content": "dose"}], tokenize=False)
    assert text == "<|im_start|>user\ndose<|im_end|>\n"


def test_vocab_is_trained_on_the_corpus(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert 300 <= len(tokenizer) <= SIZES["tiny"]["vocab"]
    # the corpus' words become whole tokens (with the byte-level space marker after the first)
    for word in ("patient", "placebo", "sample", "heart"):
        assert tokenizer.tokenize(" " + word) == ["Ġ" + word]
    sentence = " ".join(WORDS[:12])
    assert len(tokenizer(sentence)["input_ids"]) == 12
    assert tokenizer.decode(tokenizer(sentence)["input_ids"]) == sentence
    # words never seen fall back to bytes: more tokens than words
    assert len(tokenizer.tokenize("zyxwvut qqqq")) > 2


def test_same_seed_same_model_other_seed_other_weights(tiny_model, chat_corpus, tmp_path):
    same = init_model(tmp_path / "same", [chat_corpus], size="tiny", seed=0)
    other = init_model(tmp_path / "other", [chat_corpus], size="tiny", seed=1)
    assert same == tmp_path / "same"
    reference = load_file(tiny_model / "model.safetensors")
    same_weights = load_file(same / "model.safetensors")
    other_weights = load_file(other / "model.safetensors")
    assert reference.keys() == same_weights.keys() == other_weights.keys()
    assert all(torch.equal(reference[k], same_weights[k]) for k in reference)
    assert not all(torch.equal(reference[k], other_weights[k]) for k in reference)
    assert (same / "tokenizer.json").read_bytes() == (tiny_model / "tokenizer.json").read_bytes()
    assert (other / "tokenizer.json").read_bytes() == (tiny_model / "tokenizer.json").read_bytes()


def test_replaces_an_earlier_model_and_nothing_else(chat_corpus, tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(PosttrainError, match="is not a model directory"):
        init_model(out, [chat_corpus], size="tiny")
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    (out / "notes.txt").unlink()
    init_model(out, [chat_corpus], size="tiny")
    (out / "stale.txt").write_text("old")
    init_model(out, [chat_corpus], size="tiny")
    assert not (out / "stale.txt").exists()
    assert (out / "model.safetensors").exists()


def test_txt_corpus(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))) + "\n")
    out = init_model(tmp_path / "m", [corpus])
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(out).tokenize(" placebo") == ["Ġplacebo"]


def test_missing_corpus_is_a_clear_error(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(PosttrainError) as info:
        init_model(tmp_path / "m", [missing])
    assert str(info.value) == f"{missing}: no such corpus file"
    assert not (tmp_path / "m").exists()


def test_empty_corpus_and_unknown_size(tmp_path):
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"messages": []}])
    with pytest.raises(PosttrainError, match="^the corpus holds no text to train a tokenizer on$"):
        init_model(tmp_path / "m", [empty])
    corpus = write_jsonl(tmp_path / "c.jsonl", make_chats(5))
    with pytest.raises(PosttrainError, match="^size: expected one of tiny, small, qwen2.5-0.5b, got 'huge'$"):
        init_model(tmp_path / "m", [corpus], size="huge")
    assert not (tmp_path / "m").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_the_half_billion_shape_is_qwen2_5_0_5b(tiny_model):
    """Built on the meta device: the shape alone, without allocating 2 GB."""
    import torch
    from transformers import AutoTokenizer, Qwen2ForCausalLM

    from posttrain.models.tiny import model_config

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    config = model_config("qwen2.5-0.5b", tokenizer)
    with torch.device("meta"):
        model = Qwen2ForCausalLM(config)
    parameters = sum(p.numel() for p in model.parameters())
    assert 494_000_000 < parameters < 494_100_000  # Qwen2.5-0.5B: 494,032,768 (embedding tied to the LM head)
    assert (config.vocab_size, config.num_hidden_layers, config.hidden_size) == (151936, 24, 896)
    assert config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert model_config("tiny", tokenizer).vocab_size == len(tokenizer)
