"""posttrain/serving/server.py and connections.py: no client holds the server. Headers and bodies sent a byte at a
time get a 408 and lose their connection after their timeout (16 such clients at once, while others are answered); a
connection opened and never used is closed; past the queue's limit a request gets a 429 with Retry-After, and one
that waited longer than the queue timeout a 503 (streamed or not), without ever running. Small limits, on 127.0.0.1."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from posttrain.serving.server import create_app
from tests.serving.conftest import running_server

NAME = "tiny-talk"
TIMEOUT = 1.0  # for the headers, and for the body
GOOD = json.dumps({"messages": [{"role": "user", "content": "dose"}], "max_tokens": 2}).encode()


def _post(url: str, body: bytes = GOOD, timeout: float = 30):
    """(status, headers, JSON body) of a chat-completions request."""
    request = urllib.request.Request(url + "/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def _answer(raw: bytes) -> dict:
    """The JSON of a response, or of the last `data:` event of a stream."""
    if raw.startswith(b"data:"):
        raw = [line for line in raw.split(b"\n") if line.startswith(b"data:")][-1][5:]
    return json.loads(raw)


@pytest.fixture(scope="module")
def server(engine):
    app = create_app(engine, NAME, body_timeout=TIMEOUT, max_queue=2, queue_timeout=60)
    with running_server(app, header_timeout=TIMEOUT) as url:
        yield url


def _trickle(port: int, clients: int, head: bytes, body: bytes, every: float = 0.05, limit: float = 10):
    """`clients` connections, each sending `head` at once and then `body` a byte every `every` s (as long as that
    takes); for each, the seconds until the server closed it (None: still open after `limit`) and what it sent."""
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(clients)]
    start = time.monotonic()
    sent, got, ended = [0] * clients, [b""] * clients, [None] * clients
    for s in sockets:
        s.sendall(head)
    while any(end is None for end in ended) and time.monotonic() - start < limit:
        for i, s in enumerate(sockets):
            if ended[i] is not None:
                continue
            if select.select([s], [], [], 0)[0]:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                got[i] += data
                if not data:
                    ended[i] = time.monotonic() - start
            elif sent[i] < len(body):
                try:
                    s.send(body[sent[i]:sent[i] + 1])
                    sent[i] += 1
                except OSError:  # closed on the server's side: what it answered is still to be read
                    sent[i] = len(body)
        time.sleep(every)
    for s in sockets:
        s.close()
    return ended, got


@pytest.mark.parametrize("slow", ["headers", "body"])
def test_slow_clients_get_a_408_and_lose_their_connection(server, slow):
    port = int(server.rsplit(":", 1)[1])
    start = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if slow == "headers":  # 2,000 bytes of headers a byte at a time: 100 s
        head, body = b"", start + b"X-Padding: " + b"a" * 2000 + b"\r\n\r\n"
    else:  # the headers at once, then the body a byte at a time
        head = start + b"Content-Type: application/json\r\nContent-Length: 2000\r\n\r\n"
        body = b'{"messages": [{"role": "user", "content": "' + b"a" * 1950
    answered = []
    clients = ThreadPoolExecutor(1).submit(_trickle, port, 16, head, body)
    time.sleep(0.3)
    while not clients.done():  # meanwhile others are answered
        answered.append(_post(server)[0])
    ended, got = clients.result()
    print(f"\n16 clients sending their {slow} a byte every 0.05 s: closed after {min(ended):.2f} to "
          f"{max(ended):.2f} s (timeout {TIMEOUT:g} s)" if None not in ended else f"\nstill open: {ended}")
    assert None not in ended and max(ended) < TIMEOUT + 2.5
    for response in got:
        assert response.startswith(b"HTTP/1.1 408 ")
        error = json.loads(response.split(b"\r\n\r\n", 1)[1])["error"]
        assert error["code"] == "request_timeout" and error["type"] == "invalid_request_error"
    assert answered and set(answered) == {200}


def test_a_connection_opened_and_never_used_is_closed(server):
    port = int(server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT + 5) as connection:
        start = time.monotonic()
        assert connection.recv(100) == b""
        assert time.monotonic() - start < TIMEOUT + 2.5


def _hold(engine, monkeypatch):
    """Keep the model's next generate waiting until the returned `release` is set; `entered` is set once it waits.
    The batch sizes of every generate go to `sizes`."""
    generate_once = engine.model.generate
    entered, release, sizes = threading.Event(), threading.Event(), []

    def held(*args, **kwargs):
        sizes.append(kwargs["input_ids"].shape[0])
        entered.set()
        release.wait(20)
        return generate_once(*args, **kwargs)

    monkeypatch.setattr(engine.model, "generate", held)
    return entered, release, sizes


def _until(predicate, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def test_past_the_queue_limit_a_request_gets_a_429_with_retry_after(engine, server, monkeypatch):
    entered, release, _ = _hold(engine, monkeypatch)
    with ThreadPoolExecutor(3) as pool:
        try:
            running = pool.submit(_post, server)
            assert entered.wait(10)
            waiting = [pool.submit(_post, server) for _ in range(2)]
            assert _until(lambda: engine.queued == 2)
            status, headers, raw = _post(server)
            assert status == 429 and headers["Retry-After"] == "1"
            error = _answer(raw)["error"]
            assert error["code"] == "queue_full" and "--max-queue" in error["message"] and set(error) == {
                "message", "type", "param", "code"}
        finally:
            release.set()
        assert [future.result(30)[0] for future in [running, *waiting]] == [200] * 3


@pytest.mark.parametrize("stream", [False, True])
def test_a_request_that_waited_past_the_queue_timeout_gets_a_503_and_never_runs(engine, monkeypatch, stream):
    with running_server(create_app(engine, NAME, queue_timeout=TIMEOUT)) as url:
        entered, release, sizes = _hold(engine, monkeypatch)
        with ThreadPoolExecutor(1) as pool:
            try:
                running = pool.submit(_post, url)
                assert entered.wait(10)
                start = time.monotonic()
                status, headers, raw = _post(url, json.dumps({**json.loads(GOOD), "stream": stream}).encode())
                waited = time.monotonic() - start
                assert status == 503 and headers["Retry-After"] and TIMEOUT <= waited < TIMEOUT + 3
                error = _answer(raw)["error"]
                assert error["code"] == "queue_timeout" and error["type"] == "server_error"
                assert engine.queued == 0
            finally:
                release.set()
            assert running.result(30)[0] == 200
        assert sizes == [1]  # the running request alone: the one that timed out never reached the model


def test_headers_over_the_size_limit_get_a_431(server):
    from posttrain.serving.server import MAX_HEADER_BYTES

    port = int(server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: "
                           + b"a" * (MAX_HEADER_BYTES + 1000))
        response = b""
        while chunk := connection.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 431 ")
    assert json.loads(response.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "headers_too_large"
    assert _post(server)[0] == 200


def test_bytes_that_are_not_http_get_an_openai_shaped_400(server):
    port = int(server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"\x00\x01 not http\r\n\r\n")
        response = b""
        while chunk := connection.recv(65536):
            response += chunk
    assert response.startswith(b"HTTP/1.1 400 ")
    assert json.loads(response.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "invalid_http"
