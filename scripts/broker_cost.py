"""RabbitMQ's CPU per message by body size: does a smaller `batch` body pay?

For each size, N persistent messages go to a quorum queue of the script's own (as the
writer's), with publisher confirms and two messages in flight (as ingest's), while a
consumer on the same connection takes them and acks every 16th with `multiple` (as the
writer). The broker's CPU time (`beam.smp`, from /proc) across that is divided by N.

    .venv/bin/python scripts/broker_cost.py [--messages 4000] [--sizes 11000,2200,500]

Needs RabbitMQ on 127.0.0.1 (or `--amqp-url`) on the same machine; the queue is
deleted afterwards, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from pathlib import Path

import aio_pika

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: only scripts/ is on sys.path
    sys.path.insert(0, str(ROOT))

from devtools.usage import cpu_seconds_by_name  # noqa: E402

IN_FLIGHT = 2
ACK_EVERY = 16


def broker_cpu() -> float:
    return cpu_seconds_by_name(["beam.smp"])["beam.smp"]


async def one_size(url: str, size: int, count: int) -> tuple[float, float]:
    """(broker µs of CPU per message, messages per second) for `count` bodies of `size`."""
    connection = await aio_pika.connect(url)
    try:
        publish = await connection.channel(publisher_confirms=True)
        name = f"broker-cost-{secrets.token_hex(4)}"
        queue = await publish.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        try:
            return await _load(connection, publish, queue, size, count)
        finally:
            await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()


async def _load(
    connection: aio_pika.abc.AbstractConnection,
    publish: aio_pika.abc.AbstractChannel,
    queue: aio_pika.abc.AbstractQueue,
    size: int,
    count: int,
) -> tuple[float, float]:
    consume = await connection.channel()
    await consume.set_qos(prefetch_count=64)
    received = 0
    done = asyncio.Event()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal received
        received += 1
        if received % ACK_EVERY == 0 or received == count:
            await message.ack(multiple=True)
        if received == count:
            done.set()

    consumed = await consume.get_queue(queue.name)
    tag = await consumed.consume(on_message)
    body = os.urandom(size // 2 + 1).hex().encode()[:size]
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def send() -> None:
        async with slots:
            message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await publish.default_exchange.publish(message, routing_key=queue.name)

    cpu_before, started = broker_cpu(), time.perf_counter()
    await asyncio.gather(*(send() for _ in range(count)))
    await asyncio.wait_for(done.wait(), 60)
    cpu, elapsed = broker_cpu() - cpu_before, time.perf_counter() - started
    await consumed.cancel(tag)
    return 1e6 * cpu / count, count / elapsed


async def main_async(args: argparse.Namespace) -> None:
    for size in args.sizes:
        per_message, rate = await one_size(args.amqp_url, size, args.messages)
        print(f"{size:>7} bytes: RabbitMQ {per_message:6.0f} µs CPU per message, {rate:,.0f}/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[11000, 2200, 11000, 2200, 500],
        help="body sizes in bytes, comma-separated, run in this order",
    )
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
