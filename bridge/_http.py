"""HTTP rules every run API client shares: reading bodies and classifying failures.

Used by the backends and by the token sources, so that "transient", "ambiguous" and
"Retry-After" mean the same everywhere.
"""

from __future__ import annotations

import email.utils
import time
from datetime import datetime
from typing import Any

import httpx

from .errors import AuthenticationFailed, BackendError, BackendRejected, TransientBackendError


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The body as a JSON object, or {} if it is not one."""
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def json_time(value: Any) -> datetime | None:
    """A timestamp from a JSON body (ISO 8601, a lower-case t or z allowed), or None if the
    field is missing or not one: a run API's odd time never fails the read of a run."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        return None


def json_duration_ms(value: Any) -> int | None:
    """A duration in milliseconds from a JSON body, or None if it is not a count."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def api_client(
    *,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None,
    base_url: str = "",
    auth: httpx.Auth | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.AsyncClient:
    """The HTTP client of a run API (or lineage endpoint): redirects are never followed
    for the caller (a backend that allows them follows them itself), and ``transport`` is
    the seam tests use."""
    return httpx.AsyncClient(
        base_url=base_url,
        auth=auth,
        timeout=timeout,
        transport=transport,
        headers={"User-Agent": "runbridge", **(headers or {})},
        follow_redirects=False,
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait, from a Retry-After header in seconds or as an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


_SAFE_TRANSPORT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_AMBIGUOUS_STATUS = frozenset({500, 502, 504})


def transport_error(exc: httpx.TransportError, *, operation: str, idempotent: bool) -> BackendError:
    """A request that got no answer. It may have reached the API unless it never connected."""
    ambiguous = not idempotent and not isinstance(exc, _SAFE_TRANSPORT_ERRORS)
    return TransientBackendError(
        f"{operation}: {type(exc).__name__}: {exc or 'no detail'}", ambiguous=ambiguous
    )


def status_error(
    response: httpx.Response,
    *,
    operation: str,
    idempotent: bool,
    code: str | None,
    message: str | None,
) -> BackendError:
    """Classify an error answer: 408, 429 and 5xx are transient, 401 is a refused token,
    other statuses are permanent.

    500, 502 and 504 (and 503 without Retry-After) may come after the work was done, so
    they are ambiguous for a call that is not idempotent; 408, 429 and 503 with
    Retry-After say the request was not taken.
    """
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    text = (
        f"{operation}: HTTP {status}"
        + (f" {code}" if code else "")
        + (f": {message}" if message else "")
    )
    if status in (408, 429) or status >= 500:
        ambiguous = not idempotent and (
            status in _AMBIGUOUS_STATUS or (status == 503 and retry_after is None)
        )
        return TransientBackendError(
            text, status_code=status, code=code, retry_after=retry_after, ambiguous=ambiguous
        )
    if status == 401:
        return AuthenticationFailed(text, status_code=status, code=code)
    return BackendRejected(text, status_code=status, code=code)


def token_refusal(
    response: httpx.Response, *, operation: str, code: str | None, message: str | None
) -> BackendError:
    """A token endpoint's error answer: transient by the rules above (worth asking again),
    else the credentials were refused."""
    error = status_error(response, operation=operation, idempotent=True, code=code, message=message)
    if isinstance(error, TransientBackendError):
        return error
    return AuthenticationFailed(error.message, status_code=response.status_code, code=code)
