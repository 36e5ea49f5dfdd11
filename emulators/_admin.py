"""The part of the ``/_emulator`` admin API that every emulator has, at both ends.

Server side, the routes for stats, faults, token expiry and reset; client side, the base of
each emulator's synchronous ``AdminClient``. What only one emulator has (runs, jobs, the
clock) and how it spells an error stay with that emulator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, Protocol, Self, TypeVar, cast

import httpx
from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from emulators._faults import ActiveFault

ADMIN_PATH = "/_emulator"

M = TypeVar("M", bound=BaseModel)


class _Stats(Protocol):
    def to_json(self) -> dict[str, Any]: ...


class AdminState(Protocol[M]):
    """What the shared admin routes need of an emulator's state."""

    @property
    def stats(self) -> _Stats: ...

    @property
    def faults(self) -> list[ActiveFault[M]]: ...

    def add_faults(self, faults: Iterable[M]) -> None: ...

    def clear_faults(self) -> None: ...

    def expire_tokens(self) -> int: ...

    def reset(self) -> None: ...


def admin_routes(
    state_of: Callable[[web.Request], AdminState[M]],
    faults: TypeAdapter[list[M]],
    error: Callable[[str], web.Response],
) -> list[web.RouteDef]:
    """``GET stats``, ``GET|POST|DELETE faults``, ``POST tokens/expire`` and ``POST reset``.

    ``faults`` validates the emulator's own ``Fault`` model; ``error`` renders a bad request
    in the emulator's error shape.
    """

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(state_of(request).stats.to_json())

    async def list_faults(request: web.Request) -> web.Response:
        queued = [
            {**a.fault.model_dump(mode="json"), "remaining": a.remaining}
            for a in state_of(request).faults
        ]
        return web.json_response({"faults": queued})

    async def add_faults(request: web.Request) -> web.Response:
        try:
            body = await request.json()
            added = faults.validate_python(body["faults"] if isinstance(body, dict) else None)
        except (ValueError, KeyError, ValidationError) as exc:
            return error(f'Expected {{"faults": [Fault, ...]}}: {exc}')
        state_of(request).add_faults(added)
        return await list_faults(request)

    async def clear_faults(request: web.Request) -> web.Response:
        state_of(request).clear_faults()
        return web.json_response({"faults": []})

    async def expire_tokens(request: web.Request) -> web.Response:
        return web.json_response({"expired": state_of(request).expire_tokens()})

    async def reset(request: web.Request) -> web.Response:
        state_of(request).reset()
        return web.json_response({"reset": True})

    return [
        web.get(f"{ADMIN_PATH}/stats", stats),
        web.get(f"{ADMIN_PATH}/faults", list_faults),
        web.post(f"{ADMIN_PATH}/faults", add_faults),
        web.delete(f"{ADMIN_PATH}/faults", clear_faults),
        web.post(f"{ADMIN_PATH}/tokens/expire", expire_tokens),
        web.post(f"{ADMIN_PATH}/reset", reset),
    ]


# -- client ------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """What httpx can send as JSON: models dumped, sets sorted, sequences item by item."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


class EmulatorAdminClient(Generic[M]):
    """Inspect and steer a running emulator; every call raises on a non-2xx answer.

    ``base_url`` is the server's root (``http://127.0.0.1:<port>``).
    """

    _fault_model: type[M]
    """The emulator's ``Fault``, which ``inject`` validates before sending."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        self._http = httpx.Client(base_url=f"{base_url.rstrip('/')}{ADMIN_PATH}", timeout=timeout)

    def _call(self, method: str, path: str, body: Any = None, **params: str | None) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        response = self._http.request(method, path, json=body, params=query)
        response.raise_for_status()
        return response.json() if response.content else None

    def stats(self) -> dict[str, Any]:
        """What the emulator counted (its ``Stats``)."""
        return cast(dict[str, Any], self._call("GET", "/stats"))

    def inject(self, *faults: M | Mapping[str, Any]) -> None:
        """Queue faults; each serves its ``count`` next matching requests that it hits."""
        payload = [self._fault_model.model_validate(f).model_dump(mode="json") for f in faults]
        self._call("POST", "/faults", {"faults": payload})

    def faults(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._call("GET", "/faults")["faults"])

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def reset(self) -> None:
        """Forget what requests left behind (the state's ``reset`` says what that is) and
        re-seed the fault generator; the configuration survives."""
        self._call("POST", "/reset")

    def config(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", "/config"))

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change settings at run time; returns the new config (secrets left out).

        What may change is the emulator's ``PATCHABLE_FIELDS``; ``seed`` re-seeds the fault
        generator.
        """
        body = {name: jsonable(value) for name, value in changes.items()}
        return cast(dict[str, Any], self._call("PATCH", "/config", body))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
