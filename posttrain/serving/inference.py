"""Answer one conversation at a time, streaming the text as it is generated; shared by `chat` and `serve`.

An `Engine` owns a loaded model and one worker thread that runs every
generation, in the order asked, one at a time: a model is not safe to run from
several threads at once, and on one CPU or GPU running two generations side by
side is no faster than one after the other. Callers get a stream of text
pieces (transformers' `TextIteratorStreamer`, or its asyncio twin for the
server's event loop), so nobody blocks the worker: it only ever pushes.

A caller that goes away (a closed HTTP connection, Ctrl-C in the terminal)
cancels its stream; the worker checks that after every token, and skips a
cancelled request still waiting in line, so one lost client never holds up the
queue. Prompts go through the chat template exactly as evaluation renders them
(`evaluation.generation.encode`), with the same decoding settings, so a served
greedy answer is the one `posttrain eval` scores.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Sequence

from transformers import AsyncTextIteratorStreamer, StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from posttrain.errors import PosttrainError
from posttrain.evaluation.generation import GenerationSettings, encode, generation_config, load

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


class _Cancelled(StoppingCriteria):
    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class _Answering:
    """What both streamer kinds add: the answer's token ids, stop strings applied in the worker thread (so the
    count of tokens is that of the text emitted, whoever reads it and however late), the error if generation
    failed, and the finished `Answer`."""

    def _setup(self, prompt_tokens: int, settings: GenerationSettings, stops: Sequence[str], eos_ids: list[int]):
        self.prompt_tokens = prompt_tokens
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

    def put(self, value):
        if not (self.skip_prompt and self.next_tokens_are_prompt) and not self.stop_text.stopped:
            self.ids.extend(value.reshape(-1).tolist())
        super().put(value)

    def on_finalized_text(self, text: str, stream_end: bool = False):
        text = self.stop_text.feed(text)
        if self.stop_text.stopped:
            self.cancelled.set()
        if stream_end:
            text += self.stop_text.flush()
            self.answer = Answer(self.text + text, self.prompt_tokens, len(self.ids), self._finish_reason())
        self.text += text
        if text or stream_end:
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
    """`async for` the answer's text pieces; then `.answer`. Must be made inside the event loop that reads it."""

    async def __anext__(self):
        try:
            return await super().__anext__()
        except StopAsyncIteration:
            if self.error is not None:
                raise self.error
            raise


class Engine:
    """A model answering conversations one at a time on its own worker thread."""

    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer
        self.context_length = getattr(model.config, "max_position_embeddings", None)
        self._jobs: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="posttrain-generation", daemon=True)
        self._worker.start()

    @classmethod
    def load(cls, model: str, adapter: str | None = None, *, template: str | None = None,
             dtype: str = "auto") -> "Engine":
        return cls(*load(str(model), None if adapter is None else str(adapter), template=template, dtype=dtype))

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        from jinja2.exceptions import TemplateError

        try:
            return encode(self.tokenizer, [messages])[0]
        except TemplateError as e:  # raise_exception() in a template: the client's messages, not the server
            raise PromptError(f"the model's chat template refuses these messages: {e}") from None

    def stream(self, messages: list[dict], settings: GenerationSettings, stop: Sequence[str] = ()) -> TextStream:
        """Queue an answer to `messages`; iterate the result for its text as it is generated."""
        return self._submit(TextStream, messages, settings, stop)

    def stream_async(self, messages: list[dict], settings: GenerationSettings,
                     stop: Sequence[str] = ()) -> AsyncTextStream:
        return self._submit(AsyncTextStream, messages, settings, stop)

    def close(self) -> None:
        """Let the worker finish what is queued and end."""
        self._jobs.put(None)

    def _submit(self, kind, messages, settings, stop):
        ids = self.prompt_ids(messages)
        if self.context_length is not None:
            room = self.context_length - len(ids)
            if room < 1:
                raise ContextLengthError(f"the conversation is {len(ids)} tokens; the model reads at most "
                                         f"{self.context_length}, with room left for the answer")
            settings = dataclasses.replace(settings, max_new_tokens=min(settings.max_new_tokens, room))
        config = generation_config(self.model, self.tokenizer, settings)
        stream = kind(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stream._setup(len(ids), settings, stop, list(config.eos_token_id or []))
        self._jobs.put((stream, ids, config))
        return stream

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self._generate(*job)
            except Exception:  # a reader that can no longer be told (its event loop closed) must not end the worker
                log.exception("a generation's reader could not be told how it ended")

    def _generate(self, stream: _Answering, ids: list[int], config) -> None:
        import torch
        from transformers import set_seed

        if stream.cancelled.is_set():
            stream.end()
            return
        try:
            if stream.settings.seed is not None:
                set_seed(stream.settings.seed)
            device = next(self.model.parameters()).device
            input_ids = torch.tensor([ids], device=device)
            with torch.inference_mode():
                self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                    generation_config=config, streamer=stream,
                                    stopping_criteria=StoppingCriteriaList([_Cancelled(stream.cancelled)]))
        except Exception as e:  # the reader must hear of it, and the next request must still run
            stream.error = e
            stream.end()
