"""Rate limits of the API (the `rate_limit` setting: requests a minute, 0 = none).

Each API key may make that many requests in any minute (a moving window: no burst at a window's
edge), and each client address as many with a missing or bad key, so guessing keys is slow; each
webhook key (`webhook` triggers) as many deliveries. Past the limit the answer is 429 with
`Retry-After` (seconds). Runner routes are not limited (runners have their own credentials and
long-poll), nor are forge webhooks (a forge does not send a refused delivery again). Counted in
this process, in memory (the `limits` library): each controller replica counts on its own.
"""

from __future__ import annotations

import math
import threading
import time

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class RateLimited(Exception):
    """Too many requests: the API answers 429 with `Retry-After: wait_s`."""

    def __init__(self, message: str, wait_s: int) -> None:
        super().__init__(message)
        self.wait_s = wait_s


class RateLimiter:
    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._item = RateLimitItemPerMinute(per_minute) if per_minute > 0 else None
        self._limiter = MovingWindowRateLimiter(MemoryStorage()) if per_minute > 0 else None
        self._lock = threading.Lock()
        self.refused = 0  # requests answered 429 (clarity_api_rate_limited_total)

    def hit(self, who: str, what: str) -> None:
        """Count one request of `who` (`key:ID`, `address:IP`, `webhook-key:PREFIX`); RateLimited
        past the limit. `what` names the caller in the message ("API key 'ci-bot'")."""
        if self._item is None or self._limiter is None or self._limiter.hit(self._item, who):
            return
        with self._lock:
            self.refused += 1
        reset = self._limiter.get_window_stats(self._item, who).reset_time
        wait = max(1, math.ceil(reset - time.time()))
        raise RateLimited(f"{what} made {self.per_minute} requests in the last minute, the most the controller "
                          f"takes (setting rate_limit): try again in {wait} s", wait)
