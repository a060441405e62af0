"""LLaMA-Factory's demo datasets read through its own dataset_info.json: text ones train, media ones are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrain.data.dataset_info import load_source, resolve
from posttrain.data.formats import load_records
from posttrain.errors import DataError

LF = Path(__file__).parent / "llamafactory"
TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
MEDIA = [("mllm_demo", "images", "<image>"), ("mllm_video_demo", "videos", "<video>"),
         ("mllm_audio_demo", "audios", "<audio>"), ("mllm_video_audio_demo", "videos", "<video>")]


@pytest.mark.parametrize("name,record_type,count", [
    ("alpaca_en_demo", "conversation", 3), ("glaive_toolcall_en_demo", "conversation", 4),
    ("dpo_en_demo", "preference", 2), ("kto_en_demo", "unpaired_preference", 3),
])
def test_text_demos_read_unchanged(name, record_type, count):
    (source,) = resolve(LF, name)
    records = [record for _, record in load_source(source)]
    assert len(records) == count
    key = {"conversation": "messages", "preference": "chosen", "unpaired_preference": "completion"}[record_type]
    assert all(record[key] for record in records)


@pytest.mark.parametrize("name,column,placeholder", MEDIA)
def test_a_media_column_in_dataset_info_is_refused(name, column, placeholder):
    (source,) = resolve(LF, name)
    with pytest.raises(DataError) as info:
        list(load_source(source))
    e = info.value
    assert e.path == str(LF / f"{name}.json") and e.field == f"columns.{column}"
    assert e.expected == (f"{column} input (LLaMA-Factory's multimodal column); posttrain trains text-only models; "
                          f"drop the column (and the {placeholder} placeholders) or use a vision-language toolkit")


@pytest.mark.parametrize("name,column,placeholder", MEDIA)
def test_a_row_with_media_is_refused_at_its_line(name, column, placeholder):
    """Without the entry (the file read as plain sharegpt), the row's own media field is the error, at its line."""
    path = LF / f"{name}.json"
    with pytest.raises(DataError) as info:
        list(load_records(path, "sharegpt", columns={"messages": "messages"}, tags=TAGS))
    e = info.value
    assert (e.path, e.line, e.field) == (str(path), 2, column)
    assert "posttrain trains text-only models" in e.expected and placeholder in e.expected


def test_empty_media_fields_lose_nothing(tmp_path):
    rows = json.loads((LF / "mllm_demo.json").read_text(encoding="utf-8"))
    for row in rows:
        row["images"] = []
        for message in row["messages"]:
            message["content"] = message["content"].replace("<image>", "")
    path = tmp_path / "text_only.json"
    path.write_text(json.dumps(rows))
    records = [r for _, r in load_records(path, "sharegpt", columns={"messages": "messages"}, tags=TAGS)]
    assert len(records) == 2


def test_openai_image_parts_are_refused(tmp_path):
    row = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Who?"},
                                                     {"type": "image_url", "image_url": {"url": "a.jpg"}}]},
                        {"role": "assistant", "content": "Kane."}]}
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=r"d.jsonl:1: messages\[0\]\.content\[1\]: image_url content; posttrain trains "
                                        "text-only models"):
        list(load_records(path, "openai"))
