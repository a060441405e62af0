"""posttrain/serving/inference.py and batching.py: streamed answers equal batch generation, stop strings, cancelling;
requests waiting together are answered in one batch with the answers each gets alone, a newcomer joins a running
batch, a cancelled row frees its place; errors reach the readers and the worker goes on."""

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


class _Recorder:
    """Wraps engine.model.generate: the batch size and input width of each call, at most one call at a time, and
    (with `hold`) the first call kept waiting until `release()`, with `entered` set once it has begun."""

    def __init__(self, engine, monkeypatch, hold: bool = False):
        self.generate_once, self.calls, self.active, self.most = engine.model.generate, [], 0, 0
        self.lock, self.gate, self.entered = threading.Lock(), threading.Event(), threading.Event()
        if not hold:
            self.gate.set()
        monkeypatch.setattr(engine.model, "generate", self)

    def release(self):
        self.gate.set()

    def __call__(self, *args, **kwargs):
        self.entered.set()
        self.gate.wait(10)
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
            self.calls.append(tuple(kwargs["input_ids"].shape))
        try:
            return self.generate_once(*args, **kwargs)
        finally:
            with self.lock:
                self.active -= 1


def _prompts(n: int) -> list[list[dict]]:
    words = ["dose", "heart", "risk", "week", "patient"]
    return [_user(" ".join(words[j % 5] for j in range(i, 2 * i + 1))) for i in range(n)]


def test_requests_waiting_together_are_answered_in_one_batch_as_each_would_be_alone(engine, monkeypatch):
    prompts = _prompts(6)
    limits = [16, 5, 12, 16, 9, 14]
    alone = [generate(engine.model, engine.tokenizer, [p], GenerationSettings(max_new_tokens=n, batch_size=1))[0]
             for p, n in zip(prompts, limits)]
    assert len(set(alone)) == 6
    calls = _Recorder(engine, monkeypatch, hold=True)
    streams = [engine.stream(p, GenerationSettings(max_new_tokens=n, batch_size=1)) for p, n in zip(prompts, limits)]
    calls.release()
    assert ["".join(stream) for stream in streams] == alone
    assert [stream.answer.completion_tokens for stream in streams] == limits
    assert calls.most == 1 and max(batch for batch, _ in calls.calls) > 1
    assert sum(batch for batch, _ in calls.calls) < 2 * len(prompts)  # not one after the other


@pytest.mark.parametrize("keeps_cache", [True, False], ids=["cache kept", "prefilled again"])
def test_a_newcomer_joins_the_running_batch_and_a_cancelled_one_never_runs(engine, monkeypatch, keeps_cache):
    from posttrain.serving import batching

    if not keeps_cache:  # as for a model with sliding-window layers
        monkeypatch.setattr(batching, "_reusable", lambda cache, length: False)
    prompts = _prompts(4)
    alone = [generate(engine.model, engine.tokenizer, [p], GREEDY)[0] for p in prompts]
    calls = _Recorder(engine, monkeypatch, hold=True)
    first = engine.stream(prompts[0], GREEDY)
    assert calls.entered.wait(10)  # the worker runs the first alone (held at the start of its generate)
    later = [engine.stream(p, GREEDY) for p in prompts[1:]]
    later[1].cancel()
    calls.release()
    texts = ["".join(stream) for stream in [first] + later]
    assert texts[0] == alone[0] and texts[1] == alone[1] and texts[3] == alone[3]
    assert texts[2] == "" and later[1].answer.completion_tokens == 0
    assert [batch for batch, _ in calls.calls] == [1, 3]  # the first paused after a token; the cancelled one skipped
    assert calls.most == 1


def test_a_request_cancelled_while_waiting_does_not_pause_the_running_batch(engine, monkeypatch):
    calls = _Recorder(engine, monkeypatch, hold=True)
    running = engine.stream(_user("dose"), GenerationSettings(max_new_tokens=24, batch_size=1))
    assert calls.entered.wait(10)
    waiting = engine.stream(_user("heart"), GREEDY)
    waiting.cancel()
    calls.release()
    assert "".join(waiting) == "" and waiting.answer.completion_tokens == 0
    assert "".join(running) and running.answer.completion_tokens == 24
    assert [batch for batch, _ in calls.calls] == [1]  # one generate: no pause for a request nobody waits for


def test_a_cancelled_row_frees_its_place_for_the_next_in_line(talkative_model, monkeypatch):
    from posttrain.serving.inference import Engine

    engine = Engine.load(str(talkative_model), max_batch_size=2)
    try:
        prompts = _prompts(3)
        long = GenerationSettings(max_new_tokens=200, batch_size=1)
        calls = _Recorder(engine, monkeypatch, hold=True)
        running = [engine.stream(p, long) for p in prompts[:2]]
        assert calls.entered.wait(10)
        waiting = engine.stream(prompts[2], GREEDY)
        calls.release()
        next(iter(running[1]))
        running[1].cancel()
        assert "".join(waiting) == generate(engine.model, engine.tokenizer, [prompts[2]], GREEDY)[0]
        assert not running[0].answer  # the long answer still going when the one that took the free place ended
        assert "".join(running[0]) and running[0].answer.completion_tokens == 200
        assert calls.calls[1][0] == 2  # the survivor and the newcomer
    finally:
        engine.close()


def test_requests_that_decode_differently_are_not_batched_and_keep_their_order(engine, monkeypatch):
    sampled = GenerationSettings(max_new_tokens=8, batch_size=1, temperature=0.8)
    seeded = GenerationSettings(max_new_tokens=8, batch_size=1, temperature=0.8, seed=3)
    short = GenerationSettings(max_new_tokens=8, batch_size=1)
    calls = _Recorder(engine, monkeypatch, hold=True)
    streams = [engine.stream(_user("dose"), short)]
    assert calls.entered.wait(10)
    for settings in (short, sampled, sampled, seeded, seeded, short):
        streams.append(engine.stream(_user("dose"), settings))
    calls.release()
    answers = ["".join(stream) for stream in streams]
    # the first with the greedy one behind it; the two sampled; each seeded alone; the last greedy
    assert [batch for batch, _ in calls.calls] == [1, 2, 2, 1, 1, 1]
    assert answers[4] == answers[5]  # a seed means the same answer, batched server or not


def test_a_failed_generation_raises_for_its_readers_and_the_next_one_runs(engine, monkeypatch):
    generate_once = engine.model.generate
    calls = []

    def failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("device lost")
        return generate_once(*args, **kwargs)

    monkeypatch.setattr(engine.model, "generate", failing_once)
    failed = engine.stream(_user("dose"), GREEDY)
    with pytest.raises(RuntimeError, match="device lost"):
        list(failed)
    after = engine.stream(_user("dose"), GREEDY)
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


def test_a_reader_that_cannot_be_told_does_not_leave_the_others_of_its_batch_waiting(engine, monkeypatch):
    calls = _Recorder(engine, monkeypatch, hold=True)
    generate_once = calls.generate_once

    def failing(*args, **kwargs):
        raise RuntimeError("device lost")

    calls.generate_once = failing
    gone, waiting = engine.stream(_user("dose"), GREEDY), engine.stream(_user("heart"), GREEDY)

    def closed_loop():
        raise RuntimeError("Event loop is closed")

    gone.end = closed_loop  # what an async reader whose event loop has gone raises
    calls.release()
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(pytest.raises(RuntimeError, list, waiting)), daemon=True)
    reader.start()
    reader.join(10)
    assert outcome and "device lost" in str(outcome[0].value)
    calls.generate_once = generate_once
    assert "".join(engine.stream(_user("dose"), GREEDY))  # the worker goes on



def _finish_times(streams) -> list[threading.Thread]:
    """A reader thread per stream, each recording (in `stream.finished_at`) when its answer ended."""
    import time

    def read(stream):
        "".join(stream)
        stream.finished_at = time.monotonic()

    readers = [threading.Thread(target=read, args=(stream,), daemon=True) for stream in streams]
    for reader in readers:
        reader.start()
    return readers


@pytest.mark.parametrize("long, count, length", [({}, 5, 256), ({"temperature": 0.8}, 5, 256),
                                                 ({"temperature": 0.8, "seed": 7}, 3, 96)],
                         ids=["greedy", "sampled", "seeded"])
def test_a_short_request_behind_long_ones_finishes_long_before_them(engine, monkeypatch, long, count, length):
    """Long answers (five of 256 tokens; three of 96 seeded ones, each of which runs alone), then a greedy one of 4:
    behind greedy ones it joins their batch at once; behind sampled or seeded ones (other batches) it waits for a turn
    of theirs, not for them to end (it waited for all of them before batches took turns)."""
    import time

    from posttrain.serving import inference

    forward, config = engine.model.forward, inference.generation_config

    def slowed(*args, **kwargs):  # so that scheduling, not the machine's speed, decides what ends first
        time.sleep(0.002)
        return forward(*args, **kwargs)

    def without_end_of_turn(*args):  # every answer as long as asked for
        made = config(*args)
        made.suppress_tokens = list(made.eos_token_id)
        return made

    monkeypatch.setattr(engine.model, "forward", slowed)
    monkeypatch.setattr(inference, "generation_config", without_end_of_turn)
    monkeypatch.setattr(engine, "context_length", None)
    settings = GenerationSettings(max_new_tokens=length, batch_size=1, **long)
    streams = [engine.stream(p, settings) for p in _prompts(count)]
    readers = _finish_times(streams)
    deadline = time.monotonic() + 20
    while min(len(stream.ids) for stream in streams) < 8 and time.monotonic() < deadline:
        time.sleep(0.002)
    submitted = time.monotonic()
    short = engine.stream(_user("heart dose"), GenerationSettings(max_new_tokens=4, batch_size=1))
    readers += _finish_times([short])
    for reader in readers:
        reader.join(60)
    assert [stream.answer.completion_tokens for stream in streams + [short]] == [length] * count + [4]
    short_took, long_took = short.finished_at - submitted, min(s.finished_at for s in streams) - submitted
    print(f"\nbehind {long or 'greedy'}: short (4 tokens) {short_took:.3f} s; the long ones ({length}) ended "
          f"{long_took:.3f} to {max(s.finished_at for s in streams) - submitted:.3f} s after the short was sent")
    assert short_took < long_took / 4


def test_a_seeded_answer_is_the_same_when_its_batch_takes_turns(engine, monkeypatch):
    from posttrain.serving import inference

    seeded = GenerationSettings(max_new_tokens=48, batch_size=1, temperature=0.9, seed=11)
    alone = engine.stream(_user("heart dose"), seeded)
    alone_text = "".join(alone)
    monkeypatch.setattr(inference, "TURN_TOKENS", 4)
    monkeypatch.setattr(inference, "TURN_SECONDS", 0)
    calls = _Recorder(engine, monkeypatch, hold=True)
    first = engine.stream(_user("risk week"), GenerationSettings(max_new_tokens=48, batch_size=1))
    assert calls.entered.wait(10)
    streams = [engine.stream(_user("heart dose"), seeded), engine.stream(_user("dose"), GREEDY)]
    calls.release()
    texts = ["".join(stream) for stream in [first, *streams]]
    assert texts[1] == alone_text and alone.answer.completion_tokens == streams[0].answer.completion_tokens
    assert texts[0] == generate(engine.model, engine.tokenizer, [_user("risk week")],
                                GenerationSettings(max_new_tokens=48, batch_size=1))[0]
    assert len(calls.calls) > 4  # the batches took turns: each paused and went on several times
