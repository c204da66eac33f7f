"""Streaming through a bounded attention-sink KV cache: the cache and the decoder."""
from .cache import SinkCache
from .generate import chat_ids, generate, generate_batch

__all__ = ["SinkCache", "chat_ids", "generate", "generate_batch"]
