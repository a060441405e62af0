"""Talking to a trained model: one loaded model answering chats (inference.py), several at once
(batching.py), the OpenAI-compatible HTTP API over it (openai_protocol.py, server.py), the terminal chat
(chat.py), and a vLLM server's command (vllm.py)."""

# The server's limits by default, here so that `posttrain serve --help` shows them without loading the server
DEFAULT_MAX_TOKENS_LIMIT = 1024
DEFAULT_MAX_REQUEST_BYTES = 1_000_000
DEFAULT_MAX_BATCH_SIZE = 16
