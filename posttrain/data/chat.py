"""Turn a conversation into token ids and loss labels with the tokenizer's own chat template.

The template is applied exactly once, here. Labels are -100 outside
assistant turns when `assistant_only` is set. Templates with
`{% generation %}` markers give the assistant mask directly; for the others
the assistant spans are found by rendering each prefix of the conversation,
which works for every template whose renderings of a prefix are a prefix of
the whole (ChatML, Llama 3, Mistral, and most others).

A conversation's `tools` go to the template as transformers' `tools=`, so
the model trains on the tool list it will be prompted with; tool calls are
assistant turns and learned, tool results are not. A template that does not
render tools or calls would drop them from the text without a word, so that
is an error here rather than a model trained on something else.
"""

from __future__ import annotations

from posttrain.errors import ConfigError
from posttrain.models.templates import has_generation_markers


def tokenize_conversation(tokenizer, messages: list[dict], *, tools: list[dict] | None = None,
                          assistant_only: bool = True) -> dict:
    """{"input_ids": [...], "labels": [...]} for one conversation (and its `tools`), untruncated."""
    tools = tools or None
    _check_renders_tools(tokenizer.chat_template, messages, tools)
    if not assistant_only:
        ids = _ids(tokenizer.apply_chat_template(messages, tools=tools, tokenize=True, return_dict=True))
        return {"input_ids": ids, "labels": list(ids)}
    if has_generation_markers(tokenizer.chat_template):
        out = tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        ids, mask = _ids(out), list(out["assistant_masks"])
    else:
        ids, mask = _mask_by_prefixes(tokenizer, messages, tools)
    return {"input_ids": ids, "labels": [t if m else -100 for t, m in zip(ids, mask)]}


def token_lengths(tokenizer, conversations: list[dict]) -> list[tuple[int, int | None]]:
    """(token count, index of the first assistant token or None) of each conversation record, as
    tokenize_conversation counts them; records without tools go through the template and the tokenizer as one
    batch when the template marks the assistant's text (the tokenizer encodes a batch in parallel)."""
    batchable = has_generation_markers(tokenizer.chat_template)
    out: list[tuple[int, int | None] | None] = [None] * len(conversations)
    together = [i for i, record in enumerate(conversations) if batchable and not record.get("tools")]
    if together:
        encoded = tokenizer.apply_chat_template([conversations[i]["messages"] for i in together], tokenize=True,
                                                return_dict=True, return_assistant_tokens_mask=True)
        for i, ids, mask in zip(together, encoded["input_ids"], encoded["assistant_masks"]):
            out[i] = (len(ids), next((j for j, m in enumerate(mask) if m), None))
    for i, record in enumerate(conversations):
        if out[i] is None:
            one = tokenize_conversation(tokenizer, record["messages"], tools=record.get("tools"))
            out[i] = (len(one["input_ids"]), next((j for j, label in enumerate(one["labels"]) if label != -100),
                                                  None))
    return out


def token_counts(tokenizer, conversations: list[dict]) -> list[int]:
    """The token count of each conversation record, as tokenize_conversation counts it, without locating the
    assistant's tokens: the records without tools or tool calls are rendered by the template and tokenized as
    one batch (the same text, tokenized the same way), the others one by one."""
    out: list[int | None] = [None] * len(conversations)
    together = [i for i, record in enumerate(conversations)
                if not record.get("tools") and not any(m.get("tool_calls") for m in record["messages"])]
    if together:
        texts = tokenizer.apply_chat_template([conversations[i]["messages"] for i in together], tokenize=False)
        for i, ids in zip(together, tokenizer(texts, add_special_tokens=False)["input_ids"]):
            out[i] = len(ids)
    for i, record in enumerate(conversations):
        if out[i] is None:
            out[i] = len(tokenize_conversation(tokenizer, record["messages"], tools=record.get("tools"))["input_ids"])
    return out


def _check_renders_tools(template, messages: list[dict], tools) -> None:
    """A template that never mentions `tools` / `tool_calls` renders neither (transformers passes them silently)."""
    text = template if isinstance(template, str) else str(template or "")
    for name, used in (("tools", tools), ("tool_calls", any(m.get("tool_calls") for m in messages))):
        if used and name not in text:
            raise ConfigError(
                f"the tokenizer's chat template does not render {name}, so training would leave them out of the "
                "text; set `template: qwen` (or chatml, which render them as Qwen2.5 does) or use a model whose "
                "template renders tools"
            )


def _ids(encoding) -> list[int]:
    ids = encoding["input_ids"]
    return list(ids[0] if ids and isinstance(ids[0], list) else ids)


def _mask_by_prefixes(tokenizer, messages: list[dict], tools=None) -> tuple[list[int], list[int]]:
    text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tools=tools, tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(messages[: i + 1], tools=tools, tokenize=False)
        if not (text.startswith(through) and through.startswith(before)):
            raise ConfigError(
                "the tokenizer's chat template renders a conversation differently from its prefixes, so the "
                "assistant turns cannot be located; set `template:` (chatml, qwen, llama3, mistral) or "
                "`assistant_only_loss: false`"
            )
        spans.append((len(before), len(through)))
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(any(a <= start < b for a, b in spans)) for start, _ in enc["offset_mapping"]]
    return list(enc["input_ids"]), mask
