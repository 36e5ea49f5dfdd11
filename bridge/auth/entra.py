"""Microsoft Entra ID tokens for Azure Resource Manager.

Client credentials use the v2 endpoint with ``scope=https://management.azure.com/.default``
(the resource's scope; asking for ``resource=<client id>`` gives a token ARM rejects).
Both are one HTTP exchange each, made with the bridge's own httpx stack.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from ..config import ClientSecretCredential, ManagedIdentityCredential
from ..errors import AuthenticationFailed, TransientBackendError
from ._bearer import AccessToken

_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


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


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def _from_http_error(what: str, exc: httpx.HTTPError) -> Exception:
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        if status in _TRANSIENT_STATUS:
            return TransientBackendError(f"{what}: HTTP {status}", status_code=status)
        return AuthenticationFailed(f"{what}: HTTP {status}", status_code=status)
    return TransientBackendError(f"{what}: {type(exc).__name__}: {exc}")


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
        try:
            response = await self._client.post(self._credential.token_url, data=form)
        except httpx.TransportError as exc:
            raise _from_http_error(what, exc) from exc
        payload = _json_object(response)
        if response.status_code in _TRANSIENT_STATUS:
            raise TransientBackendError(f"{what}: HTTP {response.status_code}")
        if not response.is_success:
            raise AuthenticationFailed(
                f"{what}: HTTP {response.status_code} {payload.get('error')}: "
                f"{payload.get('error_description')}",
                status_code=response.status_code,
                code=payload.get("error"),
            )
        return _token_from(payload, time.time())

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
        try:
            response = await self._client.get(
                self._credential.endpoint, params=params, headers={"Metadata": "true"}
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise _from_http_error("managed identity token", exc) from exc
        return _token_from(_json_object(response), time.time())

    async def aclose(self) -> None:
        await self._client.aclose()


def token_source(
    credential: ClientSecretCredential | ManagedIdentityCredential, *, timeout: float = 30.0
) -> ClientSecretTokenSource | ManagedIdentityTokenSource:
    if isinstance(credential, ClientSecretCredential):
        return ClientSecretTokenSource(credential, timeout=timeout)
    return ManagedIdentityTokenSource(credential, timeout=timeout)
