"""`posttrain serve`: an OpenAI-compatible HTTP API over one model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from posttrain.cli.chat import MODEL_HELP
from posttrain.cli.common import user_errors
from posttrain.serving import (DEFAULT_BODY_TIMEOUT, DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_QUEUE,
                               DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_TOKENS_LIMIT, DEFAULT_QUEUE_TIMEOUT)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@user_errors
def serve_command(
    model: Path = typer.Option(..., "--model", help=MODEL_HELP),
    adapter: Optional[Path] = typer.Option(None, "--adapter", help="A LoRA adapter directory to put on --model."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface; there is "
                             "no authentication)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535),
    max_tokens_limit: int = typer.Option(DEFAULT_MAX_TOKENS_LIMIT, "--max-tokens-limit", min=1,
                                         help="Largest max_tokens a request may ask for (more is a 400); also the "
                                         "answer length when a request gives none."),
    max_request_bytes: int = typer.Option(DEFAULT_MAX_REQUEST_BYTES, "--max-request-bytes", min=1,
                                          help="Largest request body (more is a 413)."),
    served_model_name: Optional[str] = typer.Option(None, "--served-model-name", help="The model name clients "
                                                    "send and /v1/models lists (default: --model as given)."),
    template: Optional[str] = typer.Option(None, "--template", help="A chat template (chatml, qwen, llama3, "
                                           "mistral) for a tokenizer without one."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, bf16, fp16 or fp32."),
    max_batch_size: int = typer.Option(DEFAULT_MAX_BATCH_SIZE, "--max-batch-size", min=1,
                                       help="Most requests answered together in one batch (1: one at a time)."),
    # the limits below default to None, "the server's own", so that only those given are passed on
    header_timeout: Optional[float] = typer.Option(None, "--header-timeout", min=0.001, help="Seconds a request's "
                                                   "headers may take (more: 408) "
                                                   f"(default {DEFAULT_HEADER_TIMEOUT:g})"),
    body_timeout: Optional[float] = typer.Option(None, "--body-timeout", min=0.001, help="Seconds a request's body "
                                                 "may take once its headers are in (more: 408) "
                                                 f"(default {DEFAULT_BODY_TIMEOUT:g})"),
    max_queue: Optional[int] = typer.Option(None, "--max-queue", min=1, help="Most requests waiting for the model "
                                            f"beyond the batch (more: 429) (default {DEFAULT_MAX_QUEUE})"),
    queue_timeout: Optional[float] = typer.Option(None, "--queue-timeout", min=0.001, help="Seconds a request may "
                                                  "wait for the model before it starts (more: 503) "
                                                  f"(default {DEFAULT_QUEUE_TIMEOUT:g})"),
):
    """Serve a model over HTTP with OpenAI's API (GET /v1/models, POST /v1/chat/completions, streaming too),
    answering concurrent requests together in batches; for GPU throughput at scale use `vllm serve` on the
    exported model."""
    from posttrain.serving.inference import Engine
    from posttrain.serving.server import serve

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    engine = Engine.load(str(model), None if adapter is None else str(adapter), template=template, dtype=dtype,
                         max_batch_size=max_batch_size)
    name = served_model_name or str(model)
    if host not in LOCAL_HOSTS:
        err.print(f"[yellow]listening on {host}: anyone who can reach it may use the model (no authentication)"
                  "[/yellow]")
    err.print(f"serving {name} at http://{host}:{port}/v1 (Ctrl-C stops)")
    limits = dict(header_timeout=header_timeout, body_timeout=body_timeout, max_queue=max_queue,
                  queue_timeout=queue_timeout)
    try:
        serve(engine, name, host=host, port=port, max_tokens_limit=max_tokens_limit,
              max_request_bytes=max_request_bytes, **{k: v for k, v in limits.items() if v is not None})
    finally:
        engine.close()
