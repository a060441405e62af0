"""posttrain/models/templates.py: named chat templates render a conversation and mark the assistant turns."""

from __future__ import annotations

import logging

import pytest

from posttrain.data.chat import tokenize_conversation
from posttrain.errors import ConfigError
from posttrain.models.loading import load_tokenizer
from posttrain.models.templates import STOP_TOKENS, TEMPLATE_TOKENS, TEMPLATES, get_template, has_generation_markers

CHAT = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hi there"},
    {"role": "assistant", "content": "yes one"},
    {"role": "user", "content": "two"},
    {"role": "assistant", "content": "three four"},
]

CHATML_TEXT = ("<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi there<|im_end|>\n"
               "<|im_start|>assistant\nyes one<|im_end|>\n<|im_start|>user\ntwo<|im_end|>\n"
               "<|im_start|>assistant\nthree four<|im_end|>\n")
RENDERED = {
    "chatml": CHATML_TEXT,
    "qwen": CHATML_TEXT,
    "llama3": ("<|start_header_id|>system<|end_header_id|>\n\nbe brief<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nhi there<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\nyes one<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\ntwo<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\nthree four<|eot_id|>"),
    # no system role: its text goes before the first user turn; the tiny tokenizer's eos is <|im_end|>
    "mistral": "[INST] be brief\n\nhi there [/INST] yes one<|im_end|>[INST] two [/INST] three four<|im_end|>",
}
GENERATION_PROMPT = {
    "chatml": "<|im_start|>assistant\n",
    "qwen": "<|im_start|>assistant\n",
    "llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "mistral": "",
}
ASSISTANT_TOKENS = {
    "chatml": "yes one<|im_end|>three four<|im_end|>",
    "qwen": "yes one<|im_end|>three four<|im_end|>",
    "llama3": "yes one<|eot_id|>three four<|eot_id|>",
    "mistral": " yes one<|im_end|> three four<|im_end|>",
}


def test_every_template_is_covered():
    assert set(TEMPLATES) == set(RENDERED) == set(TEMPLATE_TOKENS)


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_named_template_renders_a_conversation(tiny_model, name):
    tokenizer = load_tokenizer(str(tiny_model), template=name)
    assert tokenizer.chat_template == TEMPLATES[name]
    assert tokenizer.apply_chat_template(CHAT, tokenize=False) == RENDERED[name]
    prompt = tokenizer.apply_chat_template(CHAT[:4], tokenize=False, add_generation_prompt=True)
    assert prompt == tokenizer.apply_chat_template(CHAT[:4], tokenize=False) + GENERATION_PROMPT[name]
    assert RENDERED[name].startswith(prompt)


@pytest.mark.parametrize("name", sorted(RENDERED))
def test_named_template_marks_assistant_turns_with_their_end_token(tiny_model, name):
    tokenizer = load_tokenizer(str(tiny_model), template=name)
    out = tokenize_conversation(tokenizer, CHAT)
    kept = [t for t, label in zip(out["input_ids"], out["labels"]) if label != -100]
    assert tokenizer.decode(kept) == ASSISTANT_TOKENS[name]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_every_named_template_has_generation_markers(name):
    assert has_generation_markers(get_template(name))


@pytest.mark.parametrize("template,expected", [
    (None, False),
    ("", False),
    ("{{ messages[0]['content'] }}", False),
    ("{% generation %}x{% endgeneration %}", True),
    ("{%- generation -%}x{%- endgeneration -%}", True),
    ("{%generation%}x{%endgeneration%}", True),
    ("{{ 'generation' }}", False),
])
def test_has_generation_markers(template, expected):
    assert has_generation_markers(template) is expected


def test_stop_tokens_are_template_tokens():
    for name, token in STOP_TOKENS.items():
        assert token in TEMPLATE_TOKENS[name]
        assert token in TEMPLATES[name]


@pytest.mark.parametrize("name,message", [
    ("chatlm", "template: unknown chat template 'chatlm'; known: chatml, qwen, llama3, mistral; "
               "did you mean 'chatml'?"),
    ("llama-3", "template: unknown chat template 'llama-3'; known: chatml, qwen, llama3, mistral; "
                "did you mean 'llama3'?"),
    ("xyz", "template: unknown chat template 'xyz'; known: chatml, qwen, llama3, mistral"),
])
def test_unknown_template_names_the_closest(name, message):
    with pytest.raises(ConfigError) as info:
        get_template(name)
    assert str(info.value) == message


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def test_template_tokens_missing_from_the_tokenizer_are_warned_about(tiny_model):
    # a handler on the module's logger: the CLI may have stopped "posttrain" propagating to caplog's root handler
    logger = logging.getLogger("posttrain.models.loading")
    handler = _Records()
    logger.addHandler(handler)
    try:
        load_tokenizer(str(tiny_model), template="chatml")
        assert not handler.records
        load_tokenizer(str(tiny_model), template="llama3")
    finally:
        logger.removeHandler(handler)
    assert len(handler.records) == 1
    message = handler.records[0].getMessage()
    assert "template llama3 writes <|start_header_id|>, <|end_header_id|>, <|eot_id|>" in message
