"""`make bench-intake`: metric intake end to end (ingest → RabbitMQ → alerting's windows),
side by side with `/v1/track` hits and a bare HTTP app, in one run.

1. **Ceiling**: `scripts/bare_intake.py` (aiohttp on uvloop: reads the body, answers 204,
   decodes nothing) under the load generator below, once per protocol.
2. **Belfry**: ingest + writer + alerting on a fresh database `belfry_bench_<random>`,
   topology prefix `bench<random>` and spool, with a rules file that watches every metric
   sent (so each sample is kept and evaluated: `belfry_alerting_samples_total{outcome="kept"}`)
   and the intake limits (`INTAKE_*`) raised so they don't cap the run. Under the same
   generator: OTLP/HTTP protobuf (`POST /v1/metrics`), then Prometheus remote_write
   (`POST /api/v1/write`); after each, the bench waits until alerting has kept every
   sample ingest published and reports that lag. Then `/v1/track` with batches of hits
   (until the writer has inserted them all).
3. Everything is removed afterwards (database, topology, spool), also on failure.

The load generator is this file run as `generate` in a process of its own (its CPU is
measured apart): asyncio + aiohttp on uvloop, N senders in a closed loop, each POSTing a
batch of samples (2,000 by default: Prometheus's `max_samples_per_send`), built from a
pre-encoded body template with a FRESH timestamp per request (the timestamp bytes are
spliced in with one `bytes.join`; remote_write bodies are then snappy-compressed, as
Prometheus does per send). Each sender owns its own series, so a series' timestamps only
ever grow, as from a real scraper.

Results are printed against the targets of issue 12 (≥ 50,000 samples/s end to end with
every sample evaluated, p99 intake latency ≤ 50 ms) and written to
`bench/results/bench-intake-<UTC timestamp>.json`. Exit code 0 whatever the numbers;
non-zero only when the benchmark could not run.

Reuses devtools (processes, readiness, psutil CPU and RSS) and scripts/bench.py (the
hot-path bench) for scraping and clean-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import resource
import secrets
import shutil
import string
import struct
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import cramjam
import orjson

ROOT = Path(__file__).resolve().parents[1]
for _path in (ROOT, ROOT / "scripts"):  # run as a file: the repo root is not on sys.path
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import bench as hot  # noqa: E402  (scripts/bench.py)
from devtools.children import Child, spawn  # noqa: E402
from devtools.ports import free_port  # noqa: E402
from devtools.ready import NotReady, wait_http_ok  # noqa: E402
from devtools.usage import PeakRss, cpu_seconds, cpu_seconds_by_name, machine_cpu  # noqa: E402

SELF = str(Path(__file__).resolve())
TENANT = "bench"
SERIES_PER_METRIC = 1000  # under the store's per-metric cap (10,000)
# Targets (issue 12, "Done when").
MIN_SAMPLES_PER_S = 50_000.0
MAX_P99_MS = 50.0
CATCH_UP_TIMEOUT = 120.0
KEPT_UP_LAG_S = 1.0
# Timestamp placeholders in a body template, replaced per request. Same encoded length
# as a real timestamp of these decades: the remote_write varint of a ms time is 6 bytes
# from 2^35 ms (1971) to 2^42 ms (2109); OTLP's time_unix_nano is a fixed64.
SENTINEL_MS = 0x3ABCDEF1234
_VARINT_6 = (1 << 35, 1 << 42)
PROTOCOLS = ("otlp", "remote_write", "track")
PATHS = {"otlp": "/v1/metrics", "remote_write": "/api/v1/write", "track": "/v1/track"}
HEADERS = {
    "otlp": {"Content-Type": "application/x-protobuf"},
    "remote_write": {
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "snappy",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
    },
    "track": {"Content-Type": "application/json"},
}


# --- body templates ----------------------------------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def ts_varint(ms: int) -> bytes:
    """A remote_write timestamp, as long as the placeholder's encoding (6 bytes)."""
    if not _VARINT_6[0] <= ms < _VARINT_6[1]:
        raise ValueError(f"timestamp {ms} ms does not encode in 6 varint bytes")
    return varint(ms)


def ts_fixed64_ns(ms: int) -> bytes:
    return struct.pack("<Q", ms * 1_000_000)


@dataclass(frozen=True)
class BodyTemplate:
    """A request body cut at its timestamps: `render(ms)` joins the pieces with the
    encoded time (one C call), then compresses the result if the protocol wants it."""

    protocol: str
    segments: tuple[bytes, ...]
    samples: int
    encode_ts: Callable[[int], bytes] | None = None
    snappy: bool = False

    def render(self, ts_ms: int) -> bytes:
        body = self.encode_ts(ts_ms).join(self.segments) if self.encode_ts else self.segments[0]
        return bytes(cramjam.snappy.compress_raw(body)) if self.snappy else body


def _cut(protocol: str, raw: bytes, placeholder: bytes, expected: int, **kw: Any) -> BodyTemplate:
    segments = tuple(raw.split(placeholder))
    if len(segments) - 1 != expected:  # the placeholder bytes turned up elsewhere
        raise ValueError(f"{protocol}: {len(segments) - 1} placeholders for {expected} samples")
    return BodyTemplate(protocol, segments, expected, **kw)


Series = tuple[str, dict[str, str]]  # metric name, labels


def series_set(first: int, count: int) -> list[Series]:
    """`count` series from global index `first`: metric `bench_metric_<i // 1000>`,
    labels instance (unique in the metric) and job."""
    return [
        (f"bench_metric_{i // SERIES_PER_METRIC}", {"instance": f"host-{i}", "job": "bench"})
        for i in range(first, first + count)
    ]


def otlp_template(series: list[Series]) -> BodyTemplate:
    """An OTLP ExportMetricsServiceRequest: one gauge per metric name, a point per series."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )

    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    attr = rm.resource.attributes.add(key="service.name")
    attr.value.string_value = "bench"
    scope = rm.scope_metrics.add()
    scope.scope.name = "bench_intake"
    metrics: dict[str, Any] = {}
    for index, (name, labels) in enumerate(series):
        metric = metrics.get(name)
        if metric is None:
            metric = metrics[name] = scope.metrics.add(name=name)
        point = metric.gauge.data_points.add(
            time_unix_nano=SENTINEL_MS * 1_000_000, as_double=float(index % 997)
        )
        for key, value in labels.items():
            point.attributes.add(key=key).value.string_value = value
    raw = request.SerializeToString()
    placeholder = ts_fixed64_ns(SENTINEL_MS)
    return _cut("otlp", raw, placeholder, len(series), encode_ts=ts_fixed64_ns)


def remote_write_template(series: list[Series]) -> BodyTemplate:
    """A remote_write 1.0 WriteRequest, one sample per series, snappy on render."""
    placeholder = ts_varint(SENTINEL_MS)
    parts = []
    for index, (name, labels) in enumerate(series):
        # The labels OTLP's resource gives (service.name -> service): the same series.
        pairs = [("__name__", name), *sorted({**labels, "service": "bench"}.items())]
        encoded = b"".join(
            _field(1, _field(1, k.encode()) + _field(2, v.encode())) for k, v in pairs
        )
        sample = b"\x09" + struct.pack("<d", float(index % 997)) + b"\x10" + placeholder
        parts.append(_field(1, encoded + _field(2, sample)))
    raw = b"".join(parts)
    return _cut("remote_write", raw, placeholder, len(series), encode_ts=ts_varint, snappy=True)


def track_template(count: int, first: int = 0) -> BodyTemplate:
    """A `/v1/track` batch of opens (ingest stamps the receive time)."""
    items = [
        {"type": "open", "tenant": TENANT, "email_id": f"e{first + i}", "ua": "bench"}
        for i in range(count)
    ]
    return BodyTemplate("track", (orjson.dumps(items),), count)


def templates_for(protocol: str, sender: int, per_sender: int, batch: int) -> list[BodyTemplate]:
    """The bodies one sender cycles through: its own `per_sender` x `batch` series."""
    out = []
    for k in range(per_sender):
        first = (sender * per_sender + k) * batch
        if protocol == "track":
            out.append(track_template(batch, first))
        elif protocol == "otlp":
            out.append(otlp_template(series_set(first, batch)))
        else:
            out.append(remote_write_template(series_set(first, batch)))
    return out


class Clock:
    """Epoch ms that never repeat nor go back (one per sender: its series' times grow)."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self.now = now
        self.last = 0

    def __call__(self) -> int:
        self.last = max(int(self.now() * 1000), self.last + 1)
        return self.last


# --- the load generator (a process of its own) ------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of unsorted values; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@dataclass
class LoadResult:
    protocol: str
    senders: int
    batch: int
    series: int
    seconds: float = 0.0
    requests: int = 0
    ok: int = 0  # 2xx
    samples_ok: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    cpu_s: float = 0.0  # the generator's own user + system CPU
    first_error: str | None = None

    @property
    def samples_per_s(self) -> float:
        return self.samples_ok / self.seconds if self.seconds else 0.0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def _sender(
    http: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    templates: list[BodyTemplate],
    stop_at: float,
    result: LoadResult,
    latencies: list[float],
    interval: float = 0.0,
    offset: float = 0.0,
) -> None:
    """POST templates in a loop until `stop_at`: back to back (closed loop), or one every
    `interval` seconds, starting `offset` seconds from now."""
    clock = Clock()
    index = 0
    next_at = time.monotonic() + offset
    while time.monotonic() < stop_at:
        if interval:
            # Paced: one request per interval; when late, at once (no burst to catch up).
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            next_at = max(next_at + interval, time.monotonic())
        template = templates[index % len(templates)]
        index += 1
        body = template.render(clock())
        started = time.perf_counter()
        try:
            async with http.post(url, data=body, headers=headers) as resp:
                answer = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            name = type(exc).__name__
            result.errors[name] = result.errors.get(name, 0) + 1
            result.first_error = result.first_error or f"{name}: {exc}"
            await asyncio.sleep(0.05)
            continue
        latencies.append((time.perf_counter() - started) * 1000)
        result.requests += 1
        result.statuses[str(status)] = result.statuses.get(str(status), 0) + 1
        if 200 <= status < 300:
            result.ok += 1
            result.samples_ok += template.samples
        elif result.first_error is None:
            result.first_error = f"HTTP {status}: {answer[:300]!r}"


async def generate(args: argparse.Namespace) -> LoadResult:
    per_sender = max(1, math.ceil(args.series / args.senders / args.batch))
    result = LoadResult(
        args.protocol, args.senders, args.batch, per_sender * args.senders * args.batch
    )
    templates = [
        templates_for(args.protocol, s, per_sender, args.batch) for s in range(args.senders)
    ]
    headers = dict(HEADERS[args.protocol], Authorization=f"Bearer {args.token}")
    url = args.url.rstrip("/") + PATHS[args.protocol]
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=args.senders)
    timeout = aiohttp.ClientTimeout(total=30)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        started = time.monotonic()
        stop_at = started + args.duration
        # --rate: each sender sends rate / senders items per second, staggered.
        interval = args.batch * args.senders / args.rate if args.rate else 0.0
        await asyncio.gather(
            *(
                _sender(
                    http,
                    url,
                    headers,
                    templates[s],
                    stop_at,
                    result,
                    latencies,
                    interval,
                    interval * s / args.senders,
                )
                for s in range(args.senders)
            )
        )
        result.seconds = round(time.monotonic() - started, 3)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    result.cpu_s = round(
        cpu_after.ru_utime + cpu_after.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime, 2
    )
    result.latency_ms = {
        f"p{q}": (round(v, 2) if (v := percentile(latencies, q / 100)) is not None else None)
        for q in (50, 90, 99)
    }
    result.latency_ms["max"] = round(max(latencies), 2) if latencies else None
    return result


def generate_main(argv: list[str]) -> int:
    import uvloop

    parser = argparse.ArgumentParser(prog="bench_intake.py generate")
    parser.add_argument("--url", required=True)
    parser.add_argument("--protocol", choices=PROTOCOLS, required=True)
    parser.add_argument("--token", default="")
    parser.add_argument("--senders", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--rate", type=float, default=0.0)
    args = parser.parse_args(argv)
    result = uvloop.run(generate(args))
    sys.stdout.buffer.write(orjson.dumps(asdict(result)) + b"\n")
    return 0


async def run_load(
    ctx: hot.Ctx, base: str, protocol: str, token: str, name: str, paced: bool = True
) -> tuple[LoadResult, int]:
    """Run the generator in a process of its own; its result and its pid. Unpaced (the
    ceiling): back to back whatever --rate says."""
    args = ctx.args
    rate = (args.track_rate if protocol == "track" else args.rate) if paced else 0.0
    argv = [
        sys.executable, SELF, "generate", "--url", base,
        "--protocol", protocol, "--token", token, "--senders", str(args.senders),
        "--batch", str(args.track_batch if protocol == "track" else args.batch),
        "--series", str(args.series), "--duration", str(args.duration),
        "--rate", str(rate),
    ]  # fmt: skip
    print(
        f"  {name}: {protocol}, {args.senders} senders x "
        f"{argv[argv.index('--batch') + 1]}/request, {args.duration}s",
        flush=True,
    )
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), args.duration + 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise hot.BenchError(f"load generator failed: {err.decode(errors='replace')[-800:]}")
    doc = orjson.loads(out)
    return LoadResult(**doc), proc.pid


# --- the Belfry side --------------------------------------------------------------------


def rules_yaml(metrics: int) -> str:
    """One rule per metric sent: a 10 s average that never fires (no notifications),
    so the store keeps every sample and every tick evaluates every series."""
    lines = ["rules:"]
    for m in range(metrics):
        lines += [
            f"  - name: BenchMetric{m}",
            f"    tenant: {TENANT}",
            f'    condition: "avg(bench_metric_{m}[10s]) > 1000000000000"',
            "    no_data: keep",
        ]
    return "\n".join(lines) + "\n"


def counter(metrics: dict[str, float], name: str, **labels: str) -> float:
    """A counter's value from a scrape, summing over the labels not given."""
    total = 0.0
    for key, value in metrics.items():
        metric, _, rest = key.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


@dataclass
class Services:
    ingest: Child
    alerting: Child
    writer: Child
    ingest_base: str
    alerting_base: str
    writer_base: str
    db: str


Snapshot = tuple[dict[str, float], dict[int, float]]  # by name; bench database backends


async def cpu_snapshot(ctx: hot.Ctx, svc: Services) -> Snapshot:
    """CPU seconds so far: our processes, RabbitMQ and Postgres (all of the machine's:
    shared with whatever else runs), the backends serving the bench database (ours
    alone: `postgres_bench`), and the machine."""
    out = {
        name: cpu_seconds(p.pid) or 0.0
        for name, p in (("ingest", svc.ingest), ("alerting", svc.alerting), ("writer", svc.writer))
    }
    servers = cpu_seconds_by_name(hot.SERVER_COMMANDS)
    for command, label in hot.SERVER_COMMANDS.items():
        out[label] = servers[command]
    busy, total = machine_cpu()
    out["machine_busy"], out["machine_total"] = busy, total
    conn = await asyncpg.connect(ctx.args.postgres_url, timeout=5)
    try:
        rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", svc.db)
    finally:
        await conn.close()
    backends = {r["pid"]: cpu_seconds(r["pid"]) or 0.0 for r in rows}
    return out, backends


def cpu_delta(before: Snapshot, after: Snapshot) -> dict[str, float]:
    out = {k: round(after[0][k] - before[0][k], 2) for k in before[0]}
    # A backend that started meanwhile counts whole; one that ended is lost (rare: pools).
    used = sum(cpu - before[1].get(pid, 0.0) for pid, cpu in after[1].items())
    out["postgres_bench"] = round(used, 2)
    return out


async def progress(ctx: hot.Ctx, svc: Services, protocol: str) -> tuple[float, float]:
    """(delivered downstream, stored by ingest) so far: samples kept by alerting vs
    published/spooled by ingest; for track, rows inserted by the writer vs opens."""
    ingest = await hot.scrape(ctx.http, svc.ingest_base)
    if protocol == "track":
        writer = await hot.scrape(ctx.http, svc.writer_base)
        done = writer.get("belfry_writer_rows_inserted_total", 0.0)
        stored = float(hot.open_counter(ingest, "published") + hot.open_counter(ingest, "spooled"))
        return done, stored
    alerting = await hot.scrape(ctx.http, svc.alerting_base)
    done = counter(alerting, "belfry_alerting_samples_total", outcome="kept")
    stored = counter(ingest, "belfry_ingest_samples_total", outcome="published")
    stored += counter(ingest, "belfry_ingest_samples_total", outcome="spooled")
    return done, stored


async def belfry_phase(ctx: hot.Ctx, svc: Services, protocol: str, token: str) -> dict[str, Any]:
    """One protocol's load against Belfry, then the wait until it was all delivered."""
    done0, stored0 = await progress(ctx, svc, protocol)
    alerting0 = await hot.scrape(ctx.http, svc.alerting_base)
    samplers = {n: PeakRss(p.pid) for n, p in (("ingest", svc.ingest), ("alerting", svc.alerting))}
    for sampler in samplers.values():
        sampler.start()
    try:
        cpu0 = await cpu_snapshot(ctx, svc)
        started = time.monotonic()
        load, _ = await run_load(ctx, svc.ingest_base, protocol, token, "belfry")
        load_end = time.monotonic()
        cpu_load = await cpu_snapshot(ctx, svc)
        done, stored = await progress(ctx, svc, protocol)
        done_at_end = done - done0
        caught_up = False
        while time.monotonic() - load_end < CATCH_UP_TIMEOUT:
            done, stored = await progress(ctx, svc, protocol)
            if done - done0 >= stored - stored0:
                caught_up = True
                break
            await asyncio.sleep(hot.POLL)
        caught_at = time.monotonic()
        cpu_end = await cpu_snapshot(ctx, svc)
    finally:
        for sampler in samplers.values():
            await sampler.stop()
    alerting1 = await hot.scrape(ctx.http, svc.alerting_base)
    ignored = counter(alerting1, "belfry_alerting_samples_total", outcome="ignored") - counter(
        alerting0, "belfry_alerting_samples_total", outcome="ignored"
    )
    return summarize_phase(
        load=load,
        stored=stored - stored0,
        delivered=done - done0,
        delivered_at_load_end=done_at_end,
        load_wall_s=load_end - started,
        lag_s=caught_at - load_end if caught_up else None,
        caught_up=caught_up,
        cpu_load=cpu_delta(cpu0, cpu_load),
        cpu_total=cpu_delta(cpu0, cpu_end),
        ignored=ignored,
        rss_mb={n: round(s.peak_kb / 1024, 1) for n, s in samplers.items()},
    )


def summarize_phase(
    *,
    load: LoadResult,
    stored: float,
    delivered: float,
    delivered_at_load_end: float,
    load_wall_s: float,
    lag_s: float | None,
    caught_up: bool,
    cpu_load: dict[str, float],
    cpu_total: dict[str, float],
    ignored: float = 0.0,
    rss_mb: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The figures of one Belfry phase. End to end = everything delivered (kept by
    alerting, or rows for track) ÷ (load time + the lag until the last one arrived)."""
    span = load.seconds + (lag_s if lag_s is not None else CATCH_UP_TIMEOUT)
    cpu_total = _with_others(dict(cpu_total, generator=load.cpu_s))
    cpu_load = _with_others(dict(cpu_load, generator=load.cpu_s))
    per_sample = {
        k: round(1e6 * v / delivered, 2) if delivered else None
        for k, v in cpu_total.items()
        if k not in ("machine_total",)
    }
    return {
        "load": asdict(load) | {"samples_per_s": round(load.samples_per_s, 1)},
        "accepted_per_s": round(load.samples_per_s, 1),
        "stored": int(stored),
        "delivered": int(delivered),
        "delivered_per_s_during_load": round(delivered_at_load_end / load_wall_s, 1)
        if load_wall_s
        else None,
        "end_to_end_per_s": round(delivered / span, 1) if span else None,
        "all_delivered": caught_up and delivered >= load.samples_ok,
        "lag_s": round(lag_s, 3) if lag_s is not None else None,
        # Delivered within a second of the load's end: the pipeline kept pace with it.
        "kept_up": caught_up and lag_s is not None and lag_s <= KEPT_UP_LAG_S,
        # More delivered than stored: messages redelivered (after a lost channel) and
        # counted twice by alerting; 0 in a clean run.
        "excess_delivered": max(0, int(delivered - stored)),
        "ignored": int(ignored),
        "cpu_seconds_during_load": cpu_load,
        "cpu_seconds_until_delivered": cpu_total,
        "cpu_us_per_sample": per_sample,
        "peak_rss_mb": rss_mb or {},
    }


OURS = ("ingest", "alerting", "writer", "rabbitmq", "postgres_bench", "generator")


def _with_others(cpu: dict[str, float]) -> dict[str, float]:
    """`others`: the machine's busy CPU not spent by the bench's processes, RabbitMQ and
    the bench database's backends (other work on a shared machine; the kernel)."""
    if "machine_busy" in cpu:
        cpu["others"] = round(cpu["machine_busy"] - sum(cpu.get(k, 0.0) for k in OURS), 2)
    return cpu


async def start_belfry(ctx: hot.Ctx, token_keys: str) -> tuple[Services, dict[str, Any]]:
    """Migrate a fresh database, start writer, alerting, ingest; wait until ready."""
    suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(10))
    db_name, prefix = f"belfry_bench_{suffix}", f"bench{suffix}"
    resources = {"database": db_name, "prefix": prefix, "spool": str(ctx.work / "spool")}
    ctx_resources(ctx).update(resources)
    rules = ctx.work / "rules.yaml"
    rules.write_text(rules_yaml(math.ceil(ctx.args.series / SERIES_PER_METRIC)))
    ports = {name: free_port() for name in ("ingest", "writer", "alerting")}
    env = dict(
        hot.service_env(),
        DATABASE_URL=hot.db_url_for(ctx.args.postgres_url, db_name),
        AMQP_URL=ctx.args.amqp_url,
        BELFRY_PREFIX=prefix,
        INGEST_HOST="127.0.0.1",
        INGEST_PORT=str(ports["ingest"]),
        INGEST_WORKERS="1",
        INGEST_SPOOL_DIR=resources["spool"],
        INGEST_TOKEN_KEYS=token_keys,
        # Raised so that the tenant limits never cap the run (they'd answer 429).
        INTAKE_SAMPLES_PER_SECOND="1000000000",
        INTAKE_BURST_SAMPLES="1000000000",
        INTAKE_MAX_SERIES="10000000",
        WRITER_HOST="127.0.0.1",
        WRITER_PORT=str(ports["writer"]),
        ALERTING_HOST="127.0.0.1",
        ALERTING_PORT=str(ports["alerting"]),
        ALERTING_RULES_FILE=str(rules),
        CLICK_SIGNING_KEYS="bench:" + secrets.token_urlsafe(24)[:32],
        LOG_LEVEL="WARNING",
    )
    print(f"belfry: database {db_name}, prefix {prefix}", flush=True)
    migrate = await spawn(
        "migrate", [sys.executable, "-m", "shared.db", "migrate"], env=env, log=log(ctx, "migrate")
    )
    ctx.procs.append(migrate)
    if await asyncio.wait_for(migrate.proc.wait(), hot.READY_TIMEOUT) != 0:
        raise hot.BenchError(f"python -m shared.db migrate failed: {migrate.tail(5)}")
    await migrate.stop()
    procs = {}
    for name in ("writer", "alerting", "ingest"):
        argv = [sys.executable, "-m", f"services.{name}"]
        procs[name] = await spawn(name, argv, env=env, log=log(ctx, name))
        ctx.procs.append(procs[name])
    bases = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    for name in ("writer", "alerting", "ingest"):
        await ready(ctx, f"{bases[name]}/readyz", procs[name])
    svc = Services(
        procs["ingest"], procs["alerting"], procs["writer"],
        bases["ingest"], bases["alerting"], bases["writer"], db_name,
    )  # fmt: skip
    return svc, resources


def log(ctx: hot.Ctx, name: str) -> Path:
    return ctx.log_dir / f"{name}.log"


async def ready(ctx: hot.Ctx, url: str, child: Child) -> float:
    """Seconds until `url` answered 200 (NotReady, with the child's log tail, if not)."""
    return await wait_http_ok(url, child, timeout=hot.READY_TIMEOUT, session=ctx.http)


def ctx_resources(ctx: hot.Ctx) -> dict[str, str]:
    """What this run created, for the clean-up (kept on the Ctx's args namespace)."""
    if not hasattr(ctx.args, "created"):
        ctx.args.created = {}
    created: dict[str, str] = ctx.args.created
    return created


async def cleanup(ctx: hot.Ctx) -> None:
    for proc in ctx.procs:
        with hot.cleanup_step(f"stop {proc.name}", ctx.failures):
            await proc.stop()
    created = ctx_resources(ctx)
    if "prefix" in created:
        with hot.cleanup_step(f"delete topology {created['prefix']}", ctx.failures):
            await hot.delete_topology(ctx.args.amqp_url, created["prefix"])
    if "database" in created:
        with hot.cleanup_step(f"drop database {created['database']}", ctx.failures):
            await hot.drop_database(ctx.args.postgres_url, created["database"])
    if "spool" in created:
        with hot.cleanup_step("remove spool", ctx.failures):
            shutil.rmtree(created["spool"], ignore_errors=True)


def mint(tenant: str) -> tuple[str, str]:
    """(INGEST_TOKEN_KEYS, a token for `tenant`) for this run only."""
    from shared.ingest_tokens import mint_token, parse_keys

    raw = "bench:" + secrets.token_urlsafe(32)
    keys = parse_keys(raw)
    assert keys is not None
    return raw, mint_token(keys, tenant)


async def run_bare(ctx: hot.Ctx, protocols: tuple[str, ...]) -> dict[str, Any]:
    port = free_port()
    bare = await spawn(
        "bare_intake",
        [sys.executable, str(ROOT / "scripts" / "bare_intake.py"), "--port", str(port)],
        env=hot.service_env(),
        log=log(ctx, "bare_intake"),
    )
    ctx.procs.append(bare)
    base = f"http://127.0.0.1:{port}"
    print(f"ceiling: scripts/bare_intake.py at {base}", flush=True)
    await ready(ctx, f"{base}/readyz", bare)
    out: dict[str, Any] = {}
    for protocol in protocols:
        before = cpu_seconds(bare.pid) or 0.0
        busy0 = machine_cpu()
        load, _ = await run_load(ctx, base, protocol, "bare", "ceiling", paced=False)
        busy1 = machine_cpu()
        out[protocol] = {
            "load": asdict(load),
            "accepted_per_s": round(load.samples_per_s, 1),
            "cpu_seconds_during_load": {
                "bare": round((cpu_seconds(bare.pid) or 0.0) - before, 2),
                "generator": load.cpu_s,
                "machine_busy": round(busy1[0] - busy0[0], 2),
                "machine_total": round(busy1[1] - busy0[1], 2),
            },
        }
    await bare.stop()
    ctx.procs.remove(bare)
    return out


async def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    log_dir = work / "logs"
    log_dir.mkdir()
    report: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": hot.git_info(),
        "nproc": len(os.sched_getaffinity(0)),
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        "load": {
            "senders": args.senders,
            "batch": args.batch,
            "track_batch": args.track_batch,
            "series": args.series,
            "duration_s": args.duration,
            "rate": args.rate,
            "track_rate": args.track_rate,
        },
        "logs": str(log_dir),
    }
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        ctx = hot.Ctx(args, "", http, work, log_dir)
        try:
            report["ceiling"] = await run_bare(ctx, PROTOCOLS)
            keys, token = mint(TENANT)
            svc, resources = await start_belfry(ctx, keys)
            report["resources"] = resources
            report["belfry"] = {}
            # Hits last: a writer still catching up would slow the metric runs (it
            # shares Postgres with alerting's sample journal).
            for protocol in ("otlp", "remote_write", "track"):
                print(f"belfry: {protocol}", flush=True)
                report["belfry"][protocol] = await belfry_phase(ctx, svc, protocol, token)
            report["service_log_issues"] = {
                p.name: hot.scan_log(p.log) for p in (svc.ingest, svc.alerting, svc.writer)
            }
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
                for proc in ctx.procs:
                    if tail := proc.tail():
                        print(f"\n--- {proc.name} log tail ---\n{tail}", file=sys.stderr)
            raise
        finally:
            await cleanup(ctx)
            for failure in ctx.failures:
                print(f"bench: clean-up failed: {failure}", file=sys.stderr)
    report["cleanup_failures"] = ctx.failures
    report["summary"] = summarize(report)
    return report


# --- the report -------------------------------------------------------------------------


def ratio(part: float | None, whole: float | None) -> float | None:
    return round(part / whole, 3) if part is not None and whole else None


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """The headline figures per protocol, and each against the targets and the ceiling."""
    out: dict[str, Any] = {}
    paced = bool(report.get("load", {}).get("rate"))
    for protocol in PROTOCOLS:
        run = report["belfry"][protocol]
        bare = report["ceiling"][protocol]
        load = run["load"]
        p99 = load["latency_ms"].get("p99")
        cpu = run["cpu_seconds_during_load"]
        busy = cpu.get("machine_busy")
        cores = cpu.get("machine_total") / load["seconds"] if load["seconds"] else None
        e2e = run["end_to_end_per_s"]
        entry = {
            "accepted_per_s": run["accepted_per_s"],
            "end_to_end_per_s": e2e,
            "ceiling_per_s": bare["accepted_per_s"],
            "of_ceiling": ratio(run["accepted_per_s"], bare["accepted_per_s"]),
            "p50_ms": load["latency_ms"].get("p50"),
            "p99_ms": p99,
            "ceiling_p99_ms": bare["load"]["latency_ms"].get("p99"),
            "lag_s": run["lag_s"],
            "all_delivered": run["all_delivered"],
            # Share of the machine's CPU in use during the load: near 1, CPU-bound.
            "machine_busy_share": ratio(busy, cpu.get("machine_total")),
            "cores": round(cores, 2) if cores else None,
        }
        if protocol != "track":
            # Closed loop: what got through, lag included. Paced (--rate): the rate taken,
            # if alerting kept pace with it (else, again, what got through).
            sustained = run["accepted_per_s"] if paced and run.get("kept_up") else e2e
            entry["targets"] = {
                "end_to_end_samples_per_s": {
                    "value": sustained,
                    "want": f">= {MIN_SAMPLES_PER_S:,.0f}, all kept"
                    + (f", lag <= {KEPT_UP_LAG_S:g} s" if paced else ""),
                    "pass": bool(
                        sustained and sustained >= MIN_SAMPLES_PER_S and run["all_delivered"]
                    ),
                },
                "p99_intake_ms": {
                    "value": p99,
                    "want": f"<= {MAX_P99_MS}",
                    "pass": p99 is not None and p99 <= MAX_P99_MS,
                },
            }
        out[protocol] = entry
    track = out["track"]["end_to_end_per_s"]
    for protocol in ("otlp", "remote_write"):
        out[protocol]["vs_track_hits"] = ratio(out[protocol]["end_to_end_per_s"], track)
    return out


def fmt(value: Any, digits: int = 1) -> str:
    return hot.fmt(value, digits) if not isinstance(value, str) else value


Getter = Callable[[dict[str, Any]], Any]


def _table_row(
    label: str, cols: list[tuple[dict[str, Any], dict[str, Any]]], get: Getter, bare: Getter | None
) -> str:
    cells = ""
    for run, ceiling in cols:
        cells += f"{_cell(get, run):>14}{'' if bare is None else _cell(bare, ceiling):>10}"
    return f"{label:34}{cells}"


def _cell(get: Getter, doc: dict[str, Any]) -> str:
    try:
        value = get(doc)
    except (KeyError, TypeError, ZeroDivisionError):
        return "-"
    if isinstance(value, float):
        return hot.fmt(value, 2 if abs(value) < 100 else 1)
    return hot.fmt(value) if isinstance(value, int) else str(value)


def _cpu(name: str) -> Getter:
    return lambda r: r["cpu_seconds_during_load"][name]


def _latency(q: str) -> Getter:
    return lambda r: r["load"]["latency_ms"][q]


def _busy(r: dict[str, Any]) -> str:
    cpu = r["cpu_seconds_during_load"]
    return f"{cpu['machine_busy']:.1f}/{cpu['machine_total']:.0f}"


def _failed(r: dict[str, Any]) -> str:
    load = r["load"]
    return f"{load['requests'] - load['ok']}/{sum(load['errors'].values())}"


def _per_s(r: dict[str, Any]) -> float:
    return float(r["load"]["requests"] / r["load"]["seconds"])


# label, Belfry's figure, the bare app's (None: none)
ROWS: list[tuple[str, Getter, Getter | None]] = [
    ("accepted (2xx) items/s", lambda r: r["accepted_per_s"], lambda c: c["accepted_per_s"]),
    ("delivered items/s during load", lambda r: r["delivered_per_s_during_load"], None),
    ("end to end items/s (incl. lag)", lambda r: r["end_to_end_per_s"], None),
    ("lag after load stops, s", lambda r: r["lag_s"], None),
    ("all delivered / excess", lambda r: f"{r['all_delivered']}/{r['excess_delivered']}", None),
    ("ignored (Belfry's self-reports)", lambda r: r["ignored"], None),
    ("requests/s", _per_s, _per_s),
    ("latency p50 ms", _latency("p50"), _latency("p50")),
    ("latency p99 ms", _latency("p99"), _latency("p99")),
    ("latency max ms", _latency("max"), _latency("max")),
    ("non-2xx / errors", _failed, _failed),
    ("CPU s during load: ingest | bare", _cpu("ingest"), _cpu("bare")),
    ("  alerting", _cpu("alerting"), None),
    ("  writer", _cpu("writer"), None),
    ("  rabbitmq (beam.smp)", _cpu("rabbitmq"), None),
    ("  postgres: bench database", _cpu("postgres_bench"), None),
    ("  postgres: all (machine-wide)", _cpu("postgres"), None),
    ("  load generator", _cpu("generator"), _cpu("generator")),
    ("  others (not the bench's)", _cpu("others"), None),
    ("  machine busy / total", _busy, _busy),
    *[
        (
            f"CPU µs per item delivered: {n}" if n == "ingest" else f"  {n}",
            (lambda r, n=n: r["cpu_us_per_sample"][n]),
            None,
        )
        for n in ("ingest", "alerting", "writer", "rabbitmq", "postgres_bench", "generator")
    ],
    ("peak RSS MB: ingest", lambda r: r["peak_rss_mb"]["ingest"], None),
    ("  alerting", lambda r: r["peak_rss_mb"]["alerting"], None),
]


def print_report(report: dict[str, Any]) -> None:
    load = report["load"]
    paced = f", offered {load['rate']:,.0f}/s" if load.get("rate") else ", closed loop"
    print(
        f"\nmetric intake: {load['senders']} senders x {load['batch']} samples/request"
        f" ({load['track_batch']} hits for /v1/track){paced}, {load['series']:,} series,"
        f" {load['duration_s']}s per run (commit {report['git']['commit']},"
        f" {report['nproc']} cores, load avg {report['loadavg_1m_at_start']} at start)"
    )
    cols = [(report["belfry"][p], report["ceiling"][p]) for p in PROTOCOLS]
    print(f"{'':34}" + "".join(f"{p:>14}{'bare':>10}" for p in PROTOCOLS))
    for label, get, bare in ROWS:
        print(_table_row(label, cols, get, bare))
    summary = report["summary"]
    print()
    for protocol in ("otlp", "remote_write"):
        s = summary[protocol]
        print(
            f"{protocol}: ingest accepted {fmt(s['of_ceiling'], 3)} of the bare HTTP ceiling"
            f" ({fmt(s['accepted_per_s'])} of {fmt(s['ceiling_per_s'])} samples/s);"
            f" end to end {fmt(s['vs_track_hits'], 2)} x /v1/track hits/s;"
            f" machine busy {fmt((s['machine_busy_share'] or 0) * 100)} % during load"
        )
    print("\ntargets (issue 12)")
    for protocol in ("otlp", "remote_write"):
        for name, t in summary[protocol]["targets"].items():
            verdict = "PASS" if t["pass"] else "FAIL"
            label = f"{protocol} {name}"
            print(f"  {verdict}  {label:44}{fmt(t['value']):>12}  (want {t['want']})")
    for name, found in report.get("service_log_issues", {}).items():
        if found["count"]:
            print(f"\n{name} log: {found['count']} warning/error line(s), e.g.:")
            for sample in found["samples"]:
                print(f"    {sample}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["generate"]:
        return generate_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=15, help="seconds per run (15)")
    parser.add_argument("--senders", type=int, default=5, help="concurrent senders (5)")
    parser.add_argument("--batch", type=int, default=2000, help="samples per request (2000)")
    parser.add_argument(
        "--track-batch",
        type=int,
        default=1000,
        help="hits per /v1/track request (1000, TRACK_MAX_ITEMS)",
    )
    parser.add_argument("--series", type=int, default=10_000, help="distinct series (10,000)")
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="samples/s offered, all senders together (0: each sender back to back)",
    )
    parser.add_argument(
        "--track-rate",
        type=float,
        default=0.0,
        help="hits/s offered to /v1/track (0: back to back)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="belfry-bench-intake-"))
    try:
        report = asyncio.run(bench(args, work))
    except (hot.BenchError, NotReady) as exc:
        print(f"bench_intake: {exc}\nservice logs in {work / 'logs'}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        shutil.rmtree(work, ignore_errors=True)
        print("bench_intake: interrupted (cleaned up)", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print(f"bench_intake: failed; service logs in {work / 'logs'}", file=sys.stderr)
        return 1
    print_report(report)
    noisy = any(f["count"] for f in report.get("service_log_issues", {}).values())
    return hot.save_report(report, "bench-intake", work, noisy)


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main(sys.argv[1:]))
