"""An OpenAI-compatible HTTP API over one posttrain model: `GET /v1/models`, `POST /v1/chat/completions`.

For trying a trained model from any OpenAI client, and for small single-process
deployments; for throughput on GPUs (paged attention, several GPUs) serve the
exported model with vLLM. Concurrent requests are answered together in batches
by the `Engine`'s worker; the event loop never blocks on the model, so requests
are read, checked and rejected while a generation runs. A request body is
read up to `max_request_bytes` and no further (413), `max_tokens` above
`max_tokens_limit` is refused (400, never silently cut), and every error is a
JSON body in OpenAI's shape. A client that disconnects cancels its
generation, and its place in the batch goes to the next request in line.

Nothing a client does may hold the server: headers get `header_timeout`
(connections.py) and the body `body_timeout` (408), the line for the model is
`max_queue` long (429 with Retry-After past it), and a request that waited
`queue_timeout` without starting is taken out of it (503), so a burst or a
stuck batch answers its clients instead of keeping them, and their sockets,
without end.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from posttrain.serving import (DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_QUEUE,
                               DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_TOKENS_LIMIT, DEFAULT_QUEUE_TIMEOUT)
from posttrain.serving.connections import header_limited_protocol
from posttrain.serving.inference import ContextLengthError, Engine, PromptError
from posttrain.serving.openai_protocol import (ApiError, ChatRequest, chunk, completion, completion_id, model_card,
                                               model_list, parse_chat_request, usage)

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 64 * 1024  # a chat request's headers are a few hundred bytes; h11's own default is 16 KiB
KEEP_ALIVE_TIMEOUT = 5  # seconds an idle connection stays open between requests (uvicorn's default)
RETRY_AFTER = 1  # seconds a refused client is told to wait: a place in line frees with every answer
CLOSE = {"Connection": "close"}  # after a refusal before the whole body was read: its rest must not be a request


class _CancellingStream(StreamingResponse):
    """A streamed answer whose generation is cancelled however the response ends: finished, the client gone
    (Starlette cancels the sending task), or a failed send."""

    def __init__(self, content, stream, **kwargs):
        super().__init__(content, **kwargs)
        self.answer_stream = stream

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.answer_stream.cancel()


def _error(e: ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)


def _check_json_type(request: Request) -> None:
    """A body sent as another type is most likely not the JSON the client meant (a form, a file): say so. Without a
    Content-Type the body is read as JSON, as a hand-written client may leave it out."""
    kind = request.headers.get("content-type")
    if kind is not None and kind.split(";", 1)[0].strip().lower() != "application/json":
        raise ApiError(415, f"Content-Type {kind[:100]!r}: expected application/json", None,
                       "unsupported_media_type", headers=CLOSE)


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    try:
        return await asyncio.wait_for(_read_body_upto(request, limit), timeout)
    except TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {timeout:g} s (--body-timeout)", None,
                       "request_timeout", headers=CLOSE) from None


def _parse_json(raw: bytes):
    try:
        return json.loads(raw, parse_constant=_not_json)
    except RecursionError:
        raise ApiError(400, "the request body is not valid JSON: nested too deeply", None, "invalid_json") from None
    except (UnicodeDecodeError, ValueError) as e:  # ValueError: JSONDecodeError, and an integer of 4,300+ digits
        raise ApiError(400, f"the request body is not valid JSON: {str(e)[:200]}", None, "invalid_json") from None


def _not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON value")


async def _read_body_upto(request: Request, limit: int) -> bytes:
    too_large = ApiError(413, f"the request body is larger than this server's limit of {limit} bytes "
                              "(--max-request-bytes)", None, "request_too_large", headers=CLOSE)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def _cancel_when_gone(request: Request, stream, every: float = 0.2) -> None:
    """A client waiting for a whole answer has no stream whose sending fails when it leaves: look now and then."""
    while not await request.is_disconnected():
        await asyncio.sleep(every)
    stream.cancel()


async def _wait_in_line(engine: Engine, stream, request: Request, timeout: float) -> None:
    """Until the worker takes the request (or it ends); past `timeout` it is taken out of the line (503). Before a
    stream's first byte, so that a request that never started can still get a status of its own."""
    watcher = asyncio.create_task(_cancel_when_gone(request, stream))
    try:
        await asyncio.wait_for(asyncio.shield(stream.out_of_line), timeout)
    except TimeoutError:
        if engine.withdraw(stream):
            raise ApiError(503, f"the request waited {timeout:g} s for the model without starting "
                                "(--queue-timeout); try again later", None, "queue_timeout", "server_error",
                           {"Retry-After": str(RETRY_AFTER)}) from None
    except asyncio.CancelledError:  # the server stopping: the request must not run after all
        stream.cancel()
        raise
    finally:
        watcher.cancel()


def _sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def create_app(engine: Engine, served_model_name: str, *, max_tokens_limit: int = DEFAULT_MAX_TOKENS_LIMIT,
               max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, body_timeout: float = DEFAULT_BODY_TIMEOUT,
               max_queue: int = DEFAULT_MAX_QUEUE, queue_timeout: float = DEFAULT_QUEUE_TIMEOUT) -> FastAPI:
    """The ASGI app answering for `engine` under the name `served_model_name`; run it with uvicorn."""
    app = FastAPI(title="posttrain serve", docs_url=None, redoc_url=None, openapi_url=None)
    started = int(time.time())

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return _error(ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", None, code))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception):  # a bug of ours: still an answer a client can read
        return _error(ApiError(500, f"the server failed: {type(exc).__name__}", None, None, "server_error"))

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        return model_list(served_model_name, started)

    @app.get("/v1/models/{model:path}")
    async def model(model: str):
        if model != served_model_name:
            return _error(ApiError(404, f"model {model!r} is not served here; this server serves "
                                        f"{served_model_name!r}", "model", "model_not_found"))
        return model_card(served_model_name, started)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            _check_json_type(request)
            body = _parse_json(await _read_body(request, max_request_bytes, body_timeout))
            chat = parse_chat_request(body, served_model_name, max_tokens_limit)
            if engine.queued >= max_queue:
                raise ApiError(429, f"{max_queue} requests already wait for the model, this server's limit "
                                    "(--max-queue); try again shortly", None, "queue_full", "rate_limit_error",
                               {"Retry-After": str(RETRY_AFTER)})
            stream = engine.stream_async(chat.messages, chat.settings, chat.stop, pieces=chat.stream)
            await _wait_in_line(engine, stream, request, queue_timeout)
        except ApiError as e:
            return _error(e)
        except ClientDisconnect:  # gone before its request was read: nobody to answer
            return JSONResponse({}, status_code=400)
        except ContextLengthError as e:
            return _error(ApiError(400, f"messages: {e}", "messages", "context_length_exceeded"))
        except PromptError as e:
            return _error(ApiError(400, f"messages: {e}", "messages", "invalid_messages"))
        if chat.stream:
            return _CancellingStream(_events(stream, chat), stream, media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        watcher = asyncio.create_task(_cancel_when_gone(request, stream))
        try:
            async for _ in stream:
                pass
        except Exception as e:  # a failed generation is the server's fault, not the request's
            log.exception("generation failed")
            return _error(ApiError(500, f"generation failed: {e}", None, None, "server_error"))
        finally:
            watcher.cancel()
            stream.cancel()  # this task cancelled (the server stopping): the generation must not run on
        return completion(completion_id(), served_model_name, stream.answer)

    async def _events(stream, chat: ChatRequest):
        id_, created = completion_id(), int(time.time())
        yield _sse(chunk(id_, served_model_name, created, {"role": "assistant", "content": ""}))
        try:
            async for piece in stream:
                yield _sse(chunk(id_, served_model_name, created, {"content": piece}))
        except Exception as e:
            log.exception("generation failed")
            yield _sse(ApiError(500, f"generation failed: {e}", None, None, "server_error").body())
            return
        answer = stream.answer
        yield _sse(chunk(id_, served_model_name, created, {}, answer.finish_reason))
        if chat.include_usage:
            yield _sse({**chunk(id_, served_model_name, created, {}, choices=False),
                        "usage": usage(answer.prompt_tokens, answer.completion_tokens)})
        yield _sse("[DONE]")

    return app


def uvicorn_options(header_timeout: float = DEFAULT_HEADER_TIMEOUT) -> dict:
    """uvicorn's settings for this server (its `Config`'s keywords): the headers' limits, no websockets."""
    # h11's own limit (where httptools is missing) above ours, so that ours answers first, in OpenAI's shape
    return dict(http=header_limited_protocol(header_timeout, MAX_HEADER_BYTES), ws="none",
                timeout_keep_alive=KEEP_ALIVE_TIMEOUT, h11_max_incomplete_event_size=4 * MAX_HEADER_BYTES)


def serve(engine: Engine, served_model_name: str, *, host: str = "127.0.0.1", port: int = 8000,
          max_tokens_limit: int = DEFAULT_MAX_TOKENS_LIMIT, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
          header_timeout: float = DEFAULT_HEADER_TIMEOUT, body_timeout: float = DEFAULT_BODY_TIMEOUT,
          max_queue: int = DEFAULT_MAX_QUEUE, queue_timeout: float = DEFAULT_QUEUE_TIMEOUT,
          log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM end it cleanly)."""
    import uvicorn

    app = create_app(engine, served_model_name, max_tokens_limit=max_tokens_limit,
                     max_request_bytes=max_request_bytes, body_timeout=body_timeout, max_queue=max_queue,
                     queue_timeout=queue_timeout)
    uvicorn.run(app, host=host, port=port, log_level=log_level, **uvicorn_options(header_timeout))
