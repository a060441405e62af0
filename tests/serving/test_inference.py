"""posttrain/serving/inference.py: streamed answers equal batch generation, stop strings, cancelling, one generation at a
time, errors reach the reader and the worker goes on."""

from __future__ import annotations

import asyncio
import threading

import pytest

from posttrain.evaluation.generation import GenerationSettings, generate
from posttrain.serving.inference import ContextLengthError, StopText

GREEDY = GenerationSettings(max_new_tokens=16, batch_size=1)


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("stops, pieces, expected", [
    ((), ["ab", "c"], "abc"),
    (("END",), ["abc E", "N", "D more"], "abc "),
    (("END",), ["abc EN", "d"], "abc ENd"),  # a near miss is emitted in full at the end
    (("x", "bc"), ["a", "b", "c", "x"], "a"),  # the earliest stop wins
    (("ab",), ["ab"], ""),
])
def test_stop_text_cuts_before_the_first_stop(stops, pieces, expected):
    stop = StopText(stops)
    text = "".join(stop.feed(piece) for piece in pieces)
    assert text + (stop.flush() if not stop.stopped else "") == expected
    assert stop.stopped == any(s in "".join(pieces) for s in stops)


def test_streamed_answer_is_the_batch_generated_one(engine):
    prompts = [_user("the patient dose"), _user("heart risk week"),
               [{"role": "system", "content": "be brief"}, {"role": "user", "content": "heart risk week"}]]
    expected = generate(engine.model, engine.tokenizer, prompts, GREEDY)
    assert len(set(expected)) == 3
    for prompt, answer in zip(prompts, expected):
        stream = engine.stream(prompt, GREEDY)
        pieces = list(stream)
        assert len(pieces) > 1 and "".join(pieces) == answer == stream.answer.text
        assert stream.answer.prompt_tokens == len(engine.prompt_ids(prompt))
        assert stream.answer.completion_tokens == 16 and stream.answer.finish_reason == "length"


def test_a_stop_string_ends_the_answer_before_it(engine):
    full = "".join(engine.stream(_user("the patient dose"), GREEDY))
    stop = full[5:8]
    stream = engine.stream(_user("the patient dose"), GREEDY, stop=[stop])
    text = "".join(stream)
    assert text == full[:full.index(stop)] and stream.answer.finish_reason == "stop"
    assert stream.answer.completion_tokens < 16


def test_one_generation_at_a_time_in_order_and_a_cancelled_one_is_skipped(engine, monkeypatch):
    active, most, started = [0], [0], []
    lock, gate = threading.Lock(), threading.Event()
    generate_once = engine.model.generate

    def counting(*args, **kwargs):
        gate.wait(10)  # the worker holds the first request until all are queued and one is cancelled
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
            started.append(kwargs["input_ids"].shape[1])
        try:
            return generate_once(*args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(engine.model, "generate", counting)
    prompts = [_user(" ".join(["dose"] * (i + 1))) for i in range(4)]
    streams = [engine.stream(prompt, GREEDY) for prompt in prompts]
    streams[2].cancel()
    gate.set()
    texts = [("".join(stream), stream.answer) for stream in streams]
    assert most[0] == 1
    lengths = [len(engine.prompt_ids(p)) for p in prompts]
    assert started == [lengths[0], lengths[1], lengths[3]]  # the cancelled one never ran
    assert texts[2][0] == "" and texts[2][1].completion_tokens == 0
    assert all(answer.completion_tokens == 16 for _, answer in texts[:2] + texts[3:])


def test_a_failed_generation_raises_for_its_reader_and_the_next_one_runs(engine, monkeypatch):
    generate_once = engine.model.generate
    calls = []

    def failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("device lost")
        return generate_once(*args, **kwargs)

    monkeypatch.setattr(engine.model, "generate", failing_once)
    failed, after = engine.stream(_user("dose"), GREEDY), engine.stream(_user("dose"), GREEDY)
    with pytest.raises(RuntimeError, match="device lost"):
        list(failed)
    assert len("".join(after)) > 0 and after.answer.completion_tokens == 16


def test_the_async_stream_gives_the_same_text(engine):
    async def read():
        stream = engine.stream_async(_user("heart risk week"), GREEDY)
        return "".join([piece async for piece in stream]), stream.answer

    text, answer = asyncio.run(read())
    assert text == generate(engine.model, engine.tokenizer, [_user("heart risk week")], GREEDY)[0] == answer.text


def test_a_conversation_longer_than_the_context_is_refused(engine, monkeypatch):
    monkeypatch.setattr(engine, "context_length", 20)
    with pytest.raises(ContextLengthError, match="at most 20"):
        engine.stream(_user("dose " * 30), GREEDY)
    stream = engine.stream(_user("dose"), GREEDY)  # the answer gets the room left
    assert "".join(stream) and stream.answer.completion_tokens == 20 - stream.answer.prompt_tokens
    assert stream.answer.finish_reason == "length"
