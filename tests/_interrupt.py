"""Simulated interruptions for resume tests."""
from __future__ import annotations

from typing import Any, Callable


def interrupt_on_call(fn: Callable[..., Any], n: int) -> Callable[..., Any]:
    """``fn``, except that its ``n``-th call raises KeyboardInterrupt (every other call runs ``fn``)."""
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == n:
            raise KeyboardInterrupt
        return fn(*args, **kwargs)

    return wrapper
