"""Split ingest's publish cycle, as seen on the wire, into the broker's part and ingest's.

At wrk -c64 a pixel is answered after its batch's confirm, so requests/s follows the
cycle from one batch's publish to the next: the broker's confirm round trip (publish
frame out, Basic.Ack back) plus ingest's turnaround (Basic.Ack in, next publish out).
Capture the AMQP traffic on loopback while `scripts/bench.py` loads ingest, then read it:

    tcpdump -i lo -s 96 -w /tmp/amqp.pcap 'tcp port 5672'   # a few seconds, as root
    .venv/bin/python scripts/confirm_cycle.py /tmp/amqp.pcap

With `--idle`, it measures instead the broker's part on a machine at rest: one 11 KB
persistent message at a time to a quorum queue of its own (deleted after), each awaited
under publisher confirms, through aio-pika (`--amqp-url`, the shared broker by default).

The publishing connection is the client port that sent the broker the most bytes
(ingest's hits; the writer mostly receives). A publish is a client segment of more than
100 bytes, a confirm a 21-byte broker segment (one Basic.Ack frame). Needs tcpdump to
read the file.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import subprocess
import sys
import time
from collections import Counter

BROKER_PORT = "5672"
ACK_FRAME_BYTES = 21


def segments(pcap: str) -> list[tuple[float, str, str, int]]:
    """(time, source, destination, payload bytes) of every TCP segment in the capture."""
    out = subprocess.run(
        ["tcpdump", "-r", pcap, "-n", "-tt"], capture_output=True, text=True, check=True
    ).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 6 or parts[1] != "IP" or not parts[-1].isdigit():
            continue
        rows.append((float(parts[0]), parts[2], parts[4].rstrip(":"), int(parts[-1])))
    return rows


def cycle(rows: list[tuple[float, str, str, int]]) -> dict[str, list[float]]:
    """Milliseconds from each publish to the next confirm, and from each confirm to the
    next publish, on the connection that published the most."""
    sent: Counter[str] = Counter()
    for _t, src, dst, size in rows:
        if dst.endswith(f".{BROKER_PORT}"):
            sent[src] += size
    if not sent:
        return {"broker": [], "ingest": []}
    client = sent.most_common(1)[0][0]
    broker: list[float] = []
    ingest: list[float] = []
    published: float | None = None
    confirmed: float | None = None
    for t, src, dst, size in rows:
        if src == client and size > 100:
            if confirmed is not None:
                ingest.append((t - confirmed) * 1000)
                confirmed = None
            if published is None:
                published = t
        elif dst == client and size == ACK_FRAME_BYTES:
            if published is not None:
                broker.append((t - published) * 1000)
                published = None
            confirmed = t
    return {"broker": broker, "ingest": ingest}


def describe(values: list[float]) -> str:
    if not values:
        return "none seen"
    ordered = sorted(values)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return (
        f"n {len(values)}, mean {statistics.mean(values):.2f} ms,"
        f" median {statistics.median(values):.2f} ms, p90 {p90:.2f} ms"
    )


async def idle_round_trips(url: str, count: int) -> list[float]:
    """Milliseconds from publish to confirm, one message at a time, on a quiet broker."""
    import aio_pika

    name = f"confirm-cycle-{secrets.token_hex(4)}"
    body = b"x" * 11_000  # about one -c64 batch of ~32 hits
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        try:
            times = []
            for _ in range(count):
                started = time.perf_counter()
                message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                await channel.default_exchange.publish(message, name)
                times.append((time.perf_counter() - started) * 1000)
            return times
        finally:
            await queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pcap", nargs="?", help="a tcpdump capture of port 5672 on loopback")
    parser.add_argument("--idle", type=int, metavar="N", help="N round trips on a quiet broker")
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/")
    args = parser.parse_args()
    if args.idle:
        times = asyncio.run(idle_round_trips(args.amqp_url, args.idle))
        print(f"broker at rest: publish -> confirm {describe(times)}")
        return 0
    if not args.pcap:
        parser.error("a capture file, or --idle N")
    parts = cycle(segments(args.pcap))
    print(f"broker: publish -> confirm      {describe(parts['broker'])}")
    print(f"ingest: confirm -> next publish {describe(parts['ingest'])}")
    return 0 if parts["broker"] else 1


if __name__ == "__main__":
    sys.exit(main())
