"""Retrying transient run API failures with tenacity.

Exponential backoff with full jitter, unless the API said how long to wait
(Retry-After), bounded both in attempts and in total time.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from .config import RetryPolicy
from .errors import RetriesExhausted, TransientBackendError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Attempts:
    """What happened while trying one call; goes into dead-letter headers and metrics."""

    count: int = 0
    ambiguous: int = 0
    """Attempts that may have taken effect although they failed (the answer was lost)."""
    cleared: int = 0
    """Of those, how many a later look settled: the bridge found what they did, or that
    they did nothing."""
    first_failure: datetime | None = None
    last_failure: datetime | None = None

    @property
    def unclear(self) -> int:
        """Ambiguous attempts whose effect is still not known."""
        return self.ambiguous - self.cleared

    def clear(self) -> None:
        self.cleared = self.ambiguous

    def failed(self, error: BaseException) -> None:
        now = datetime.now(UTC)
        self.first_failure = self.first_failure or now
        self.last_failure = now
        if isinstance(error, TransientBackendError) and error.ambiguous:
            self.ambiguous += 1


class _WaitRetryAfter:
    """Retry-After when the error carries one (capped), else the exponential fallback."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._cap = policy.max_retry_after_seconds
        self._fallback = wait_random_exponential(
            multiplier=policy.initial_backoff_seconds, max=policy.max_backoff_seconds
        )

    def __call__(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, TransientBackendError) and error.retry_after is not None:
            return min(error.retry_after, self._cap)
        return float(self._fallback(state))


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    attempts: Attempts | None = None,
    describe: str = "call",
) -> T:
    """Run ``call`` until it succeeds, fails permanently, or the policy is spent.

    Raises the permanent error as it is, or RetriesExhausted wrapping the last transient one.
    """
    attempts = attempts if attempts is not None else Attempts()

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, TransientBackendError) and error.ambiguous:
            log.warning(
                "%s: answer lost (%s); it may have taken effect, so the next attempt looks first",
                describe,
                error.message,
            )
        else:
            log.info("%s: transient failure (%s); retrying", describe, error)

    retrying = AsyncRetrying(
        retry=retry_if_exception_type(TransientBackendError),
        stop=stop_after_attempt(policy.max_attempts) | stop_before_delay(policy.max_seconds),
        wait=_WaitRetryAfter(policy),
        before_sleep=before_sleep,
        reraise=False,
    )
    try:
        async for attempt in retrying:
            with attempt:
                attempts.count += 1
                try:
                    return await call()
                except Exception as exc:
                    attempts.failed(exc)
                    raise
    except RetryError as exc:
        last = exc.last_attempt.exception()
        assert isinstance(last, TransientBackendError)
        raise RetriesExhausted(last, attempts.count) from last
    raise AssertionError("unreachable")  # pragma: no cover
