"""shared.tasks.stop_task: grace, then cancel until done, even when a cancel is swallowed."""

from __future__ import annotations

import asyncio

import pytest

from shared.tasks import stop_task


async def test_a_task_that_swallows_a_cancel_is_still_stopped() -> None:
    swallowed = asyncio.Event()

    async def stubborn() -> None:
        # What a loop around Python 3.11's wait_for can do: lose one cancel, run on.
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed.is_set():
                    raise
                swallowed.set()

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    async with asyncio.timeout(5):  # a single cancel() then `await task` hangs here
        await stop_task(task)
    assert swallowed.is_set() and task.cancelled()


async def test_a_task_ending_within_its_grace_is_not_cancelled() -> None:
    release = asyncio.Event()

    async def finishing() -> str:
        await release.wait()
        return "done"

    task = asyncio.create_task(finishing())
    stopping = asyncio.create_task(stop_task(task, grace=30))
    await asyncio.sleep(0)
    release.set()
    await stopping
    assert task.result() == "done"


async def test_a_task_past_its_grace_is_cancelled() -> None:
    task = asyncio.create_task(asyncio.sleep(3600))
    async with asyncio.timeout(5):
        await stop_task(task, grace=0.01)
    assert task.cancelled()


async def test_an_error_the_task_ended_with_is_raised_and_none_is_a_no_op() -> None:
    async def failing() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(failing())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="boom"):
        await stop_task(task)
    await stop_task(None)
