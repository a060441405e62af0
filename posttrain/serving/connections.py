"""uvicorn's HTTP protocol with a deadline and a size limit on each request's headers.

uvicorn times a connection only while it idles between two requests
(`timeout_keep_alive`, from the end of a response to the next byte): a client
that opens a connection, or starts a request, and then sends its headers a
byte at a time holds that connection, and the memory and file descriptor that
go with it, for as long as it likes; a few hundred such clients and nobody else
gets in. Headers come before the app is called, so the app cannot time them:
this protocol, given to uvicorn as its `http` class, gives each request's
headers `header_timeout` seconds, counted from the connection's opening or the
request's first byte, and `max_header_bytes` bytes. Past either the client gets
a 408 or a 431 in OpenAI's error shape and the connection is closed (as does
a request that is not HTTP, which uvicorn answers in plain text). The body's
deadline is the app's (server.py), which reads the body.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from posttrain.serving.openai_protocol import ApiError

REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}


def header_limited_protocol(header_timeout: float, max_header_bytes: int) -> type:
    """uvicorn's own HTTP protocol (httptools, or h11 without it) with these limits on every request's headers."""

    class HeaderLimitedProtocol(AutoHTTPProtocol):
        def connection_made(self, transport) -> None:
            self._header_clock = None
            self._header_bytes = 0
            super().connection_made(transport)
            self._start_header_clock()

        def connection_lost(self, exc) -> None:
            self._stop_header_clock()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            before = self.cycle
            between = self._between_requests()
            if between and self._header_clock is None:  # the first byte of a request on a kept-alive connection
                self._start_header_clock()
            super().data_received(data)
            if self.cycle is not before:  # the protocol made a request of the headers: they are in
                self._stop_header_clock()
            elif between and not self.transport.is_closing():
                self._header_bytes += len(data)
                if self._header_bytes > max_header_bytes:
                    self._refuse(431, f"the request's headers are larger than this server's limit of "
                                      f"{max_header_bytes} bytes", "headers_too_large")

        def send_400_response(self, msg: str) -> None:  # what uvicorn answers bytes that are not HTTP: plain text
            self._refuse(400, f"not a valid HTTP request: {msg}", "invalid_http")

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _start_header_clock(self) -> None:
            self._stop_header_clock()
            self._header_bytes = 0
            self._header_clock = self.loop.call_later(header_timeout, self._headers_late)

        def _stop_header_clock(self) -> None:
            if self._header_clock is not None:
                self._header_clock.cancel()
                self._header_clock = None

        def _headers_late(self) -> None:
            self._header_clock = None
            if self.transport.is_closing() or not self._between_requests():
                return
            if not self._header_bytes:  # a connection opened and never used: nobody to answer
                self.transport.close()
                return
            self._refuse(408, f"the request's headers did not arrive within {header_timeout:g} s "
                              "(--header-timeout)", "request_timeout")

        def _refuse(self, status: int, message: str, code: str) -> None:
            """Answer without the app (there is no request to give it yet) and close the connection."""
            self._stop_header_clock()
            body = json.dumps(ApiError(status, message, None, code).body()).encode()
            head = (f"HTTP/1.1 {status} {REASONS[status]}\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
            self.transport.write(head + body)
            self.transport.close()

    return HeaderLimitedProtocol
