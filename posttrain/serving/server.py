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

from posttrain.serving.inference import ContextLengthError, Engine, PromptError
from posttrain.serving import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_TOKENS_LIMIT
from posttrain.serving.openai_protocol import (ApiError, ChatRequest, chunk, completion, completion_id, model_card,
                                       model_list, parse_chat_request, usage)

log = logging.getLogger(__name__)


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
    return JSONResponse(e.body(), status_code=e.status)


async def _read_body(request: Request, limit: int) -> bytes:
    too_large = ApiError(413, f"the request body is larger than this server's limit of {limit} bytes "
                              "(--max-request-bytes)", None, "request_too_large")
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


def _sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def create_app(engine: Engine, served_model_name: str, *, max_tokens_limit: int = DEFAULT_MAX_TOKENS_LIMIT,
               max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> FastAPI:
    """The ASGI app answering for `engine` under the name `served_model_name`; run it with uvicorn."""
    app = FastAPI(title="posttrain serve", docs_url=None, redoc_url=None, openapi_url=None)
    started = int(time.time())

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return _error(ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", None, code))

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
            raw = await _read_body(request, max_request_bytes)
            try:
                body = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ApiError(400, f"the request body is not valid JSON: {e}", None, "invalid_json") from None
            chat = parse_chat_request(body, served_model_name, max_tokens_limit)
            stream = engine.stream_async(chat.messages, chat.settings, chat.stop, pieces=chat.stream)
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


def serve(engine: Engine, served_model_name: str, *, host: str = "127.0.0.1", port: int = 8000,
          max_tokens_limit: int = DEFAULT_MAX_TOKENS_LIMIT, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
          log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM end it cleanly)."""
    import uvicorn

    app = create_app(engine, served_model_name, max_tokens_limit=max_tokens_limit,
                     max_request_bytes=max_request_bytes)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
