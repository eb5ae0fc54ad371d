"""Split ingest's publish cycle, as seen on the wire, into the broker's part and ingest's.

At wrk -c64 a pixel is answered after its batch's confirm, so requests/s follows the
cycle from one batch's publish to the next: the broker's confirm round trip (publish
frame out, Basic.Ack back) plus ingest's turnaround (Basic.Ack in, next publish out).
Capture the AMQP traffic on loopback while `scripts/bench.py` loads ingest, then read it:

    tcpdump -i lo -s 96 -w /tmp/amqp.pcap 'tcp port 5672'   # a few seconds, as root
    .venv/bin/python scripts/confirm_cycle.py /tmp/amqp.pcap

The publishing connection is the client port that sent the broker the most bytes
(ingest's hits; the writer mostly receives). A publish is a client segment of more than
100 bytes, a confirm a 21-byte broker segment (one Basic.Ack frame). Needs tcpdump to
read the file.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pcap", help="a tcpdump capture of port 5672 on loopback")
    args = parser.parse_args()
    parts = cycle(segments(args.pcap))
    print(f"broker: publish -> confirm      {describe(parts['broker'])}")
    print(f"ingest: confirm -> next publish {describe(parts['ingest'])}")
    return 0 if parts["broker"] else 1


if __name__ == "__main__":
    sys.exit(main())
