"""Outside formats -> canonical conversations and back; errors name the field and what was expected."""

import json

import pytest

from posttrain.data.formats import FORMATS, alpaca, detect_format, get_format, load_conversations, openai, sharegpt
from posttrain.errors import DataError, PosttrainError, RecordError


def _msgs(*pairs):
    return {"messages": [{"role": r, "content": c} for r, c in pairs]}


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


LF_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
           "system_tag": "system"}

CONVERSIONS = [
    # (format, row, columns, tags, expected)
    ("alpaca", {"instruction": "Hi", "output": "Hello"}, None, None, _msgs(("user", "Hi"), ("assistant", "Hello"))),
    ("alpaca", {"instruction": "Translate", "input": "chat", "output": "cat"}, None, None,
     _msgs(("user", "Translate\nchat"), ("assistant", "cat"))),
    ("alpaca", {"instruction": "Q", "input": "", "output": "A", "system": "S", "history": [["q0", "a0"]]}, None,
     None, _msgs(("system", "S"), ("user", "q0"), ("assistant", "a0"), ("user", "Q"), ("assistant", "A"))),
    ("alpaca", {"instruction": "", "input": "only input", "output": "A"}, None, None,
     _msgs(("user", "only input"), ("assistant", "A"))),
    ("alpaca", {"question": "Q", "ctx": "C", "answer": "A", "sys": "S"},
     {"prompt": "question", "query": "ctx", "response": "answer", "system": "sys"}, None,
     _msgs(("system", "S"), ("user", "Q\nC"), ("assistant", "A"))),
    ("sharegpt", {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}, None, None,
     _msgs(("user", "a"), ("assistant", "b"))),
    ("sharegpt", {"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "a"},
                                    {"from": "function_call", "value": '{"name": "f", "arguments": {}}'},
                                    {"from": "observation", "value": "r"}, {"from": "gpt", "value": "b"}]}, None, None,
     {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "a"},
                   {"role": "assistant", "content": "",
                    "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {}}}]},
                   {"role": "tool", "content": "r"}, {"role": "assistant", "content": "b"}]}),
    ("sharegpt", {"conversations": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
                  "system": "s"}, None, None, _msgs(("system", "s"), ("user", "a"), ("assistant", "b"))),
    ("sharegpt", {"msgs": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "sp": "s"},
     {"messages": "msgs", "system": "sp"}, LF_TAGS, _msgs(("system", "s"), ("user", "a"), ("assistant", "b"))),
    ("sharegpt", {"conversations": [{"speaker": "me", "text": "a"}, {"speaker": "bot", "text": "b"}]}, None,
     {"role_tag": "speaker", "content_tag": "text", "user_tag": "me", "assistant_tag": "bot"},
     _msgs(("user", "a"), ("assistant", "b"))),
    ("openai", _msgs(("user", "a"), ("assistant", "b")), None, None, _msgs(("user", "a"), ("assistant", "b"))),
    ("messages", {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text",
                                                                                             "text": "b"}]},
                               {"role": "assistant", "content": "c"}], "id": 7}, None, None,
     _msgs(("user", "ab"), ("assistant", "c"))),
]


@pytest.mark.parametrize("fmt,row,columns,tags,expected", CONVERSIONS)
def test_to_conversation(fmt, row, columns, tags, expected):
    assert get_format(fmt).to_conversation(row, columns, tags) == expected


BAD = [
    # (format, row, tags, field, expected)
    ("alpaca", {"output": "A"}, None, "instruction", "missing; expected a string"),
    ("alpaca", {"instruction": "Q"}, None, "output", "missing; expected a string"),
    ("alpaca", {"instruction": 3, "output": "A"}, None, "instruction", "expected a string, got int"),
    ("alpaca", {"instruction": "Q", "output": "  "}, None, "output", "empty; expected text"),
    ("alpaca", {"instruction": "Q", "output": "A", "history": "x"}, None, "history",
     "expected a list of [user, assistant] pairs, got str"),
    ("alpaca", {"instruction": "Q", "output": "A", "history": [["q"]]}, None, "history[0]",
     "expected a [user, assistant] pair"),
    ("alpaca", [1], None, "record", "expected a JSON object, got list"),
    ("sharegpt", {"conversations": [{"from": "human", "value": "a"}, {"from": "bot", "value": "b"}]}, None,
     "conversations[1].from",
     "expected one of human, gpt, observation, function_call, system, user, assistant, tool, got 'bot'"),
    ("sharegpt", {"conversations": [{"role": "user", "content": "a"}, {"role": "gpt", "content": "b"}]}, LF_TAGS,
     "conversations[1].role", "expected one of user, assistant, observation, function_call, system, got 'gpt'"),
    ("sharegpt", {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": ""}]}, None,
     "conversations[1].value", "empty; expected text"),
    ("sharegpt", {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": 5}]}, None,
     "conversations[1].value", "expected a string, got int"),
    ("sharegpt", {"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "b"}]}, None,
     "conversations[0].from", "expected system or user first, got assistant"),
    ("sharegpt", {"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"},
                                    {"from": "gpt", "value": "c"}]}, None,
     "conversations[1].from", "expected assistant after user, got user"),
    ("sharegpt", {"conversations": [{"from": "human", "value": "a"}]}, None, "conversations[0].from",
     "expected the last turn to be assistant, got user"),
    ("sharegpt", {"conversations": [{"from": ["human"], "value": "a"}]}, None, "conversations[0].from",
     "expected one of human, gpt, observation, function_call, system, user, assistant, tool, got ['human']"),
    ("sharegpt", {"conversations": [{"from": "human"}]}, None, "conversations[0].value",
     "missing; expected a string"),
    ("sharegpt", {"conversations": [{"from": "human", "value": "a"}], "system": 1}, None, "system",
     "expected a string, got int"),
    ("sharegpt", {"conversations": []}, None, "conversations", "expected a non-empty list of messages"),
    ("sharegpt", {"turns": []}, None, "conversations", "missing; expected a list of messages"),
    ("openai", {"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]}, None,
     "messages[1].role", "expected one of system, user, assistant, tool, got 'robot'"),
    ("openai", {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": " "}]}, None,
     "messages[1].content", "empty; expected text"),
    ("openai", {"msgs": []}, None, "messages", "missing; expected a list of {role, content} messages"),
]


@pytest.mark.parametrize("fmt,row,tags,field,expected", BAD)
def test_bad_rows_name_field_and_expectation(fmt, row, tags, field, expected):
    with pytest.raises(RecordError) as info:
        get_format(fmt).to_conversation(row, None, tags)
    assert (info.value.field, info.value.expected) == (field, expected)


def test_sharegpt_error_index_skips_the_system_column():
    row = {"system": "s", "conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": " "}]}
    with pytest.raises(RecordError) as info:
        sharegpt.to_conversation(row)
    assert info.value.field == "conversations[1].value"


ROUND_TRIPS = [
    _msgs(("user", "a"), ("assistant", "b")),
    _msgs(("system", "s"), ("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")),
]


@pytest.mark.parametrize("record", ROUND_TRIPS)
@pytest.mark.parametrize("module", [alpaca, sharegpt, openai])
def test_round_trip(module, record):
    assert module.to_conversation(module.from_conversation(record)) == record


def test_from_conversation_shapes():
    record = _msgs(("system", "s"), ("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"))
    assert alpaca.from_conversation(record) == {"instruction": "c", "input": "", "output": "d", "system": "s",
                                                "history": [["a", "b"]]}
    call = {"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}
    tool = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "", "tool_calls": [call]},
                         {"role": "tool", "content": "r"}, {"role": "assistant", "content": "b"}]}
    assert sharegpt.from_conversation(tool) == {"conversations": [
        {"from": "human", "value": "a"}, {"from": "function_call", "value": '{"name": "f", "arguments": {"x": 1}}'},
        {"from": "observation", "value": "r"}, {"from": "gpt", "value": "b"}]}
    assert sharegpt.to_conversation(sharegpt.from_conversation(tool)) == tool
    # an assistant turn answered by a tool but calling nothing is a plain answer, written as one
    untold = _msgs(("user", "a"), ("assistant", "call"), ("tool", "r"), ("assistant", "b"))
    assert sharegpt.from_conversation(untold)["conversations"][1] == {"from": "gpt", "value": "call"}
    with pytest.raises(RecordError, match="alpaca cannot hold tool messages"):
        alpaca.from_conversation(tool)


def test_registry_names_and_suggestions():
    assert FORMATS["conversation"] is FORMATS["messages"] is FORMATS["openai"] is openai
    with pytest.raises(PosttrainError) as info:
        get_format("sharegtp")
    # the first formats in registration order, then the rest the registry has grown
    assert str(info.value).startswith("format: unknown format 'sharegtp'; known: verl, rl_prompt, openai, "
                                      "conversation, messages, sharegpt, alpaca, trialpanorama-study-search, ")
    assert str(info.value).endswith(f"{', '.join(FORMATS)}; did you mean 'sharegpt'?")


@pytest.mark.parametrize("row,name", [
    ({"messages": []}, "openai"),
    ({"conversations": []}, "sharegpt"),
    ({"instruction": "a", "input": "", "output": "b"}, "alpaca"),
])
def test_detect_format(row, name):
    assert detect_format(row) == name


def test_detect_format_fails_clearly():
    with pytest.raises(PosttrainError, match=r"keys: prompt, answer\); expected messages"):
        detect_format({"prompt": "a", "answer": "b"})


def test_load_conversations_detects_and_reports_file_line(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"instruction": "a", "output": "b"}, "",
                                          {"instruction": "c", "output": "d"}, {"instruction": "e"}])
    loaded = load_conversations(path)
    assert next(loaded) == (1, _msgs(("user", "a"), ("assistant", "b")))
    assert next(loaded) == (3, _msgs(("user", "c"), ("assistant", "d")))
    with pytest.raises(DataError) as info:
        next(loaded)
    assert str(info.value) == f"{path}:4: output: missing; expected a string"


def test_load_conversations_json_array_max_samples_and_directory(tmp_path):
    rows = [{"conversations": [{"from": "human", "value": str(i)}, {"from": "gpt", "value": "x"}]} for i in range(5)]
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.json").write_text(json.dumps(rows[:3], indent=2))
    _jsonl(tmp_path / "dir" / "b.jsonl", rows[3:])
    got = [r["messages"][0]["content"] for _, r in load_conversations(tmp_path / "dir", "sharegpt")]
    assert got == ["0", "1", "2", "3", "4"]
    lines = [line for line, _ in load_conversations(tmp_path / "dir" / "a.json", max_samples=2)]
    assert lines == [2, 14]  # each element spans 12 lines with indent=2


def test_undetectable_first_row_names_file_and_line(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"prompt": "a"}])
    with pytest.raises(DataError, match=rf"^{path}:1: format: cannot tell the data format .*keys: prompt"):
        list(load_conversations(path))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(PosttrainError, match=r"nope.jsonl: no such file$"):
        list(load_conversations(tmp_path / "nope.jsonl"))


@pytest.mark.parametrize("name, mapping, field", [
    ("columns", {"messages": ["conversations"]}, "columns.messages"),
    ("columns", {"system": 1}, "columns.system"),
    ("tags", {"role_tag": {}}, "tags.role_tag"),
    ("tags", ["role"], "tags"),
])
def test_a_columns_or_tags_value_that_is_not_a_name_is_refused_before_reading(tmp_path, name, mapping, field):
    path = _jsonl(tmp_path / "d.jsonl", [{"conversations": [{"from": "human", "value": "q"},
                                                            {"from": "gpt", "value": "a"}]}])
    with pytest.raises(DataError) as info:
        list(load_conversations(path, "sharegpt", **{name: mapping}))
    assert (info.value.line, info.value.field) == (None, field)
