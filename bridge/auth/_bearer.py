"""Bearer tokens as an ``httpx.Auth`` flow: cached, refreshed early, and once on a 401."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Protocol

import httpx


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_at: float
    """Wall-clock epoch seconds."""

    def __repr__(self) -> str:
        return f"AccessToken(expires_at={self.expires_at})"


class TokenSource(Protocol):
    """Fetches a fresh token. Raises AuthenticationFailed or TransientBackendError."""

    async def fetch(self) -> AccessToken: ...

    async def aclose(self) -> None: ...


class BearerTokenAuth(httpx.Auth):
    """Adds ``Authorization: Bearer``; one fetch at a time, however many requests wait.

    A token is replaced ``refresh_margin`` seconds before it expires, so long waits and
    clock skew do not turn into 401s; if the API still answers 401 (revoked, expired early)
    the token is fetched again once and the request sent again once.
    """

    def __init__(
        self,
        source: TokenSource,
        *,
        refresh_margin: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._margin = refresh_margin
        self._clock = clock
        self._token: AccessToken | None = None
        self._lock = asyncio.Lock()

    async def token(self, *, stale: AccessToken | None = None) -> AccessToken:
        async with self._lock:
            current = self._token
            usable = current is not None and current.expires_at - self._margin > self._clock()
            if current is None or not usable or current is stale:
                self._token = await self._source.fetch()
            assert self._token is not None
            return self._token

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.token()
        request.headers["Authorization"] = f"Bearer {token.token}"
        response = yield request
        if response.status_code == 401:
            token = await self.token(stale=token)
            request.headers["Authorization"] = f"Bearer {token.token}"
            yield request
