import time

import pytest

from bridge.config import RetryPolicy
from bridge.errors import BackendRejected, RetriesExhausted, TransientBackendError
from bridge.retry import Attempts, call_with_retries

FAST = RetryPolicy(
    max_attempts=5, max_seconds=5, initial_backoff_seconds=0.001, max_backoff_seconds=0.01
)


async def test_transient_errors_are_retried_until_success() -> None:
    failures = [TransientBackendError("503"), TransientBackendError("drop", ambiguous=True)]

    async def call() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    attempts = Attempts()
    assert await call_with_retries(call, FAST, attempts=attempts) == "ok"
    assert (attempts.count, attempts.ambiguous) == (3, 1)
    assert attempts.first_failure is not None


async def test_permanent_errors_are_not_retried() -> None:
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        raise BackendRejected("404", status_code=404)

    with pytest.raises(BackendRejected):
        await call_with_retries(call, FAST)
    assert calls == 1


async def test_retries_stop_at_the_attempt_limit() -> None:
    async def call() -> None:
        raise TransientBackendError("503", status_code=503)

    attempts = Attempts()
    with pytest.raises(RetriesExhausted) as caught:
        await call_with_retries(call, FAST, attempts=attempts)
    assert attempts.count == 5
    assert caught.value.last.status_code == 503


async def test_retry_after_is_honoured() -> None:
    errors = [TransientBackendError("429", status_code=429, retry_after=0.3)]

    async def call() -> str:
        if errors:
            raise errors.pop()
        return "ok"

    started = time.monotonic()
    await call_with_retries(call, FAST)
    assert time.monotonic() - started >= 0.3


async def test_a_retry_after_beyond_the_time_budget_ends_the_retries() -> None:
    policy = RetryPolicy(max_attempts=10, max_seconds=0.5, max_retry_after_seconds=60)

    async def call() -> None:
        raise TransientBackendError("429", status_code=429, retry_after=30)

    started = time.monotonic()
    with pytest.raises(RetriesExhausted):
        await call_with_retries(call, policy)
    assert time.monotonic() - started < 1
