"""How the installed transformers takes a KV cache in `forward`.

transformers renamed the keyword `past_key_values` to `cache` (deprecated in 5.24, removed in 5.40); the supported
range spans both. The name is probed once per model class from the forward signature (the deprecation decorator
keeps it via `functools.wraps`), never per call, and the old name is used only where the new one does not exist.
"""
from __future__ import annotations

import functools
import inspect
from typing import Any


@functools.cache
def _cache_param(cls: type) -> str:
    params = inspect.signature(cls.forward).parameters
    if "cache" in params:
        return "cache"
    assert "past_key_values" in params, f"{cls.__name__}.forward takes neither cache= nor past_key_values="
    return "past_key_values"


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """`{name: cache}` for `model(...)`, with the keyword this transformers version expects for this model."""
    return {_cache_param(type(model)): cache}
