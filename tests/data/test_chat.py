"""posttrain/data/chat.py: token ids and loss labels from the tokenizer's own chat template."""

from __future__ import annotations

import re

import pytest

from posttrain.data.chat import token_counts, token_lengths, tokenize_conversation
from posttrain.errors import ConfigError
from posttrain.models.loading import load_tokenizer
from posttrain.models.templates import CHATML, has_generation_markers

SINGLE = [{"role": "user", "content": "the patient dose"}, {"role": "assistant", "content": "dose patient the."}]
MULTI = [
    {"role": "system", "content": "answer in one word"},
    {"role": "user", "content": "heart risk"},
    {"role": "assistant", "content": "yes"},
    {"role": "user", "content": "blood test result"},
    {"role": "assistant", "content": "result test blood."},
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    return load_tokenizer(str(tiny_model))


@pytest.fixture(scope="module")
def plain_tokenizer(tiny_model):
    """The same ChatML template without `{% generation %}` markers: the prefix-rendering fallback."""
    tokenizer = load_tokenizer(str(tiny_model))
    tokenizer.chat_template = re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", CHATML)
    assert not has_generation_markers(tokenizer.chat_template)
    return tokenizer


def _learned(tokenizer, out) -> str:
    return tokenizer.decode([t for t, label in zip(out["input_ids"], out["labels"]) if label != -100])


def _spans(out) -> list[tuple[int, int]]:
    """(start, end) of each run of unmasked labels."""
    spans, start = [], None
    for i, label in enumerate(out["labels"] + [-100]):
        if label != -100 and start is None:
            start = i
        elif label == -100 and start is not None:
            spans.append((start, i))
            start = None
    return spans


def test_assistant_only_single_turn(tokenizer):
    out = tokenize_conversation(tokenizer, SINGLE)
    assert out["input_ids"] == tokenizer.apply_chat_template(SINGLE, tokenize=True, return_dict=True)["input_ids"]
    assert len(out["labels"]) == len(out["input_ids"])
    assert _learned(tokenizer, out) == "dose patient the.<|im_end|>"
    assert all(label in (-100, t) for t, label in zip(out["input_ids"], out["labels"]))
    assert out["labels"][-1] == -100  # the newline after <|im_end|> is not learned
    assert out["labels"][-2] == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_assistant_only_multi_turn_with_system_prompt(tokenizer):
    out = tokenize_conversation(tokenizer, MULTI)
    assert tokenizer.decode(out["input_ids"]) == tokenizer.apply_chat_template(MULTI, tokenize=False)
    assert _learned(tokenizer, out) == "yes<|im_end|>result test blood.<|im_end|>"
    spans = _spans(out)
    assert len(spans) == 2
    assert [tokenizer.decode(out["input_ids"][a:b]) for a, b in spans] == ["yes<|im_end|>",
                                                                           "result test blood.<|im_end|>"]
    # nothing of the system prompt or user turns is learned
    before = tokenizer.decode(out["input_ids"][:spans[0][0]])
    assert before.endswith("<|im_start|>assistant\n") and "answer in one word" in before


def test_not_assistant_only_learns_everything(tokenizer):
    out = tokenize_conversation(tokenizer, MULTI, assistant_only=False)
    assert out["labels"] == out["input_ids"]
    assert out["input_ids"] == tokenizer.apply_chat_template(MULTI, tokenize=True, return_dict=True)["input_ids"]
    assert tokenizer.decode(out["input_ids"]) == tokenizer.apply_chat_template(MULTI, tokenize=False)


@pytest.mark.parametrize("messages", [SINGLE, MULTI])
def test_fallback_without_generation_markers_marks_the_same_turns(tokenizer, plain_tokenizer, messages):
    marked = tokenize_conversation(tokenizer, messages)
    fallback = tokenize_conversation(plain_tokenizer, messages)
    assert fallback["input_ids"] == marked["input_ids"]
    # The fallback's span of a turn runs from the end of the generation prompt to the end of the turn's rendering,
    # which for ChatML includes the newline after <|im_end|>; the markers close just before it.
    marked_spans, fallback_spans = _spans(marked), _spans(fallback)
    assert len(marked_spans) == len(fallback_spans) == sum(m["role"] == "assistant" for m in messages)
    newline = plain_tokenizer.convert_tokens_to_ids("Ċ")
    for (a, b), (c, d) in zip(marked_spans, fallback_spans):
        assert c == a
        assert d == b + 1 and fallback["input_ids"][b] == newline
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    assert _learned(plain_tokenizer, fallback) == "".join(f"{a}<|im_end|>\n" for a in answers)


def test_fallback_not_assistant_only(plain_tokenizer):
    out = tokenize_conversation(plain_tokenizer, MULTI, assistant_only=False)
    assert out["labels"] == out["input_ids"]


def test_fallback_rejects_a_template_whose_prefixes_differ(tiny_model):
    tokenizer = load_tokenizer(str(tiny_model))
    # renders the number of messages first: a prefix renders differently from the start of the whole
    tokenizer.chat_template = "{{ messages | length }}" + re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", CHATML)
    with pytest.raises(ConfigError, match="renders a conversation differently from its prefixes"):
        tokenize_conversation(tokenizer, MULTI)


@pytest.mark.parametrize("which", ["tokenizer", "plain_tokenizer"])
def test_token_lengths_in_a_batch_are_the_ones_of_each_conversation(request, which):
    """The data doctor measures records a batch at a time: the same counts (and first assistant token) as one by
    one, with and without generation markers, tool-calling records among them."""
    tokenizer = request.getfixturevalue(which)
    call = {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "dose", "arguments": {"mg": 5}}}]}
    tools = [{"type": "function", "function": {"name": "dose", "parameters": {"type": "object"}}}]
    records = [{"messages": SINGLE}, {"messages": MULTI},
               {"messages": [MULTI[1], call, {"role": "tool", "content": "ok"}, MULTI[2]], "tools": tools},
               {"messages": MULTI[1:3]}]
    expected = []
    for record in records:
        out = tokenize_conversation(tokenizer, record["messages"], tools=record.get("tools"))
        expected.append((len(out["input_ids"]), next(i for i, label in enumerate(out["labels"]) if label != -100)))
    assert token_lengths(tokenizer, records) == expected
    assert token_counts(tokenizer, records) == [n for n, _ in expected]
