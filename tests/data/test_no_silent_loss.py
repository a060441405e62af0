"""Every registered format keeps or refuses each field it does not read; none is dropped silently.

The test walks FORMATS, so a format added without a sample row here (and a rule in its module, UNKNOWN_FIELDS)
fails until someone decides what becomes of the fields it does not read.
"""

from __future__ import annotations

import json
import logging
import sys

import pytest

from posttrain.data.formats import FORMATS, fields
from posttrain.errors import RecordError

USER = [{"role": "user", "content": "Capital of Japan?"}]
CHAT = {"messages": [*USER, {"role": "assistant", "content": "Tokyo."}]}
SAMPLE_SIZE = {"question": "Two arms of 120 adults each.", "answer": "240", "answer_type": "total",
               "trial_id": "NCT01", "pmid": "555", "explanation": "2 x 120 = 240."}
AGENT_EVAL = {"conversations": [{"from": "human", "value": "Rate this step."}, {"from": "gpt", "value": '{"a": 1}'}],
              "metadata": {"model_name": "m", "task_id": "t1", "evaluation_type": "clip"}}
PAIR = [{"answer": {"content": "Tokyo.", "label": {"is_preferred": True}}},
        {"answer": {"content": "Kyoto.", "label": {"is_preferred": False}}}]
MEDICAL = {"instruction": "If you are a doctor, answer.", "input": "My head hurts.", "output": "Rest and drink water."}
# One valid row per format (by its first registered name; aliases share it): (row, columns, tags).
SAMPLES = {
    "verl": ({"data_source": "gsm8k", "prompt": USER, "ability": "math",
              "reward_model": {"style": "rule", "ground_truth": "2"}, "extra_info": {"split": "train"}}, None, None),
    "rl_prompt": ({"prompt": USER, "data_source": "gsm8k", "ground_truth": "2", "extra_info": {}}, None, None),
    "openai": (CHAT, None, None),
    "sharegpt": ({"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}, None, None),
    "alpaca": ({"instruction": "Q", "input": "", "output": "A"}, None, None),
    "trialpanorama-study-search": ({"inputs": {"background": "B.", "objectives": "O.", "selection criteria": "S."},
                                    "labels": ["111"], "metadata": {"review_pmid": "999"}}, None, None),
    "trialpanorama-sample-size": (SAMPLE_SIZE, None, None),
    "trialpanorama-sample-size-sft": (SAMPLE_SIZE, None, None),
    "rm-gallery-pairwise": ({"unique_id": "p1", "input": USER, "output": PAIR, "source": "s"}, None, None),
    "rm-gallery-pointwise": ({"input": USER, "output": [{"answer": {"content": "Tokyo.", "label": {"helpfulness": 4}}}],
                              "source": "s"}, None, None),
    "agent-eval": (AGENT_EVAL, None, None),
    "agent-eval-no-metadata": (AGENT_EVAL, None, None),
    "agent-eval-judge": (AGENT_EVAL, None, None),
    "steps": ({"prompt": "1+1?", "completions": ["1+1=2."], "labels": [True]}, None, None),
    "preference": ({"prompt": "Q", "chosen": "A", "rejected": "B"}, None, None),
    "rm-gallery": ({"input": USER, "output": PAIR, "metadata": {}}, None, None),
    "medical-dialogue": (MEDICAL, None, None),
    "medical-dialogue-rl": (MEDICAL, None, None),
    "text": ({"text": "A document."}, None, None),
    "unpaired_preference": ({"prompt": "Q", "completion": "A", "label": True}, None, None),
    "llamafactory-v1": ({"messages": [
        {"role": "user", "content": [{"type": "text", "value": "Q"}], "loss_weight": 0.0},
        {"role": "assistant", "content": [{"type": "text", "value": "A"}]}]}, None, None),
    "llamafactory-v1-pair": ({"chosen_messages": [{"role": "user", "content": [{"type": "text", "value": "Q"}]},
                                                  {"role": "assistant", "content": [{"type": "text", "value": "A"}]}],
                              "rejected_messages": [{"role": "user", "content": [{"type": "text", "value": "Q"}]},
                                                    {"role": "assistant", "content": [{"type": "text", "value": "B"}]}]},
                             None, None),
}
LF_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
# LLaMA-Factory's layouts, as dataset_info.json entries route them
LAYOUTS = [
    ("sharegpt", {"msgs": CHAT["messages"], "sp": "Be brief."}, {"messages": "msgs", "system": "sp"}, LF_TAGS),
    ("alpaca", {"q": "Q", "a": "A", "h": [["q0", "a0"]]}, {"prompt": "q", "response": "a", "history": "h"}, None),
    ("preference", {"conversations": [{"from": "human", "value": "Q"}], "chosen": {"from": "gpt", "value": "A"},
                    "rejected": {"from": "gpt", "value": "B"}},
     {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}, None),
    ("preference", {"instruction": "Q", "input": "x", "chosen": "A", "rejected": "B"}, None, None),
    ("unpaired_preference", {"messages": CHAT["messages"], "label": False},
     {"messages": "messages", "kto_tag": "label"}, LF_TAGS),
    ("unpaired_preference", {"instruction": "Q", "output": "A", "ok": True}, {"kto_tag": "ok"}, None),
    ("text", {"body": "A document."}, {"prompt": "body"}, None),
]
# Layouts whose rule ignores an unread field with a warning naming it (their docstrings say why): a table whose text
# column columns.prompt names has said which column is the document.
WARNED = {len(LAYOUTS) - 1}
# LLaMA-Factory's fields posttrain does not train on everywhere, and one nobody knows; values that show where they went
EXTRA = {
    "images": ["MARK-image.jpg"], "videos": ["MARK-video.mp4"], "audios": ["MARK-audio.mp3"],
    "kto_tag": "MARK-kto", "chosen": "MARK-chosen", "history": [["MARK-history-q", "MARK-history-a"]],
    "tools": json.dumps([{"name": "MARK_tool", "parameters": {"type": "object", "properties": {}}}]),
    "zz_note": "MARK-note",
}


def _sample(name: str):
    module = FORMATS[name]
    owner = next((key for key in SAMPLES if FORMATS.get(key) is module), None)
    assert owner is not None, f"format {name!r} has no sample row in {__file__}: add one, and its UNKNOWN_FIELDS rule"
    return module, SAMPLES[owner]


def _records(module, row, columns, tags) -> str:
    out = module.to_record(row, columns, tags)
    return json.dumps(out if isinstance(out, list) else [out], ensure_ascii=False)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_has_a_documented_rule(name):
    module, (row, columns, tags) = _sample(name)
    assert module.UNKNOWN_FIELDS in ("refuse", "keep")
    doc = sys.modules[module.to_record.__module__].__doc__
    assert f'UNKNOWN_FIELDS = "{module.UNKNOWN_FIELDS}"' in doc, "say the rule in the format module's docstring"
    _records(module, row, columns, tags)  # the sample itself is valid


def _cases():
    """(format, layout, extra field) for each field the row does not hold already (a preference row's chosen is
    the field it reads, not an extra one)."""
    for name in sorted(FORMATS):
        row = _sample(name)[1][0]
        for key in EXTRA:
            if key not in row:
                yield name, None, key
    for i, (name, row, *_) in enumerate(LAYOUTS):
        for key in EXTRA:
            if key not in row:
                yield name, i, key


@pytest.mark.parametrize("name,layout,key", list(_cases()))
def test_an_extra_field_lands_in_the_record_or_is_refused_by_name(name, layout, key, caplog, monkeypatch):
    module, sample = _sample(name)
    row, columns, tags = sample if layout is None else LAYOUTS[layout][1:]
    value = EXTRA[key]
    monkeypatch.setattr(fields, "_warned", {})
    try:
        with caplog.at_level(logging.WARNING, logger="posttrain"):
            kept = _records(module, {**row, key: value}, columns, tags)
    except RecordError as e:
        assert e.field == key, f"{name} refused {key} but named {e.field}"
        if key in fields.MEDIA:
            assert "posttrain trains text-only models" in e.expected
        return
    assert key not in fields.MEDIA, f"{name} took {key}: posttrain trains text-only models"
    if layout in WARNED and "MARK" not in kept:
        assert any(repr(key) in r.getMessage() for r in caplog.records), f"{name} dropped {key} without a warning"
        return
    assert "MARK" in kept and (key != "zz_note" or module.UNKNOWN_FIELDS == "keep"), f"{name} dropped {key}"


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_a_bookkeeping_field_is_kept_or_named_in_a_warning(name, caplog, monkeypatch):
    module, (row, columns, tags) = _sample(name)
    monkeypatch.setattr(fields, "_warned", {})
    with caplog.at_level(logging.WARNING, logger="posttrain"):
        kept = _records(module, {**row, "id": "row-7"}, columns, tags)
    assert "row-7" in kept or any("'id'" in r.getMessage() for r in caplog.records), f"{name} dropped id silently"


@pytest.mark.parametrize("name", ["sharegpt", "alpaca", "preference", "unpaired_preference", "openai", "text"])
def test_a_media_column_mapping_is_refused(name):
    module, (row, _, tags) = _sample(name)
    with pytest.raises(RecordError) as info:
        module.to_record(row, {"images": "images"}, tags)
    assert info.value.field == "columns.images"


@pytest.mark.parametrize("name,key", [("sharegpt", "kto_tag"), ("alpaca", "chosen"), ("openai", "rejected")])
def test_a_column_for_another_stage_is_refused(name, key):
    module, (row, _, tags) = _sample(name)
    with pytest.raises(RecordError) as info:
        module.to_record(row, {key: "x"}, tags)
    assert info.value.field == f"columns.{key}"


def test_a_turn_key_sharegpt_does_not_read_is_refused():
    row = {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b", "weight": 0}]}
    with pytest.raises(RecordError) as info:
        FORMATS["sharegpt"].to_record(row)
    assert info.value.field == "conversations[1].weight"
