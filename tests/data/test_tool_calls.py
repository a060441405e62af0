"""Tool use read from LLaMA-Factory's glaive demo, OpenAI rows and alpaca; rendered and masked for SFT."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from posttrain.data.chat import tokenize_conversation
from posttrain.data.dataset_info import load_source, resolve
from posttrain.data.formats import alpaca, load_records, openai, sharegpt
from posttrain.data.records import validate_conversation
from posttrain.errors import ConfigError, DataError, RecordError
from posttrain.models.loading import load_tokenizer
from posttrain.models.templates import CHATML, LLAMA3

LF = Path(__file__).parent / "llamafactory"
GLAIVE = json.loads((LF / "glaive_toolcall_en_demo.json").read_text(encoding="utf-8"))
CALL = {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
RECORD = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"},
                       {"role": "assistant", "content": "", "tool_calls": [CALL]},
                       {"role": "tool", "content": '{"sky": "clear"}'},
                       {"role": "assistant", "content": "Clear skies."}], "tools": [TOOL]}


@pytest.fixture(scope="module")
def glaive():
    (source,) = resolve(LF, "glaive_toolcall_en_demo")
    return [record for _, record in load_source(source)]


def test_glaive_rows_through_dataset_info(glaive):
    assert len(glaive) == len(GLAIVE)
    first = glaive[0]
    schema = json.loads(GLAIVE[0]["tools"])[0]
    assert first["tools"] == [{"type": "function", "function": schema}]
    call = json.loads(GLAIVE[0]["conversations"][3]["value"])
    assert first["messages"][3] == {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "search_recipes", "arguments": call["arguments"]}}]}
    assert first["messages"][4] == {"role": "tool", "content": GLAIVE[0]["conversations"][4]["value"]}
    assert [m["role"] for m in first["messages"]] == ["user", "assistant", "user", "assistant", "tool", "assistant",
                                                      "user", "assistant"]
    assert "tools" not in glaive[1]  # its tools are "[]": no tool list
    assert sum(bool(m.get("tool_calls")) for m in glaive[2]["messages"]) == 3


def _lf_qwen_text(row: dict) -> str:
    """LLaMA-Factory's qwen3_nothink rendering of a glaive row (notes 3.5: formatter.py and tool_utils.py)."""
    tools = "".join("\n" + json.dumps({"type": "function", "function": t}, ensure_ascii=False)
                    for t in json.loads(row["tools"]))
    text = ("<|im_start|>system\n\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n<tools>" + tools +
            "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
            "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
            "<args-json-object>}\n</tool_call><|im_end|>\n")
    for turn in row["conversations"]:
        if turn["from"] == "human":
            text += f"<|im_start|>user\n{turn['value']}<|im_end|>\n"
        elif turn["from"] == "observation":
            text += f"<|im_start|>user\n<tool_response>\n{turn['value']}\n</tool_response><|im_end|>\n"
        elif turn["from"] == "function_call":
            call = json.loads(turn["value"])
            call = json.dumps({"name": call["name"], "arguments": call["arguments"]}, ensure_ascii=False)
            text += f"<|im_start|>assistant\n<tool_call>\n{call}\n</tool_call><|im_end|>\n"
        else:
            text += f"<|im_start|>assistant\n{turn['value']}<|im_end|>\n"
    return text


@pytest.mark.parametrize("markers", [True, False])
def test_rendered_like_llamafactory_and_loss_on_calls_and_answers_only(tiny_model, glaive, markers):
    tokenizer = load_tokenizer(str(tiny_model), template="qwen")
    if not markers:  # the prefix-rendering fallback finds the same turns
        tokenizer.chat_template = re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", CHATML)
    record = glaive[0]
    text = tokenizer.apply_chat_template(record["messages"], tools=record["tools"], tokenize=False)
    assert text == _lf_qwen_text(GLAIVE[0])
    out = tokenize_conversation(tokenizer, record["messages"], tools=record["tools"])
    assert tokenizer.decode(out["input_ids"]) == text
    assert '"name": "search_recipes", "description"' in tokenizer.decode(out["input_ids"])  # the tool list is there
    learned = tokenizer.decode([t for t, label in zip(out["input_ids"], out["labels"]) if label != -100])
    end = "<|im_end|>" if markers else "<|im_end|>\n"
    call = json.loads(GLAIVE[0]["conversations"][3]["value"])
    answers = [t["value"] for t in GLAIVE[0]["conversations"] if t["from"] == "gpt"]
    expected = [answers[0], "<tool_call>\n" + json.dumps(call, ensure_ascii=False) + "\n</tool_call>", *answers[1:]]
    assert learned == "".join(part + end for part in expected)
    assert "tool_response" not in learned and GLAIVE[0]["conversations"][4]["value"] not in learned
    assert '"description"' not in learned  # nor the tool list


def test_template_that_cannot_render_tools_is_an_error(tiny_model):
    tokenizer = load_tokenizer(str(tiny_model))
    tokenizer.chat_template = LLAMA3
    with pytest.raises(ConfigError, match="does not render tools"):
        tokenize_conversation(tokenizer, RECORD["messages"], tools=RECORD["tools"])
    with pytest.raises(ConfigError, match="does not render tool_calls"):
        tokenize_conversation(tokenizer, RECORD["messages"])


def test_chatml_without_tools_renders_as_before(tiny_model):
    tokenizer = load_tokenizer(str(tiny_model))
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert tokenizer.apply_chat_template(messages, tokenize=False) == (
        "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n")
    parallel = {"role": "assistant", "content": "Checking.", "tool_calls": [CALL, CALL]}
    text = tokenizer.apply_chat_template([messages[0], parallel], tools=[TOOL], tokenize=False)
    one = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert text.endswith(f"<|im_start|>assistant\nChecking.\n{one}\n{one}<|im_end|>\n")
    assert text.startswith("<|im_start|>system\n\n\n# Tools\n")


@pytest.mark.parametrize("value,expected", [
    ("search(x)", "expected JSON of a call"),
    ('{"arguments": {}}', 'expected JSON of a call {"name": ..., "arguments": {...}} or a list of them'),
    ('{"name": "f"}', "got {\"name\": \"f\"}"),
    ('{"name": "f", "arguments": [1]}', "arguments: expected an object of arguments, got list"),
    ("[]", "expected a list of calls"),
])
def test_bad_function_call_json_names_the_turn(tmp_path, value, expected):
    row = {"conversations": [{"from": "human", "value": "a"}, {"from": "function_call", "value": value},
                             {"from": "observation", "value": "r"}, {"from": "gpt", "value": "b"}]}
    with pytest.raises(RecordError) as info:
        sharegpt.to_record(row)
    assert info.value.field == "conversations[1].value"
    assert expected in info.value.expected
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:1: conversations\[1\]\.value: expected JSON"):
        list(load_records(path, "sharegpt"))


def test_parallel_calls_and_a_renamed_tools_column():
    calls = [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_weather", "arguments": "{}"}]
    row = {"dialog": [{"from": "human", "value": "a"}, {"from": "function_call", "value": json.dumps(calls)},
                      {"from": "observation", "value": "r1"}, {"from": "observation", "value": "r2"},
                      {"from": "gpt", "value": "b"}], "functions": [TOOL["function"]]}
    record = sharegpt.to_record(row, {"messages": "dialog", "tools": "functions"})
    assert record["tools"] == [TOOL]
    assert [c["function"]["arguments"] for c in record["messages"][1]["tool_calls"]] == [{"city": "Paris"}, {}]
    with pytest.raises(RecordError) as info:
        sharegpt.to_record({**row, "functions": "[{]"}, {"messages": "dialog", "tools": "functions"})
    assert info.value.field == "functions" and "not JSON" in info.value.expected


@pytest.mark.parametrize("module", [sharegpt, openai])
def test_round_trip_keeps_tools_and_calls(module):
    assert module.to_conversation(module.from_conversation(RECORD)) == RECORD


def test_sharegpt_writes_llamafactory_rows():
    row = sharegpt.from_conversation(RECORD)
    assert row["conversations"][2] == {"from": "function_call", "value": json.dumps(CALL["function"])}
    assert row["conversations"][3]["from"] == "observation"
    assert json.loads(row["tools"]) == [TOOL["function"]]
    mixed = {"messages": [RECORD["messages"][1], {"role": "assistant", "content": "Let me look.",
                                                  "tool_calls": [CALL]}]}
    with pytest.raises(RecordError, match="sharegpt cannot hold text and tool calls in one turn"):
        sharegpt.from_conversation(mixed)


def test_openai_rows_with_json_arguments_null_content_and_ids():
    row = {"messages": [{"role": "user", "content": "Weather in Paris?"},
                        {"role": "assistant", "content": None, "tool_calls": [
                            {"id": "call_1", "type": "function",
                             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                        {"role": "tool", "tool_call_id": "call_1", "content": "clear"},
                        {"role": "assistant", "content": "Clear."}],
           "tools": [TOOL], "system": "Be brief."}
    record = openai.to_record(row)
    assert record["messages"][0] == {"role": "system", "content": "Be brief."}
    assert record["messages"][2] == {"role": "assistant", "content": "", "tool_calls": [{**CALL, "id": "call_1"}]}
    assert record["messages"][3] == {"role": "tool", "content": "clear", "tool_call_id": "call_1"}
    assert openai.to_record(openai.from_conversation(record)) == record


def test_alpaca_tools_column():
    row = {"instruction": "Weather in Paris?", "output": "Call get_weather.", "tools": json.dumps([TOOL["function"]])}
    record = alpaca.to_record(row)
    assert record["tools"] == [TOOL]
    assert alpaca.to_record(alpaca.from_conversation(record)) == record


@pytest.mark.parametrize("change,field,expected", [
    (lambda r: r["messages"][1].update(tool_calls=[CALL]), "messages[1].tool_calls",
     "expected tool calls on an assistant turn, not a user one"),
    (lambda r: r["messages"][2]["tool_calls"][0]["function"].pop("name"), "messages[2].tool_calls[0].function.name",
     "missing; expected the function's name"),
    (lambda r: r["messages"][2]["tool_calls"][0]["function"].update(arguments="city=Paris"),
     "messages[2].tool_calls[0].function.arguments", "expected an object of arguments, got text that is not JSON"),
    (lambda r: r.update(tools={"name": "f"}), "tools", "expected a list of function schemas, got dict"),
    (lambda r: r.update(tools=[{"description": "no name"}]), "tools[0].name", "missing; expected the function's name"),
    (lambda r: r["messages"][4].update(weight=0), "messages[4].weight", "a message key posttrain does not read"),
])
def test_bad_tool_shapes_name_the_field(change, field, expected):
    record = json.loads(json.dumps(RECORD))
    change(record)
    with pytest.raises(RecordError) as info:
        validate_conversation(record)
    assert info.value.field == field and info.value.expected.startswith(expected)


@pytest.mark.parametrize("module, row", [
    (alpaca, {"instruction": "a", "output": "b"}),
    (sharegpt, {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}),
    (openai, {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}),
])
@pytest.mark.parametrize("tools, field", [("[{]", "functions"), ([{"description": "no name"}], "functions[0]")])
def test_a_bad_tool_list_is_named_by_the_column_it_came_from(module, row, tools, field):
    with pytest.raises(RecordError) as info:
        module.to_record({**row, "functions": tools}, {"tools": "functions"})
    assert info.value.field.startswith(field) and not info.value.field.startswith("tools"), info.value.field
