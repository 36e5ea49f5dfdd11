"""Microsoft Entra ID tokens for Azure Resource Manager.

Client credentials use the v2 endpoint with ``scope=https://management.azure.com/.default``
(the resource's scope; asking for ``resource=<client id>`` gives a token ARM rejects).
Both are one HTTP exchange each, made with the bridge's own httpx stack.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

import httpx

from ..._http import json_object, token_refusal, transport_error
from ...auth import AccessToken
from ...errors import AuthenticationFailed
from ._target import ClientSecretCredential, ManagedIdentityCredential


def _token_from(payload: dict[str, Any], now: float) -> AccessToken:
    """v2 answers expires_in as a number; v1 and IMDS as strings, with expires_on."""
    try:
        if payload.get("expires_on") is not None:
            expires_at = float(payload["expires_on"])
        else:
            expires_at = now + float(payload["expires_in"])
        return AccessToken(token=str(payload["access_token"]), expires_at=expires_at)
    except (KeyError, TypeError, ValueError) as exc:
        raise AuthenticationFailed(f"token response lacks access_token/expiry: {exc}") from exc


def _refused(what: str, response: httpx.Response) -> Exception:
    """A token endpoint's error answer: transient by the shared rules, else the
    credentials are wrong (OAuth error body: error, error_description)."""
    payload = json_object(response)
    code, description = payload.get("error"), payload.get("error_description")
    return token_refusal(response, operation=what, code=code, message=description)


async def _exchange(what: str, sending: Awaitable[httpx.Response]) -> AccessToken:
    """One token request: its answer as a token, or the failure classified."""
    try:
        response = await sending
    except httpx.TransportError as exc:
        raise transport_error(exc, operation=what, idempotent=True) from exc
    if not response.is_success:
        raise _refused(what, response)
    return _token_from(json_object(response), time.time())


class ClientSecretTokenSource:
    def __init__(self, credential: ClientSecretCredential, *, timeout: float = 30.0) -> None:
        self._credential = credential
        self._secret = credential.resolve_secret()
        self._client = httpx.AsyncClient(timeout=timeout)

    async def fetch(self) -> AccessToken:
        what = f"Entra ID token for client {self._credential.client_id}"
        form = {
            "grant_type": "client_credentials",
            "client_id": self._credential.client_id,
            "client_secret": self._secret.get_secret_value(),
            "scope": self._credential.scope,
        }
        return await _exchange(what, self._client.post(self._credential.token_url, data=form))

    async def aclose(self) -> None:
        await self._client.aclose()


class ManagedIdentityTokenSource:
    def __init__(self, credential: ManagedIdentityCredential, *, timeout: float = 30.0) -> None:
        self._credential = credential
        self._client = httpx.AsyncClient(timeout=timeout)

    async def fetch(self) -> AccessToken:
        params = {"api-version": "2018-02-01", "resource": self._credential.resource}
        if self._credential.client_id:
            params["client_id"] = self._credential.client_id
        what = "managed identity token"
        return await _exchange(
            what,
            self._client.get(
                self._credential.endpoint, params=params, headers={"Metadata": "true"}
            ),
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def token_source(
    credential: ClientSecretCredential | ManagedIdentityCredential, *, timeout: float = 30.0
) -> ClientSecretTokenSource | ManagedIdentityTokenSource:
    if isinstance(credential, ClientSecretCredential):
        return ClientSecretTokenSource(credential, timeout=timeout)
    return ManagedIdentityTokenSource(credential, timeout=timeout)
