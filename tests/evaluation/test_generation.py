"""posttrain/evaluation/generation.py: chat template once, left padding, batch-size invariance, adapters, sampling."""

from __future__ import annotations

import pytest

from posttrain.errors import ConfigError, PosttrainError
from posttrain.evaluation.generation import GenerationSettings, encode, generate, generate_ids, load
from tests.conftest import make_chats


def _prompts(n: int):
    # 1 to 30 words: in a batch, short prompts are padded a lot
    return [chat["messages"][:1] for chat in make_chats(n, seed=5, min_words=1, max_words=30)]


def test_prompts_go_through_the_chat_template_once(tiny_model):
    tokenizer = load(str(tiny_model))[1]
    prompt = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the dose"}]
    [ids] = encode(tokenizer, [prompt])
    assert ids == tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                                return_dict=True)["input_ids"]
    assert tokenizer.decode(ids) == ("<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nthe dose<|im_end|>\n"
                                     "<|im_start|>assistant\n")
    assert tokenizer.padding_side == "left"


def test_greedy_outputs_do_not_depend_on_the_batch(talkative_model):
    model, tokenizer = load(str(talkative_model))
    prompts = _prompts(12)
    runs = {size: generate(model, tokenizer, prompts, GenerationSettings(max_new_tokens=12, batch_size=size))
            for size in (1, 5, 12)}
    assert runs[1] == runs[5] == runs[12]
    assert len(set(runs[1])) >= 10  # the answers differ, so equal runs mean something


def test_max_new_tokens_bounds_each_answer(talkative_model):
    model, tokenizer = load(str(talkative_model))
    answers = generate_ids(model, tokenizer, _prompts(6), GenerationSettings(max_new_tokens=5, batch_size=3))
    assert all(0 < len(ids) <= 5 for ids in answers)
    assert max(len(ids) for ids in answers) == 5


def test_sampling_follows_the_seed(talkative_model):
    model, tokenizer = load(str(talkative_model))
    prompts = _prompts(4)
    settings = GenerationSettings(max_new_tokens=8, temperature=1.5, seed=3)
    assert settings.sampling
    first, again = (generate(model, tokenizer, prompts, settings) for _ in range(2))
    other = generate(model, tokenizer, prompts, GenerationSettings(max_new_tokens=8, temperature=1.5, seed=4))
    greedy = generate(model, tokenizer, prompts, GenerationSettings(max_new_tokens=8))
    assert first == again
    assert first != other and first != greedy


def test_base_plus_adapter_is_the_merged_adapter(talkative_model, lora_adapter):
    prompts = _prompts(4)
    settings = GenerationSettings(max_new_tokens=8)
    with_adapter = generate(*load(str(talkative_model), str(lora_adapter)), prompts, settings)
    # an adapter directory as the model: loaded on the base its adapter_config.json names
    adapter_dir = generate(*load(str(lora_adapter)), prompts, settings)
    base = generate(*load(str(talkative_model)), prompts, settings)
    assert with_adapter == adapter_dir
    assert with_adapter != base


def test_an_adapter_must_be_an_adapter_directory(talkative_model):
    with pytest.raises(PosttrainError, match="no adapter_config.json; expected a LoRA adapter directory"):
        load(str(talkative_model), str(talkative_model))


@pytest.mark.parametrize("settings, message", [
    (dict(max_new_tokens=0), "max_new_tokens, batch_size and num_samples"),
    (dict(top_p=1.5), r"top_p: expected a number in \(0, 1\]"),
    (dict(temperature=0, do_sample=True), "temperature 0 is greedy decoding"),
])
def test_bad_settings(settings, message):
    with pytest.raises(ConfigError, match=message):
        GenerationSettings(**settings)


def test_temperature_zero_is_greedy():
    assert not GenerationSettings(temperature=0).sampling
    assert GenerationSettings(top_p=0.9).sampling
    assert not GenerationSettings(temperature=1.0, do_sample=False).sampling
