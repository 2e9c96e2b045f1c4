"""When and how long to wait before trying a registry request again.

Retried: connection failures (refused, reset, timed out, cut mid-response) and the answers
408, 429, 500, 502, 503 and 504. Everything else is an answer, not an accident. The wait
is exponential with full jitter (AWS's "full jitter": a uniform draw below the cap, so many
clients do not retry in lockstep), and a ``Retry-After`` the server sends is honoured as a
lower bound, capped so a hostile or confused server cannot park a build for an hour.
Attempts are bounded.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` in all (1 = no retry); waits grow from ``base`` seconds to at most ``cap``."""

    attempts: int = 5
    base: float = 0.25
    cap: float = 8.0
    max_retry_after: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (``attempt`` counts from 0)."""
        wait = random.uniform(0, min(self.cap, self.base * (2 ** attempt)))
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait


NO_RETRY = RetryPolicy(attempts=1)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Retryable(Exception):
    """Raised inside an attempt to ask for another one; carries the error to raise if none is left."""

    def __init__(self, final: Exception, retry_after: float | None = None):
        super().__init__(str(final))
        self.final = final
        self.retry_after = retry_after


def retrying(policy: RetryPolicy, attempt: Callable[[], T]) -> T:
    """Run ``attempt`` until it returns, raising ``Retryable(...).final`` when attempts run out."""
    for n in range(policy.attempts):
        try:
            return attempt()
        except Retryable as r:
            if n + 1 >= policy.attempts:
                raise r.final from None
            policy.sleep(policy.delay(n, r.retry_after))
    raise AssertionError("unreachable")  # attempts >= 1
