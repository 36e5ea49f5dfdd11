"""Injected faults and latency, the same in every emulator: the queue and how a handler serves one.

A fault stands in for the answer to the next ``count`` requests it matches, or follows the
real answer (``after_effect``) so that tests get ambiguous outcomes; ``probability`` below 1
makes it intermittent, drawn from the state's seeded generator so that a seeded run meets
the same faults again. Which requests a fault matches and what its error looks like stay
with each emulator: ARM and HERE differ there on purpose.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from aiohttp import web

T = TypeVar("T")


class FaultSpec(Protocol):
    """What the shared code reads of an emulator's ``Fault`` model."""

    @property
    def operation(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def probability(self) -> float: ...

    @property
    def after_effect(self) -> bool: ...

    @property
    def delay_seconds(self) -> float: ...


F = TypeVar("F", bound=FaultSpec)


@dataclass
class ActiveFault(Generic[T]):
    """A queued fault and how many more requests it will serve."""

    fault: T
    remaining: int


def take_fault(
    queue: list[ActiveFault[F]],
    operation: str,
    draw: random.Random,
    matches: Callable[[F], bool],
) -> F | None:
    """Use up one serving of the first queued fault that ``matches`` and fires, if any.

    ``*`` targets every operation but ``token``. A fault whose intermittent draw fails is
    neither counted nor used, so the request may still meet the next one.
    """
    for active in queue:
        fault = active.fault
        if not matches(fault):
            continue
        target = fault.operation
        if not (target == operation or (target == "*" and operation != "token")):
            continue
        if fault.probability < 1 and draw.random() >= fault.probability:
            continue
        active.remaining -= 1
        if active.remaining <= 0:
            queue.remove(active)
        return fault
    return None


# -- serving -----------------------------------------------------------------------------------

PARKED = web.AppKey("emulator_parked", set[asyncio.Task[Any]])
"""Handlers hanging for a timeout fault; an app that serves faults needs a set here."""


class LatencySpec(Protocol):
    @property
    def latency_ms(self) -> float: ...

    @property
    def latency_jitter_ms(self) -> float: ...


async def emulate_latency(config: LatencySpec) -> None:
    """Sleep ``latency_ms`` give or take ``latency_jitter_ms``, as a distant service would."""
    spread = config.latency_jitter_ms
    delay_ms = max(0.0, random.uniform(config.latency_ms - spread, config.latency_ms + spread))
    if delay_ms:
        await asyncio.sleep(delay_ms / 1000)


async def park(request: web.Request, seconds: float) -> None:
    """Hang like an unresponsive server; shutdown cancels parked handlers instead of waiting."""
    parked = request.app[PARKED]
    task = asyncio.current_task()
    assert task is not None
    parked.add(task)
    try:
        await asyncio.sleep(seconds)
    finally:
        parked.discard(task)


async def cancel_parked(app: web.Application) -> None:
    """An ``on_shutdown`` hook, so that hanging handlers do not delay the server's exit."""
    parked: set[asyncio.Task[Any]] = app[PARKED]
    for task in list(parked):
        task.cancel()


def drop(request: web.Request) -> web.Response:
    """Close the socket without a response; aiohttp quietly discards what we return."""
    if request.transport is not None:
        request.transport.close()
    return web.Response()


async def serve_with_fault(
    request: web.Request,
    fault: F | None,
    answer: Callable[[F], web.Response | None],
    perform: Callable[[], Awaitable[web.Response]],
) -> web.Response:
    """``perform``'s response, unless ``fault`` stands in for it before or after the effect.

    ``drop`` closes the connection. Other kinds get ``answer``'s response, the emulator's own
    rendering; where it has none (``timeout``) the handler hangs ``delay_seconds`` and then
    answers as usual.
    """
    if fault is not None and not fault.after_effect:
        early = await _stand_in(request, fault, answer)
        if early is not None:
            return early
    response = await perform()
    if fault is not None and fault.after_effect:
        late = await _stand_in(request, fault, answer)
        if late is not None:
            return late
    return response


async def _stand_in(
    request: web.Request, fault: F, answer: Callable[[F], web.Response | None]
) -> web.Response | None:
    if fault.kind == "drop":
        return drop(request)
    response = answer(fault)
    if response is None:
        await park(request, fault.delay_seconds)
    return response
