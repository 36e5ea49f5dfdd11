import asyncio
import random

from bridge.dispatch import KeyedDispatcher


async def test_same_key_in_order_other_keys_in_parallel() -> None:
    dispatcher = KeyedDispatcher()
    seen: dict[str, list[int]] = {}
    running: dict[str, int] = dict.fromkeys("abcd", 0)
    most_running = 0
    most_running_one_key = 0

    def job(key: str, n: int):  # type: ignore[no-untyped-def]
        async def run() -> None:
            nonlocal most_running, most_running_one_key
            running[key] += 1
            most_running = max(most_running, sum(running.values()))
            most_running_one_key = max(most_running_one_key, running[key])
            await asyncio.sleep(random.uniform(0, 0.005))
            seen.setdefault(key, []).append(n)
            running[key] -= 1

        return run

    for n in range(50):
        for key in ("a", "b", "c", "d"):
            dispatcher.submit(key, job(key, n))
    while dispatcher.active_keys:
        await asyncio.sleep(0.01)

    assert seen == {key: list(range(50)) for key in "abcd"}
    assert most_running > 1, "keys ran in parallel"
    assert most_running_one_key == 1, "never two jobs of one key at once"


async def test_a_stuck_key_does_not_block_the_others() -> None:
    dispatcher = KeyedDispatcher()
    release = asyncio.Event()
    done: list[str] = []

    async def stuck() -> None:
        await release.wait()
        done.append("slow")

    def quick(name: str):  # type: ignore[no-untyped-def]
        async def run() -> None:
            done.append(name)

        return run

    dispatcher.submit("slow", stuck)
    for i in range(5):
        dispatcher.submit(f"k{i}", quick(f"k{i}"))
    await asyncio.sleep(0.05)
    assert sorted(done) == [f"k{i}" for i in range(5)]
    release.set()
    await asyncio.sleep(0.01)
    assert done[-1] == "slow"
    await dispatcher.aclose()
