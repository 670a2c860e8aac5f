"""Per-token rate limit: a token bucket per token id, in process memory."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Allow ``burst`` requests at once and ``rate_per_s`` [1/s] sustained, per key."""

    def __init__(
        self, *, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """Take one request for ``key``; return 0 if allowed, else the seconds to wait [s]."""
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate_per_s


def retry_after_header(wait_s: float) -> str:
    """Format a wait [s] as a ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(wait_s)))
