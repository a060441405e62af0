"""Answer conversations, streaming the text as it is generated; shared by `chat` and `serve`.

An `Engine` owns a loaded model and one worker thread that runs every
generation: a model is not safe to run from several threads at once. Requests
wait in line; the worker answers the ones at the front together, in one batch
(`batching.py`), and a request arriving meanwhile joins the running batch when
a row is free; requests that decode differently make batches that take
turns. Callers get a stream of text pieces (transformers'
`TextIteratorStreamer`, or its asyncio twin for the server's event loop), so
nobody blocks the worker: it only ever pushes.

A caller that goes away (a closed HTTP connection, Ctrl-C in the terminal)
cancels its stream; the worker checks that after every token, and skips a
cancelled request still waiting in line, so one lost client never holds up the
others. The server bounds the line: it reads `queued` before it submits, and
`withdraw`s a request that waited too long, which a stream tells by
`out_of_line` (done once the worker has taken it, or it has ended). Prompts
go through the chat template exactly as evaluation renders them
(`evaluation.generation.encode`), with the same decoding settings, so a served
greedy answer is the one `posttrain eval` scores, batched or not.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from typing import Sequence

from transformers import AsyncTextIteratorStreamer, TextIteratorStreamer

from posttrain.errors import PosttrainError
from posttrain.evaluation.generation import GenerationSettings, encode, generation_config, load
from posttrain.serving import DEFAULT_MAX_BATCH_SIZE
from posttrain.serving.batching import TURN_SECONDS, TURN_TOKENS, Batch, Request, batch_key

log = logging.getLogger(__name__)


class PromptError(PosttrainError):
    """The conversation cannot be put to the model: its chat template refuses it (roles that do not alternate,
    a system turn the template has no place for)."""


class ContextLengthError(PromptError):
    """The conversation alone fills the model's context: nothing is left for an answer."""


@dataclass(frozen=True)
class Answer:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop": end of turn or a stop string; "length": max_new_tokens reached


class StopText:
    """Cuts text at the first of some stop strings, fed piece by piece: a piece is held back while it could still
    be the start of a stop string, so no part of one is ever emitted."""

    def __init__(self, stops: Sequence[str] = ()):
        self.stops = [s for s in stops if s]
        self.keep = max((len(s) for s in self.stops), default=1) - 1
        self.pending = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.pending += piece
        found = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if found:
            self.stopped = True
            text, self.pending = self.pending[:min(found)], ""
            return text
        cut = max(len(self.pending) - self.keep, 0)
        text, self.pending = self.pending[:cut], self.pending[cut:]
        return text

    def flush(self) -> str:
        text, self.pending = self.pending, ""
        return text


class _Answering:
    """What both streamer kinds add: the answer's token ids, stop strings applied in the worker thread (so the
    count of tokens is that of the text emitted, whoever reads it and however late), the error if generation
    failed, and the finished `Answer`."""

    def _setup(self, prompt_tokens: int, settings: GenerationSettings, stops: Sequence[str], eos_ids: list[int],
               pieces: bool = True):
        self.prompt_tokens = prompt_tokens
        self.pieces = pieces
        self.settings = settings
        self.eos_ids = set(eos_ids)
        self.stop_text = StopText(stops)
        self.cancelled = threading.Event()
        self.ids: list[int] = []
        self.text = ""
        self.error: BaseException | None = None
        self.answer: Answer | None = None

    def cancel(self) -> None:
        """Stop generating (after the current token), or never start if still waiting in line."""
        self.cancelled.set()

    def left_line(self) -> None:
        """Called (by the worker) once the request is no longer waiting: taken into a batch, or ended."""

    def put(self, value):
        if not (self.skip_prompt and self.next_tokens_are_prompt) and not self.stop_text.stopped:
            self.ids.extend(value.reshape(-1).tolist())
        if self._decodes_as_it_goes:
            super().put(value)

    def end(self):
        self.left_line()
        if not self._decodes_as_it_goes:  # decode the answer once
            self.token_cache, self.print_len = list(self.ids), 0
        super().end()

    @property
    def _decodes_as_it_goes(self) -> bool:
        """Text is needed token by token for a reader of pieces, or to find a stop string; else only at the end."""
        return self.pieces or bool(self.stop_text.stops)

    def on_finalized_text(self, text: str, stream_end: bool = False):
        text = self.stop_text.feed(text)
        if self.stop_text.stopped:
            self.cancelled.set()
        if stream_end:
            text += self.stop_text.flush()
            self.answer = Answer(self.text + text, self.prompt_tokens, len(self.ids), self._finish_reason())
        self.text += text
        if not self.pieces:  # the reader wants the whole answer: one wake-up, not one per piece
            if stream_end:
                super().on_finalized_text(self.text, stream_end)
        elif text or stream_end:
            super().on_finalized_text(text, stream_end)

    def _finish_reason(self) -> str:
        if self.stop_text.stopped or (self.ids and self.ids[-1] in self.eos_ids):
            return "stop"
        return "length" if len(self.ids) >= self.settings.max_new_tokens else "stop"


class TextStream(_Answering, TextIteratorStreamer):
    """Iterate for the answer's text pieces (blocking); then `.answer`. Raises what generation raised."""

    def __next__(self):
        try:
            return super().__next__()
        except StopIteration:
            if self.error is not None:
                raise self.error
            raise


class AsyncTextStream(_Answering, AsyncTextIteratorStreamer):
    """`async for` the answer's text pieces; then `.answer`. Must be made inside the event loop that reads it.
    `out_of_line` is a future of that loop, done once the request no longer waits in line."""

    def _setup(self, *args, **kwargs):
        super()._setup(*args, **kwargs)
        self.out_of_line = self.loop.create_future()

    def left_line(self) -> None:
        try:
            self.loop.call_soon_threadsafe(_resolve, self.out_of_line)
        except RuntimeError:  # its event loop has closed: nobody waits for it
            pass

    async def __anext__(self):
        try:
            return await super().__anext__()
        except StopAsyncIteration:
            if self.error is not None:
                raise self.error
            raise


def _resolve(future) -> None:
    if not future.done():
        future.set_result(None)


class Engine:
    """A model answering conversations on its own worker thread, up to `max_batch_size` of them at once."""

    def __init__(self, model, tokenizer, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size: expected at least 1, got {max_batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.context_length = getattr(model.config, "max_position_embeddings", None)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._pad_id = 0 if pad_id is None else pad_id
        self._waiting: collections.deque[Request] = collections.deque()
        self._ready = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="posttrain-generation", daemon=True)
        self._worker.start()

    @classmethod
    def load(cls, model: str, adapter: str | None = None, *, template: str | None = None,
             dtype: str = "auto", max_batch_size: int = DEFAULT_MAX_BATCH_SIZE) -> "Engine":
        return cls(*load(str(model), None if adapter is None else str(adapter), template=template, dtype=dtype),
                   max_batch_size=max_batch_size)

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        from jinja2.exceptions import TemplateError

        try:
            return encode(self.tokenizer, [messages])[0]
        except TemplateError as e:  # raise_exception() in a template: the client's messages, not the server
            raise PromptError(f"the model's chat template refuses these messages: {e}") from None

    def stream(self, messages: list[dict], settings: GenerationSettings, stop: Sequence[str] = ()) -> TextStream:
        """Queue an answer to `messages`; iterate the result for its text as it is generated."""
        return self._submit(TextStream, messages, settings, stop)

    def stream_async(self, messages: list[dict], settings: GenerationSettings, stop: Sequence[str] = (),
                     pieces: bool = True) -> AsyncTextStream:
        """The asyncio twin of `stream`; with pieces=False the whole text comes as one piece at the end."""
        return self._submit(AsyncTextStream, messages, settings, stop, pieces)

    @property
    def queued(self) -> int:
        """How many requests wait in line (not yet taken into a batch)."""
        with self._ready:
            return len(self._waiting)

    def withdraw(self, stream) -> bool:
        """Take `stream`'s request out of the line and cancel it, if it still waits there; False if the worker
        has taken it already (or it has ended)."""
        with self._ready:
            for request in self._waiting:
                if request.stream is stream:
                    self._waiting.remove(request)
                    break
            else:
                return False
        stream.cancel()
        return True

    def close(self) -> None:
        """Let the worker finish what is queued and end."""
        with self._ready:
            self._closed = True
            self._ready.notify()

    def _submit(self, kind, messages, settings, stop, pieces: bool = True):
        ids = self.prompt_ids(messages)
        if self.context_length is not None:
            room = self.context_length - len(ids)
            if room < 1:
                raise ContextLengthError(f"the conversation is {len(ids)} tokens; the model reads at most "
                                         f"{self.context_length}, with room left for the answer")
            settings = dataclasses.replace(settings, max_new_tokens=min(settings.max_new_tokens, room))
        config = generation_config(self.model, self.tokenizer, settings)
        stream = kind(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stream._setup(len(ids), settings, stop, list(config.eos_token_id or []), pieces)
        stream.next_tokens_are_prompt = False  # the worker hands a stream its answer's tokens only
        with self._ready:
            self._waiting.append(Request(stream, ids, config))
            self._ready.notify()
        return stream

    def _work(self) -> None:
        batches: list[Batch] = []  # the batches started and not finished, in the order of their turns
        last = None  # the batch whose turn it was
        while True:
            with self._ready:
                batches[:] = [batch for batch in batches if batch.rows]
                while not batches and not self._waiting and not self._closed:
                    self._ready.wait()
                if not batches and not self._waiting:
                    return
                last, newcomers = self._turn(batches, last)
            try:
                last.run(newcomers, self._admits(last, batches))
            except Exception as e:  # whatever the batch did not catch itself must not end the worker
                log.exception("a batch failed outside its generation")
                last.fail(e, newcomers)

    def _turn(self, batches: list[Batch], last: Batch | None) -> tuple[Batch, list[Request]]:
        """The batch to run next, and the requests that join it: the last one's turn goes on until it is over
        (TURN_TOKENS and TURN_SECONDS) and another batch waits; then the turn goes to the batch the front of the line
        joins, or starts (a new batch goes first), else to the next started batch."""
        room = self.max_batch_size - sum(len(batch.rows) for batch in batches)
        current = last if any(batch is last for batch in batches) else None
        turn_over = current is not None and current.turn_tokens >= TURN_TOKENS and (
            time.monotonic() - current.turn_started >= TURN_SECONDS)
        if current is not None and not (turn_over and self._others_wait(batches, room)):
            return current, self._take(current, room)
        if current is not None:  # its turn is over: to the back
            batches.remove(current)
            batches.append(current)
        others = [batch for batch in batches if batch is not current]
        chosen = others[0] if others else current
        if self._waiting:
            key = batch_key(self._waiting[0].settings)
            joins = [batch for batch in others if key is not None and batch.key == key]
            if joins:
                chosen = joins[0]
            elif room > 0 and (current is None or key is None or key != current.key):
                chosen = Batch(self.model, self._pad_id, key)
                batches.insert(0, chosen)
        chosen.turn_tokens, chosen.turn_started = 0, time.monotonic()
        return chosen, self._take(chosen, room)

    def _others_wait(self, batches: list[Batch], room: int) -> bool:
        """Whether a batch other than the one running (batches has it) wants a turn: a started one, or one the
        front of the line would start."""
        if len(batches) > 1:
            return True
        if not self._waiting or room < 1:
            return False
        key = batch_key(self._waiting[0].settings)
        return key is None or key != batches[0].key

    def _take(self, batch: Batch, room: int) -> list[Request]:
        """The requests at the front of the line that may join `batch` (those of its key; one, for a seeded
        batch's start), at most `room` of them."""
        taken: list[Request] = []
        while self._waiting and len(taken) < room:
            key = batch_key(self._waiting[0].settings)
            if key != batch.key or (batch.key is None and (batch.rows or taken)):
                break
            taken.append(self._waiting.popleft())
        for request in taken:
            request.stream.left_line()
        return taken

    def _admits(self, batch: Batch, batches: list[Batch]):
        """Whether `batch` should pause, asked after each token with its rows still live and the tokens this run
        made: for the front of the line to join it, or, its turn over, for another batch's turn."""
        others = [other for other in batches if other is not batch]
        others_rows = sum(len(other.rows) for other in others)

        def admit(live: int, made: int) -> bool:
            gone = []  # cancelled at the front of the line: told here, not worth a pause
            with self._ready:
                waiting = self._waiting
                while waiting and waiting[0].stream.cancelled.is_set():
                    gone.append(waiting.popleft())
                front = batch_key(waiting[0].settings) if waiting else False  # False: nobody (None is seeded)
            for request in gone:
                request.finish()
            room = self.max_batch_size - others_rows - live
            if front is not False and room > 0 and batch.key is not None and front == batch.key:
                return True
            if batch.turn_tokens + made < TURN_TOKENS or time.monotonic() - batch.turn_started < TURN_SECONDS:
                return False
            return bool(others) or (front is not False and room > 0)

        return admit
