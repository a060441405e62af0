"""posttrain/serving/server.py: the real server (uvicorn on 127.0.0.1, a free port) answering an OpenAI client as greedy
generation would, streaming or not; bad requests get OpenAI-shaped 4xx errors and the server goes on; concurrent
requests are answered together, each as it would be alone; a client gone mid-answer frees the queue."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from posttrain.evaluation.generation import GenerationSettings, generate
from posttrain.serving.server import create_app
from tests.serving.conftest import running_server

NAME = "tiny-talk"
LIMIT = 4000
MAX_BYTES = 250_000  # room for 100,000 nested lists


@pytest.fixture(scope="module")
def server(engine):
    """The base URL of a running server; stopped after the module's tests."""
    with running_server(create_app(engine, NAME, max_tokens_limit=LIMIT, max_request_bytes=MAX_BYTES)) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="x", max_retries=0, timeout=30)


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _expected(engine, prompts, max_tokens):
    return generate(engine.model, engine.tokenizer, prompts, GenerationSettings(max_new_tokens=max_tokens))


def _post(server, body: bytes, path="/v1/chat/completions", content_type="application/json"):
    request = urllib.request.Request(server + path, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_models_lists_the_served_model(client):
    assert [model.id for model in client.models.list()] == [NAME]
    assert client.models.retrieve(NAME).owned_by == "posttrain"


def test_an_answer_streamed_or_not_is_the_greedy_generation(engine, client):
    messages = [{"role": "system", "content": "be brief"}, *_user("the patient dose")]
    expected = _expected(engine, [messages], 12)[0]
    response = client.chat.completions.create(model=NAME, messages=messages, max_tokens=12)
    assert response.object == "chat.completion" and response.model == NAME and response.id.startswith("chatcmpl-")
    [choice] = response.choices
    assert choice.message.role == "assistant" and choice.message.content == expected and expected
    assert choice.finish_reason == "length"
    prompt_tokens = len(engine.prompt_ids(messages))
    assert (response.usage.prompt_tokens, response.usage.completion_tokens, response.usage.total_tokens) == (
        prompt_tokens, 12, prompt_tokens + 12)

    chunks = list(client.chat.completions.create(model=NAME, messages=messages, max_tokens=12, stream=True,
                                                 stream_options={"include_usage": True}))
    assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"} and len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices]
    assert len([d for d in deltas if d]) > 1 and "".join(deltas) == expected
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12


def test_a_stop_string_cuts_the_answer(engine, client):
    full = _expected(engine, [_user("heart risk week")], 16)[0]
    response = client.chat.completions.create(model=NAME, messages=_user("heart risk week"), max_tokens=16,
                                              stop=[full[4:7]])
    assert response.choices[0].message.content == full[:full.index(full[4:7])]
    assert response.choices[0].finish_reason == "stop"


GOOD = json.dumps({"messages": _user("dose"), "max_tokens": 2}).encode()


@pytest.mark.parametrize("body, status, param", [
    (b'{"messages": [', 400, None),
    (b"\xff\xfe", 400, None),
    (json.dumps({"model": NAME}).encode(), 400, "messages"),
    (json.dumps({"messages": []}).encode(), 400, "messages"),
    (json.dumps({"messages": [{"role": "robot", "content": "hi"}]}).encode(), 400, "messages[0].role"),
    (json.dumps({"messages": [{"role": "user", "content": 5}]}).encode(), 400, "messages[0].content"),
    (json.dumps({"messages": _user("hi"), "n": 2}).encode(), 400, "n"),
    (json.dumps({"messages": _user("hi"), "max_tokens": LIMIT + 1}).encode(), 400, "max_tokens"),
    (json.dumps({"messages": _user("hi"), "max_tokens": -1}).encode(), 400, "max_tokens"),
    (json.dumps({"messages": _user("hi"), "temperature": "warm"}).encode(), 400, "temperature"),
    (json.dumps({"messages": _user("hi"), "model": "gpt-4o"}).encode(), 404, "model"),
    (json.dumps({"messages": _user("x" * MAX_BYTES)}).encode(), 413, None),
    # each of these was a 500 (in plain text for the first)
    (b"[" * 100_000 + b"]" * 100_000, 400, None),  # RecursionError in the JSON parser
    (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', 400, "messages[0].content"),  # a lone surrogate
    (b'{"messages": [{"role": "user", "content": "hi"}], "stop": ["\\udfff"]}', 400, "stop"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "seed": 1e30, "temperature": 0.5}', 400, "seed"),
    (json.dumps({"messages": _user("hi"), "seed": 10**30, "temperature": 0.5}).encode(), 400, "seed"),
    (json.dumps({"messages": _user("hi"), "seed": -1, "temperature": 0.5}).encode(), 400, "seed"),
    (json.dumps({"messages": _user("hi"), "seed": 2**32, "temperature": 0.5}).encode(), 400, "seed"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "seed": 1' + b"0" * 5000 + b"}", 400, None),
    (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', 400, None),
    (json.dumps({"messages": [{"role": [], "content": "hi"}]}).encode(), 400, "messages[0].role"),
    # not implemented: refused, not ignored
    (json.dumps({"messages": _user("hi"), "logprobs": True}).encode(), 400, "logprobs"),
    (json.dumps({"messages": _user("hi"), "top_logprobs": 3}).encode(), 400, "top_logprobs"),
    (json.dumps({"messages": _user("hi"), "tools": [{"type": "function", "function": {"name": "f"}}]}).encode(),
     400, "tools"),
    (json.dumps({"messages": _user("hi"), "tool_choice": "required"}).encode(), 400, "tool_choice"),
    (json.dumps({"messages": _user("hi"), "response_format": {"type": "json_object"}}).encode(), 400,
     "response_format"),
    (json.dumps({"messages": _user("hi"), "frequency_penalty": 0.5}).encode(), 400, "frequency_penalty"),
    (json.dumps({"messages": _user("hi"), "n": 3}).encode(), 400, "n"),
    (json.dumps({"messages": _user("hi"), "top_k": 5}).encode(), 400, "top_k"),  # not OpenAI's
    (json.dumps({"messages": [{"role": "user", "content": "hi", "name": "ann"}]}).encode(), 400, "messages[0].name"),
])
def test_a_bad_request_gets_an_openai_error_and_the_server_goes_on(server, body, status, param):
    code, answer = _post(server, body)
    assert code == status
    assert set(answer["error"]) == {"message", "type", "param", "code"} and answer["error"]["param"] == param
    assert answer["error"]["message"] and answer["error"]["type"] == "invalid_request_error"
    code, answer = _post(server, GOOD)
    assert code == 200 and answer["choices"][0]["message"]["content"]


REFUSING_TEMPLATE = ("{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not "
                     "supported') }}{% endif %}{{ m.content }}{% endfor %}")


def test_messages_the_chat_template_refuses_get_a_400_not_a_500(engine, server, monkeypatch):
    monkeypatch.setattr(engine.tokenizer, "chat_template", REFUSING_TEMPLATE)
    body = json.dumps({"messages": [{"role": "system", "content": "s"}, *_user("hi")], "max_tokens": 4}).encode()
    code, answer = _post(server, body)
    assert code == 400 and answer["error"]["code"] == "invalid_messages" and answer["error"]["param"] == "messages"
    assert "System role not supported" in answer["error"]["message"]
    monkeypatch.undo()
    code, answer = _post(server, GOOD)
    assert code == 200 and answer["choices"][0]["message"]["content"]


def test_an_unknown_path_is_an_openai_shaped_404(server):
    code, answer = _post(server, GOOD, path="/v1/completions")
    assert code == 404 and answer["error"]["code"] == "not_found"


def test_concurrent_requests_are_batched_and_answered_as_each_alone(engine, client, monkeypatch):
    active, most, batches, lock = [0], [0], [], threading.Lock()
    generate_once = engine.model.generate

    def counting(*args, **kwargs):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
            batches.append(kwargs["input_ids"].shape[0])
        try:
            return generate_once(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    prompts = [_user(" ".join(["risk", "dose", "heart", "week"][:i % 4 + 1] * (i + 1))) for i in range(6)]
    expected = _expected(engine, prompts, 10)
    monkeypatch.setattr(engine.model, "generate", counting)

    def ask(i: int) -> str:
        if i % 2:
            stream = client.chat.completions.create(model=NAME, messages=prompts[i], max_tokens=10, stream=True)
            return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        return client.chat.completions.create(model=NAME, messages=prompts[i], max_tokens=10).choices[0].message.content

    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(ask, range(6), timeout=60))
    assert answers == expected and len(set(expected)) > 3
    assert most[0] == 1 and max(batches) > 1


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_gone_mid_answer_does_not_hold_up_the_queue(engine, server, monkeypatch, stream):
    lengths, steps = [], []
    eos = {engine.tokenizer.eos_token_id, engine.model.generation_config.eos_token_id}
    generate_once, forward = engine.model.generate, engine.model.forward

    def recording(*args, **kwargs):
        output = generate_once(*args, **kwargs)
        sequences = output.sequences
        lengths.append((sequences.shape[1] - kwargs["input_ids"].shape[1], sequences[0, -1].item()))
        return output

    def slow_forward(*args, **kwargs):  # the full answer would take over 20 s
        steps.append(1)
        time.sleep(0.005)
        return forward(*args, **kwargs)

    monkeypatch.setattr(engine.model, "generate", recording)
    monkeypatch.setattr(engine.model, "forward", slow_forward)
    body = json.dumps({"messages": _user("the patient"), "max_tokens": LIMIT, "stream": stream}).encode()
    port = int(server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                           b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        deadline = time.monotonic() + 10
        while len(steps) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(steps) >= 5, "the generation did not start"
    start = time.monotonic()
    code, answer = _post(server, GOOD)
    assert code == 200 and answer["choices"][0]["message"]["content"]
    assert time.monotonic() - start < 10
    cut_length, last_token = lengths[0]  # finished before the next began (whose record may still be on its way)
    assert 4 <= cut_length < LIMIT and last_token not in eos  # stopped by the cancel, not by the model


def test_fields_that_ask_for_nothing_are_accepted(engine, server):
    body = json.dumps({"messages": _user("dose"), "max_tokens": 2, "logprobs": False, "tools": [],
                       "tool_choice": "none", "response_format": {"type": "text"}, "frequency_penalty": 0.0,
                       "presence_penalty": 0,
                       "top_logprobs": None, "user": "ann", "metadata": {"run": "1"}, "store": False,
                       "seed": 2**32 - 1, "stream_options": None}).encode()
    code, answer = _post(server, body)
    assert code == 200 and answer["choices"][0]["message"]["content"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_sent_as_json_is_refused(server, content_type):
    code, answer = _post(server, GOOD, content_type=content_type)
    assert code == 415 and answer["error"]["code"] == "unsupported_media_type"
    assert "application/json" in answer["error"]["message"] and answer["error"]["type"] == "invalid_request_error"
    code, answer = _post(server, GOOD, content_type="application/json; charset=utf-8")
    assert code == 200 and answer["choices"][0]["message"]["content"]


def test_a_body_sent_without_a_content_type_is_read_as_json(server):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", int(server.rsplit(":", 1)[1]), timeout=30)
    connection.request("POST", "/v1/chat/completions", GOOD)
    response = connection.getresponse()
    assert response.status == 200 and json.loads(response.read())["choices"][0]["message"]["content"]
    connection.close()


def test_a_failure_of_the_server_itself_is_an_openai_shaped_500(engine, server, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(engine, "stream_async", broken)
    code, answer = _post(server, GOOD)
    assert code == 500 and answer["error"]["type"] == "server_error" and "RuntimeError" in answer["error"]["message"]
