"""The serving tests' real servers: uvicorn on 127.0.0.1 (a free port), configured as `posttrain serve` runs it."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import uvicorn

from posttrain.serving.server import uvicorn_options


@contextlib.contextmanager
def running_server(app, **options):
    """The base URL of `app` served in a thread, stopped on exit; `options` are `uvicorn_options`' (header_timeout)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5,
                                           **uvicorn_options(**options)))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        listener.close()
    assert not thread.is_alive()
