"""Talking to a trained model: one loaded model answering chats (inference.py), several at once
(batching.py), the OpenAI-compatible HTTP API over it (openai_protocol.py, server.py, connections.py), the
terminal chat (chat.py), and a vLLM server's command (vllm.py)."""

# The server's limits by default, here so that `posttrain serve --help` shows them without loading the server
DEFAULT_MAX_TOKENS_LIMIT = 1024
DEFAULT_MAX_REQUEST_BYTES = 1_000_000
DEFAULT_MAX_BATCH_SIZE = 16
DEFAULT_HEADER_TIMEOUT = 30.0  # seconds for a request's headers, from its first byte (or the connection's opening)
DEFAULT_BODY_TIMEOUT = 30.0  # seconds for its body, once the headers are in
DEFAULT_MAX_QUEUE = 64  # requests waiting for the model (not yet in a batch); more get a 429
DEFAULT_QUEUE_TIMEOUT = 600.0  # seconds a request may wait for the model before it gets a 503
