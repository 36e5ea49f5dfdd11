import asyncio

import httpx

from bridge.auth import AccessToken, BearerTokenAuth


class CountingTokens:
    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.fetched = 0

    async def fetch(self) -> AccessToken:
        self.fetched += 1
        await asyncio.sleep(0.01)
        return AccessToken(token=f"t{self.fetched}", expires_at=1000.0 + self.lifetime)

    async def aclose(self) -> None:
        pass


async def test_one_fetch_serves_concurrent_requests_and_is_reused() -> None:
    tokens = CountingTokens(lifetime=3600)
    auth = BearerTokenAuth(tokens, clock=lambda: 1000.0)
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    async with httpx.AsyncClient(auth=auth, transport=transport) as client:
        await asyncio.gather(*(client.get("https://x.test/") for _ in range(20)))
    assert tokens.fetched == 1


async def test_a_token_is_renewed_before_it_expires() -> None:
    now = [1000.0]
    tokens = CountingTokens(lifetime=3600)
    auth = BearerTokenAuth(tokens, refresh_margin=300, clock=lambda: now[0])
    assert (await auth.token()).token == "t1"
    now[0] += 3600 - 301
    assert (await auth.token()).token == "t1"
    now[0] += 2
    assert (await auth.token()).token == "t2"


def test_a_token_never_shows_in_repr() -> None:
    assert "secret" not in repr(AccessToken(token="secret", expires_at=1))
