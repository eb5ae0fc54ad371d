"""Prometheus remote_write 1.0 bodies for tests, built with the intake's own descriptors
(services/ingest/intake/protos.py) and cramjam's snappy, as Prometheus builds them."""

from __future__ import annotations

import cramjam

from services.ingest.intake.protos import Label, WriteRequest

Series = tuple[dict[str, str], list[tuple[float, int]]]  # labels (with __name__), (value, ms)

HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def write_request(series: list[Series]) -> bytes:
    """The serialized (uncompressed) `WriteRequest`."""
    request = WriteRequest()
    for labels, samples in series:
        ts = request.timeseries.add()
        # Labels are declared as raw bytes in the parse schema: each one serialized.
        ts.labels.extend(
            Label(name=k, value=v).SerializeToString() for k, v in sorted(labels.items())
        )
        for value, at in samples:
            ts.samples.add(value=value, timestamp=at)
    data: bytes = request.SerializeToString()
    return data


def remote_write_body(series: list[Series]) -> bytes:
    return bytes(cramjam.snappy.compress_raw(write_request(series)))
