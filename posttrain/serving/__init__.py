"""Talking to a trained model: one loaded model answering chats (inference.py), the OpenAI-compatible HTTP
API over it (openai_protocol.py, server.py), the terminal chat (chat.py), and a vLLM server's command
(vllm.py)."""
