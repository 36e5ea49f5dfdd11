"""One exception hierarchy for everything the bridge can fail on.

Every error carries a stable ``reason`` code: it is what goes into the dead-letter
headers and the REJECTED event, so listeners can branch on it without parsing text.
"""

from __future__ import annotations

from pydantic import ValidationError


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""

    reason: str = "internal-error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(BridgeError):
    """The record itself is wrong: retrying it can never help."""

    reason = "invalid-input"


class UndecodableRecord(InputError):
    reason = "undecodable"


class NotACloudEvent(InputError):
    reason = "not-a-cloudevent"


class RecordTooLarge(InputError):
    reason = "too-large"


class UnknownEventType(InputError):
    reason = "unknown-event-type"


class ContractViolation(InputError):
    reason = "contract-violation"


class UnknownTarget(InputError):
    reason = "unknown-target"


class TargetMismatch(InputError):
    """The request's system-specific part (or a cancel's options) does not fit the target's
    system."""

    reason = "target-mismatch"


class InvalidIdentifier(InputError):
    """An identifier that would go into a URL breaks the run API's naming rules."""

    reason = "invalid-identifier"


class NothingToCancel(BridgeError):
    """A cancel for a request that never became a run the bridge can name (it was
    rejected, or which run it started is unknown)."""

    reason = "nothing-to-cancel"


class RunAlreadyEnded(BridgeError):
    """A cancel for a run that had already ended: its end is (or will be) published."""

    reason = "run-already-ended"


class ConfigurationError(BridgeError):
    reason = "configuration-error"


class BackendError(BridgeError):
    """A run API call failed."""

    reason = "backend-error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code


class BackendRejected(BackendError):
    """The run API refused the request (a 4xx other than 408/429): permanent."""

    reason = "backend-rejected"


class AuthenticationFailed(BackendError):
    """No usable token: wrong credentials, or the API refused a fresh token."""

    reason = "authentication-failed"


class TransientBackendError(BackendError):
    """Worth retrying: connection errors, timeouts, 408, 429, 5xx.

    ``ambiguous`` is true when the request may have reached the API and taken effect
    (a timeout or dropped connection after sending, 500/502/504): retrying a
    non-idempotent call then risks a duplicate run.
    """

    reason = "backend-unavailable"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(message, status_code=status_code, code=code)
        self.retry_after = retry_after
        self.ambiguous = ambiguous


class OutcomeUnknown(BackendError):
    """The bridge cannot tell whether, or which, run was started: the run API's answer
    said nothing, or looking for the run found several that could be it (``candidates``)."""

    reason = "outcome-unknown"

    def __init__(self, message: str, *, candidates: list[str] | None = None) -> None:
        super().__init__(message)
        self.candidates = candidates or []


class OutputRejected(BridgeError):
    """Kafka refused an output record for good (e.g. too large): retrying cannot help."""

    reason = "output-rejected"


class RetriesExhausted(BackendError):
    """Transient failures lasted longer than the retry budget."""

    reason = "retries-exhausted"

    def __init__(self, last: TransientBackendError, attempts: int) -> None:
        super().__init__(
            f"gave up after {attempts} attempts: {last.message}",
            status_code=last.status_code,
            code=last.code,
        )
        self.last = last
        self.attempts = attempts


def describe(exc: ValidationError) -> str:
    """A validation error without the offending input: configuration holds secrets, and
    events may hold anything."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:10]:
        where = ".".join(str(part) for part in error["loc"]) or "(root)"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
