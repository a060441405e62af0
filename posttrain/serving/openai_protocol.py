"""OpenAI's chat-completions protocol as `posttrain serve` speaks it: the checked request and the response shapes.

Kept apart from the HTTP app so each rule about a request can be read (and
tested) without a server: every field an OpenAI client commonly sends is
checked for its type and range, and a bad one becomes an `ApiError` that
names the field (`param`) in OpenAI's error shape, which clients know how to
show. A field this server does not implement (`tools`, `logprobs`,
`response_format`, penalties, ...) is refused unless it asks for nothing,
because ignoring it would hand back an answer the client did not ask for
without telling it; so is a key OpenAI's API does not have (a typo, another
server's extension). Only fields that change nothing about the answer
(`user`, `metadata`, `store`, ...) are accepted and not used.

Decoding is greedy unless a temperature above 0 (or a top_p) is given: unlike
OpenAI's default of temperature 1, so that a served answer is reproducible
and equals what `posttrain eval` generates.
"""

from __future__ import annotations

import reprlib
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from posttrain.errors import PosttrainError
from posttrain.evaluation.generation import GenerationSettings

if TYPE_CHECKING:  # the command line imports this module for its defaults; transformers can wait
    from posttrain.evaluation.generation import GenerationSettings

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
MAX_STOPS = 4
MAX_SEED = 2**32 - 1  # transformers' set_seed seeds numpy too, which takes 0 to 2**32 - 1 only

# OpenAI's fields whose value changes nothing about the answer (bookkeeping on OpenAI's side, or a latency hint):
# accepted and not used.
IGNORED = frozenset({"user", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier",
                     "prediction", "parallel_tool_calls"})
# OpenAI's fields this server does not implement, each with the values that ask for nothing (None is always one):
# any other value is refused, since ignoring it would change the answer behind the client's back.
UNSUPPORTED = {"logprobs": (False,), "top_logprobs": (), "tools": ([],), "tool_choice": ("none",),
               "functions": ([],), "function_call": ("none",), "response_format": ({"type": "text"},),
               "frequency_penalty": (0,), "presence_penalty": (0,), "logit_bias": ({},), "audio": (),
               "modalities": (["text"],), "reasoning_effort": (), "verbosity": (), "web_search_options": ()}
HANDLED = frozenset({"model", "messages", "n", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed",
                     "stream", "stream_options", "stop"})
MESSAGE_KEYS = frozenset({"role", "content"})
STREAM_OPTIONS = frozenset({"include_usage", "include_obfuscation"})  # obfuscation pads OpenAI's chunks: nothing here

# A client's value quoted in an error: bounded however long or deeply nested it is (Python 3.11's Repr takes no
# keywords)
_quote = reprlib.Repr()
_quote.maxlevel, _quote.maxstring, _quote.maxother, _quote.maxlist, _quote.maxdict = 3, 80, 80, 4, 4


class ApiError(Exception):
    """A request the server cannot answer; the client gets `status` and `body()`."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error", headers: dict[str, str] | None = None):
        super().__init__(message)
        # a param is a client's key, which may be any string: a lone surrogate could not be sent as UTF-8
        message, param = _sendable(message), None if param is None else _sendable(param)[:200]
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict]
    settings: GenerationSettings
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False


def _sendable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _invalid(param: str, expected: str, value=None, code: str = "invalid_type") -> ApiError:
    got = "" if value is None else f", got {_quote.repr(value)}"[:200]
    return ApiError(400, f"{param}: expected {expected}{got}", param, code)


def _text(value, param: str) -> str:
    """A string the tokenizer can take: JSON's escapes can spell a lone surrogate (`"\\ud800"`), which is no text."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ApiError(400, f"{param}: not valid Unicode text (a lone surrogate, {value[e.start]!r}, at character "
                       f"{e.start})", param, "invalid_value") from None
    return value


def _name(key: str) -> str:
    return _quote.repr(key)[1:-1]


def _same(value, ok) -> bool:
    """JSON equality: 0 and 0.0 are one number, but false is not 0."""
    if isinstance(value, bool) or isinstance(ok, bool):
        return value is ok
    if isinstance(ok, (int, float)):
        return isinstance(value, (int, float)) and value == ok
    return type(value) is type(ok) and value == ok


def _known_keys(body: dict) -> None:
    """Refuse a key OpenAI's API does not have, and one it has that would change the answer were it ignored."""
    for key, value in body.items():
        if key in HANDLED or key in IGNORED:
            continue
        if key not in UNSUPPORTED:
            raise ApiError(400, f"{_name(key)}: not a chat-completions parameter (unknown keys are refused, "
                           "not ignored)", key, "unknown_parameter")
        if value is not None and not any(_same(value, ok) for ok in UNSUPPORTED[key]):
            raise ApiError(400, f"{key}: not supported by posttrain serve (got {_quote.repr(value)}); leave it out",
                           key, "unsupported_parameter")


def _integer(body: dict, name: str) -> int | None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise _invalid(name, "an integer", value)
    return value


def _number(body: dict, name: str) -> float | None:
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise _invalid(name, "a number", value)
    return value


def _flag(body: dict, name: str, default: bool = False) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _invalid(name, "true or false", value)
    return value


def _messages(value) -> list[dict]:
    if value is None:
        raise ApiError(400, "messages: missing; expected a list of {role, content} objects", "messages",
                       "missing_required_parameter")
    if not isinstance(value, list) or not value:
        raise _invalid("messages", "a non-empty list of {role, content} objects", value)
    messages = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _invalid(where, "an object with role and content", message)
        for key, value in message.items():  # a name, tool calls, audio: the chat template would drop them unseen
            if key not in MESSAGE_KEYS and value is not None:
                raise ApiError(400, f"{where}.{_name(key)}: not supported (a message has a role and a "
                               "content only)", f"{where}.{key}", "unsupported_parameter")
        role, content = message.get("role"), message.get("content")
        if not isinstance(role, str) or role not in ROLES:
            raise _invalid(f"{where}.role", f"one of {', '.join(ROLES)}", role, "invalid_value")
        if not isinstance(content, str):
            raise _invalid(f"{where}.content", "a string (text parts, images and tool calls are not supported)",
                           content)
        messages.append({"role": ROLES[role], "content": _text(content, f"{where}.content")})
    return messages


def _stop(value) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > MAX_STOPS:
        raise _invalid("stop", f"a non-empty string or a list of at most {MAX_STOPS} of them", value)
    return tuple(_text(s, "stop") for s in stops)


def _seed(body: dict) -> int | None:
    seed = _integer(body, "seed")
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise _invalid("seed", f"an integer from 0 to {MAX_SEED}", seed, "invalid_value")
    return seed


def parse_chat_request(body, served_model: str, max_tokens_limit: int) -> ChatRequest:
    """The request as posttrain runs it, or an ApiError naming the first bad field."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", None, "invalid_type")
    _known_keys(body)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _invalid("model", "a string", model)
    if model is not None and model != served_model:
        raise ApiError(404, f"model: {_quote.repr(model)} is not served here; this server serves {served_model!r}",
                       "model", "model_not_found")
    messages = _messages(body.get("messages"))
    n = _integer(body, "n")
    if n is not None and n != 1:
        raise _invalid("n", "1 (one answer per request)", n, "invalid_value")
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = _integer(body, name)
    if max_tokens is not None and not 1 <= max_tokens <= max_tokens_limit:
        raise _invalid(name, f"an integer from 1 to {max_tokens_limit} (this server's --max-tokens-limit)",
                       max_tokens, "invalid_value")
    temperature, top_p = _number(body, "temperature"), _number(body, "top_p")
    if temperature is not None and not 0 <= temperature <= 2:
        raise _invalid("temperature", "a number from 0 to 2", temperature, "invalid_value")
    if top_p is not None and not 0 < top_p <= 1:
        raise _invalid("top_p", "a number above 0 and at most 1", top_p, "invalid_value")
    if temperature == 0:
        top_p = None  # temperature 0 is greedy decoding, whatever top_p says
    stream_options = body.get("stream_options")
    stream_options = {} if stream_options is None else stream_options
    if not isinstance(stream_options, dict):
        raise _invalid("stream_options", "an object", stream_options)
    unknown = sorted(stream_options.keys() - STREAM_OPTIONS)
    if unknown:
        raise ApiError(400, f"stream_options.{_name(unknown[0])}: not a stream option (include_usage is)",
                       f"stream_options.{unknown[0]}", "unknown_parameter")
    try:
        settings = GenerationSettings(max_new_tokens=max_tokens or max_tokens_limit, batch_size=1,
                                      temperature=temperature, top_p=top_p, seed=_seed(body))
    except PosttrainError as e:
        raise ApiError(400, str(e), None, "invalid_value") from None
    return ChatRequest(messages, settings, _stop(body.get("stop")), _flag(body, "stream"),
                       _flag(stream_options, "include_usage"))


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion(id_: str, model: str, answer) -> dict:
    return {"id": id_, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                         "logprobs": None, "finish_reason": answer.finish_reason}],
            "usage": usage(answer.prompt_tokens, answer.completion_tokens)}


def chunk(id_: str, model: str, created: int, delta: dict, finish_reason: str | None = None,
          choices: bool = True) -> dict:
    """One `chat.completion.chunk`; with choices=False the closing usage chunk (its choices are empty)."""
    return {"id": id_, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
            if choices else []}


def model_list(model: str, created: int) -> dict:
    return {"object": "list", "data": [model_card(model, created)]}


def model_card(model: str, created: int) -> dict:
    return {"id": model, "object": "model", "created": created, "owned_by": "posttrain"}
