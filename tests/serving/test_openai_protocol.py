"""posttrain/serving/openai_protocol.py: what a chat-completions request may hold, and the error each bad field gets."""

from __future__ import annotations

import pytest

from posttrain.serving.openai_protocol import ApiError, parse_chat_request

MESSAGES = [{"role": "user", "content": "hi"}]


def _parse(**fields):
    return parse_chat_request({"messages": MESSAGES, **fields}, "tiny", 64)


def test_a_minimal_request_is_greedy_with_the_limit_as_length():
    request = parse_chat_request({"messages": MESSAGES}, "tiny", 64)
    assert request.messages == MESSAGES and not request.stream and request.stop == ()
    assert request.settings.max_new_tokens == 64 and not request.settings.sampling


def test_the_usual_fields_are_taken():
    request = _parse(model="tiny", max_tokens=8, temperature=0.7, top_p=0.9, seed=3, n=1, stream=True,
                     stream_options={"include_usage": True}, stop="END", user="someone", presence_penalty=0)
    settings = request.settings
    assert (settings.max_new_tokens, settings.temperature, settings.top_p, settings.seed) == (8, 0.7, 0.9, 3)
    assert settings.sampling and request.stream and request.include_usage and request.stop == ("END",)
    assert _parse(max_tokens=8, max_completion_tokens=5).settings.max_new_tokens == 5
    assert not _parse(temperature=0, top_p=0.5).settings.sampling  # temperature 0 is greedy, whatever top_p says


def test_developer_is_a_system_message():
    messages = [{"role": "developer", "content": "be brief"}, *MESSAGES]
    assert _parse(messages=messages).messages[0] == {"role": "system", "content": "be brief"}


@pytest.mark.parametrize("fields, status, param, code", [
    ({"messages": None}, 400, "messages", "missing_required_parameter"),
    ({"messages": []}, 400, "messages", "invalid_type"),
    ({"messages": "hi"}, 400, "messages", "invalid_type"),
    ({"messages": ["hi"]}, 400, "messages[0]", "invalid_type"),
    ({"messages": [{"role": "bot", "content": "hi"}]}, 400, "messages[0].role", "invalid_value"),
    ({"messages": [{"role": "user"}]}, 400, "messages[0].content", "invalid_type"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}, 400, "messages[0].content",
     "invalid_type"),
    ({"model": "gpt-4o"}, 404, "model", "model_not_found"),
    ({"model": 3}, 400, "model", "invalid_type"),
    ({"n": 2}, 400, "n", "invalid_value"),
    ({"max_tokens": 0}, 400, "max_tokens", "invalid_value"),
    ({"max_tokens": -5}, 400, "max_tokens", "invalid_value"),
    ({"max_tokens": 65}, 400, "max_tokens", "invalid_value"),
    ({"max_completion_tokens": 1000}, 400, "max_completion_tokens", "invalid_value"),
    ({"max_tokens": "8"}, 400, "max_tokens", "invalid_type"),
    ({"max_tokens": True}, 400, "max_tokens", "invalid_type"),
    ({"max_tokens": 8.0}, 400, "max_tokens", "invalid_type"),
    ({"temperature": "hot"}, 400, "temperature", "invalid_type"),
    ({"temperature": 3}, 400, "temperature", "invalid_value"),
    ({"top_p": 0}, 400, "top_p", "invalid_value"),
    ({"seed": 1.5}, 400, "seed", "invalid_type"),
    ({"stream": "yes"}, 400, "stream", "invalid_type"),
    ({"stream_options": []}, 400, "stream_options", "invalid_type"),
    ({"stop": ["a", ""]}, 400, "stop", "invalid_type"),
    ({"stop": ["a", "b", "c", "d", "e"]}, 400, "stop", "invalid_type"),
    ({"messages": [{"role": "user", "content": "a\ud800b"}]}, 400, "messages[0].content", "invalid_value"),
    ({"stop": "\udc00"}, 400, "stop", "invalid_value"),
    ({"messages": [{"role": ["user"], "content": "hi"}]}, 400, "messages[0].role", "invalid_value"),
    ({"seed": 1e30}, 400, "seed", "invalid_type"),
    ({"seed": 10**30}, 400, "seed", "invalid_value"),
    ({"seed": -1}, 400, "seed", "invalid_value"),
    ({"seed": 2**32}, 400, "seed", "invalid_value"),
    ({"seed": "3"}, 400, "seed", "invalid_type"),
    ({"logprobs": True}, 400, "logprobs", "unsupported_parameter"),
    ({"top_logprobs": 0}, 400, "top_logprobs", "unsupported_parameter"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, 400, "tools", "unsupported_parameter"),
    ({"tool_choice": "auto"}, 400, "tool_choice", "unsupported_parameter"),
    ({"functions": [{"name": "f"}]}, 400, "functions", "unsupported_parameter"),
    ({"function_call": "auto"}, 400, "function_call", "unsupported_parameter"),
    ({"response_format": {"type": "json_schema", "json_schema": {}}}, 400, "response_format", "unsupported_parameter"),
    ({"frequency_penalty": 1}, 400, "frequency_penalty", "unsupported_parameter"),
    ({"presence_penalty": -0.5}, 400, "presence_penalty", "unsupported_parameter"),
    ({"logit_bias": {"50256": -100}}, 400, "logit_bias", "unsupported_parameter"),
    ({"modalities": ["text", "audio"]}, 400, "modalities", "unsupported_parameter"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, 400, "audio", "unsupported_parameter"),
    ({"reasoning_effort": "low"}, 400, "reasoning_effort", "unsupported_parameter"),
    ({"verbosity": "low"}, 400, "verbosity", "unsupported_parameter"),
    ({"web_search_options": {}}, 400, "web_search_options", "unsupported_parameter"),
    ({"logprobs": 0}, 400, "logprobs", "unsupported_parameter"),  # false, not 0
    ({"top_k": 40}, 400, "top_k", "unknown_parameter"),
    ({"temprature": 0.5}, 400, "temprature", "unknown_parameter"),
    ({"messages": [{"role": "user", "content": "hi", "name": "ann"}]}, 400, "messages[0].name",
     "unsupported_parameter"),
    ({"messages": [{"role": "assistant", "content": "", "tool_calls": [{"id": "1"}]}]}, 400, "messages[0].tool_calls",
     "unsupported_parameter"),
    ({"stream_options": {"include_usage": True, "chunk_size": 4}}, 400, "stream_options.chunk_size",
     "unknown_parameter"),
])
def test_a_bad_field_is_named_in_openais_error_shape(fields, status, param, code):
    with pytest.raises(ApiError) as caught:
        _parse(**fields)
    error = caught.value
    assert (error.status, error.param, error.code) == (status, param, code)
    body = error.body()["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["type"] == "invalid_request_error"
    assert body["message"].startswith(param)


def test_a_body_that_is_not_an_object_is_refused():
    with pytest.raises(ApiError, match="JSON object"):
        parse_chat_request([MESSAGES], "tiny", 64)


def test_fields_that_ask_for_nothing_or_change_nothing_are_accepted():
    request = _parse(logprobs=False, top_logprobs=None, tools=[], tool_choice="none", functions=None,
                     response_format={"type": "text"}, frequency_penalty=0.0, presence_penalty=0, logit_bias={},
                     modalities=["text"], audio=None, user="ann", metadata={"k": "v"}, store=True,
                     service_tier="auto", parallel_tool_calls=True, prediction=None, seed=2**32 - 1,
                     stream_options={"include_usage": True, "include_obfuscation": False},
                     messages=[{"role": "user", "content": "hi", "name": None}])
    assert request.messages == MESSAGES and request.settings.seed == 2**32 - 1 and request.include_usage


def test_an_error_quoting_a_huge_or_deep_value_stays_short_and_sendable():
    deep = []
    for _ in range(900):
        deep = [deep]
    for value in (deep, "x" * 100_000, {"\ud800" * 10: 1}, "\ud800"):
        with pytest.raises(ApiError) as caught:
            _parse(messages=[{"role": value, "content": "hi"}])
        assert len(caught.value.message) < 300 and caught.value.message.encode("utf-8")
    with pytest.raises(ApiError) as caught:
        _parse(**{"\ud800" * 1000: 1})
    error = caught.value.body()["error"]
    assert error["param"].encode("utf-8") and len(error["param"]) <= 200 and error["code"] == "unknown_parameter"
