"""HERE platform tokens: an OAuth 1.0a (HMAC-SHA256) signed client-credentials request.

Signed with ``oauthlib``, which implements HMAC-SHA256 signing correctly (every form field
is signed with the oauth_* parameters), and sent with httpx. The token endpoint has an error
shape of its own (``errorId``, ``httpStatus``, ``errorCode``, ``message``); two of its codes
are not about the credentials and are answered by signing again:
- 401204, the clock is off: the next signature uses the server's time (its Date header);
- 401207, the nonce was used before: the next signature has a fresh one.
401300 (bad credentials or signature) is an authentication failure. Tokens live at most
24 h; ``BearerTokenAuth`` keeps one until shortly before it expires and fetches a new one
once on a 401.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256, SIGNATURE_TYPE_AUTH_HEADER, Client

from ..._http import json_object, token_refusal, transport_error
from ...auth import AccessToken
from ...errors import AuthenticationFailed, TransientBackendError
from ._target import HereCredentials

log = logging.getLogger(__name__)

CLOCK_SKEW = "401204"
NONCE_REUSED = "401207"
BAD_CREDENTIALS = "401300"
TOO_MANY = "429002"
_SIGN_AGAIN = frozenset({CLOCK_SKEW, NONCE_REUSED})
_ATTEMPTS = 3


class HereTokenSource:
    def __init__(
        self,
        credentials: HereCredentials,
        *,
        scope: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key, self._secret, self._url = credentials.resolve()
        self._scope = scope
        self._clock = clock
        self._offset = 0.0
        """Seconds to add to this machine's clock, learnt from a 401204."""
        self._client = httpx.AsyncClient(timeout=timeout, transport=transport)

    def _signed(self) -> tuple[str, dict[str, str]]:
        form = {"grant_type": "client_credentials"}
        if self._scope:
            form["scope"] = self._scope
        body = urlencode(form)
        signer = Client(
            self._key,
            client_secret=self._secret.get_secret_value(),
            signature_method=SIGNATURE_HMAC_SHA256,
            signature_type=SIGNATURE_TYPE_AUTH_HEADER,
            timestamp=str(int(self._clock() + self._offset)),
        )
        _, headers, _ = signer.sign(
            self._url,
            http_method="POST",
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        return body, dict(headers)

    async def fetch(self) -> AccessToken:
        what = f"HERE token for access key {self._key}"
        for attempt in range(1, _ATTEMPTS + 1):
            body, headers = self._signed()  # a fresh nonce and timestamp every time
            try:
                response = await self._client.post(self._url, content=body, headers=headers)
            except httpx.TransportError as exc:
                raise transport_error(exc, operation=what, idempotent=True) from exc
            if response.is_success:
                return self._token(response)
            error = json_object(response)
            code = str(error.get("errorCode") or "")
            message = f"{what}: HTTP {response.status_code} {code}: {error.get('message')}"
            if code in _SIGN_AGAIN and attempt < _ATTEMPTS:
                if code == CLOCK_SKEW:
                    self._learn_time(response)
                log.warning("%s; signing again", message)
                continue
            if code == CLOCK_SKEW:
                raise AuthenticationFailed(f"{message} (this machine's clock is off)", code=code)
            if code == NONCE_REUSED:
                raise AuthenticationFailed(f"{message} (nonce refused as reused)", code=code)
            refused = token_refusal(
                response, operation=what, code=code or None, message=error.get("message")
            )
            if code == TOO_MANY and not isinstance(refused, TransientBackendError):
                refused = TransientBackendError(
                    message, status_code=response.status_code, code=code
                )
            raise refused
        raise AssertionError("unreachable")  # pragma: no cover

    def _learn_time(self, response: httpx.Response) -> None:
        date = response.headers.get("Date")
        if not date:
            return
        try:
            server = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            return
        self._offset = server - self._clock()

    def _token(self, response: httpx.Response) -> AccessToken:
        payload: dict[str, Any] = json_object(response)
        try:
            token = str(payload["access_token"])
            lifetime = float(payload["expires_in"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AuthenticationFailed(f"the HERE token answer lacks {exc}") from exc
        return AccessToken(token=token, expires_at=self._clock() + lifetime)

    async def aclose(self) -> None:
        await self._client.aclose()
