"""`make bench`: Belfry's ingest against a bare aiohttp pixel under wrk, end to end.

1. wrk against `scripts/bare_pixel.py` (same loop, same bytes, no work): the ceiling.
2. The same wrk against the real ingest + writer, tracing off, on a throwaway database
   (`belfry_bench_<random>`), topology prefix (`bench<random>`) and spool directory.
3. After the load stops: wait until every recorded open is a row in Postgres, count
   duplicates, measure how long the last row took, and ingest's peak RSS.
4. Stop the services with SIGTERM (timed), drop the database, delete the topology.
5. Unless `--no-tracing`: steps 2-4 twice more with tracing on in both services
   (`OTEL_TRACES_SAMPLER=parentbased_traceidratio`, ratio 0.01 then 1.0), exporting
   OTLP/HTTP to `scripts/otlp_sink.py`, each run on fresh resources of its own. The
   overhead target compares tracing off and 1 % side by side: two stacks loaded at
   once, each by a wrk with half the connections, twice with the order swapped
   (`--side-by-side-aa`: off against off, to see the comparison's own noise).

Before every wrk run the bench waits (up to 10 min) until no other wrk runs on the
machine, and it records any that started during one of its runs.

Results are printed as a table with PASS/FAIL per hot-path target (bench/README.md) and for the
tracing overhead, and written to `bench/results/bench-<UTC timestamp>.json`. The exit
code is 0 whatever the numbers say; it is non-zero only when the benchmark itself could
not run (wrk missing, a service that did not start, a failed clean-up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import shutil
import string
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import asyncpg
import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: only scripts/ is on sys.path
    sys.path.insert(0, str(ROOT))

from devtools.children import Child, spawn  # noqa: E402
from devtools.ports import free_port  # noqa: E402
from devtools.ready import NotReady, wait_http_ok  # noqa: E402
from devtools.usage import (  # noqa: E402
    PeakRss,
    cpu_seconds,
    cpu_seconds_by_name,
    machine_cpu,
    processes_named,
)

RESULTS_DIR = ROOT / "bench" / "results"
TENANT = "acme"
PIXEL_PATH = f"/{TENANT}/pixel/e1.gif"
# `--emails N`: wrk draws each request's email from N (scripts/wrk_emails.lua).
WRK_EMAILS = ROOT / "scripts" / "wrk_emails.lua"
# What a mail client sends (wrk sends no User-Agent by default, which would make every
# hit a "scanner" and skip the user-agent rules): Apple Mail on an iPhone.
USER_AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)

READY_TIMEOUT = 30.0  # start-up of a service until /readyz (or the pixel) answers 200
ROWS_TIMEOUT = 60.0  # load stopped until every recorded open must be a row
STOP_TIMEOUT = 35.0  # services exit well inside 30 s after SIGTERM (README); then SIGKILL
POLL = 0.05
OTHER_WRK_TIMEOUT = 600.0  # wait this long for someone else's wrk to finish before ours

# The hot-path targets (bench/README.md): what the numbers are judged by.
MIN_RATIO = 0.70
MIN_VS_NAIVE = 3.0  # issue 15: Belfry against the peer that INSERTs each hit
MAX_P99_MS = 25.0
MAX_LAST_ROW_S = 5.0
MAX_RSS_MB = 80.0
# Issue 15: what a stored hit costs ingest + writer + RabbitMQ + Postgres, at most this
# many times what the bare app spends per answered request (CPU, during the -c64 load).
MAX_PIPELINE_CPU = 2.0
PIPELINE_PARTS = ("ingest", "writer", "rabbitmq", "postgres")
# Tracing overhead: with 1 % sampling, ingest keeps >= 90 % of its tracing-off throughput.
MIN_TRACED_RATIO = 0.90
SAMPLER = "parentbased_traceidratio"
# The machine's servers whose CPU the hits also cost (command name -> label in the report).
SERVER_COMMANDS = {"beam.smp": "rabbitmq", "postgres": "postgres"}

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION = r"([\d.]+)(us|ms|s|m|h)"


class BenchError(RuntimeError):
    """The benchmark could not run (as opposed to: it ran and the numbers are bad)."""


# --- wrk -------------------------------------------------------------------------------


@dataclass
class WrkResult:
    requests: int
    seconds: float
    requests_per_s: float
    latency_ms: dict[str, float]  # "50%", "75%", "90%", "99%"
    non_2xx_3xx: int
    socket_errors: dict[str, int]  # connect, read, write, timeout
    raw: str = field(repr=False)
    # Another agent's wrk on the same cores would skew both runs: we wait until none runs
    # before starting ours, and record any that started while ours was running.
    waited_for_other_wrk_s: float = 0.0
    other_wrk_during_run: list[str] = field(default_factory=list)
    # CPU seconds the served process used during the run (set by the caller).
    server_cpu_s: float | None = None
    # The whole machine during the run (devtools.usage.machine_cpu): busy and total CPU
    # seconds, total being cores x wall time. Busy counts wrk, every process and the kernel.
    machine_busy_s: float | None = None
    machine_total_s: float | None = None

    @property
    def server_cpu_us_per_request(self) -> float | None:
        if self.server_cpu_s is None or not self.requests:
            return None
        return 1e6 * self.server_cpu_s / self.requests

    @property
    def machine_us_per_request(self) -> float | None:
        if self.machine_busy_s is None or not self.requests:
            return None
        return 1e6 * self.machine_busy_s / self.requests

    @property
    def p50_ms(self) -> float:
        return self.latency_ms["50%"]

    @property
    def p99_ms(self) -> float:
        return self.latency_ms["99%"]

    @property
    def ok(self) -> int:
        """Responses wrk saw as 2xx/3xx (the pixel answers only 200)."""
        return self.requests - self.non_2xx_3xx


def to_ms(value: str, unit: str) -> float:
    return float(value) * _UNIT_MS[unit]


def parse_wrk(text: str) -> WrkResult:
    """Parse `wrk --latency` output; raises BenchError when a needed line is missing."""
    total = re.search(rf"^\s*(\d+) requests in {_DURATION}", text, re.M)
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    latency = {
        f"{m[1]}%": to_ms(m[2], m[3])
        for m in re.finditer(rf"^\s*(50|75|90|99)%\s+{_DURATION}\s*$", text, re.M)
    }
    if total is None or rate is None or not {"50%", "99%"} <= latency.keys():
        raise BenchError(f"cannot parse wrk output:\n{text}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    names = ("connect", "read", "write", "timeout")
    return WrkResult(
        requests=int(total[1]),
        seconds=to_ms(total[2], total[3]) / 1000,
        requests_per_s=float(rate[1]),
        latency_ms=latency,
        non_2xx_3xx=int(non_2xx[1]) if non_2xx else 0,
        socket_errors={n: int(errors[i + 1]) if errors else 0 for i, n in enumerate(names)},
        raw=text,
    )


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() != 0:
        raise BenchError("wrk is not installed and we are not root: apt-get install -y wrk")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    print("installing wrk: " + " ".join(install), flush=True)
    done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        # A fresh machine has no package lists yet: refresh them once and retry.
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        done = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
    path = shutil.which("wrk")
    if done.returncode != 0 or not path:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise BenchError(f"apt-get install -y wrk failed: {last}")
    return path


def other_wrk(exclude: int | None = None) -> list[str]:
    """`<pid> <command line>` of every wrk process on the machine but `exclude`."""
    return processes_named("wrk", exclude)


async def wait_for_no_other_wrk() -> float:
    """Wait until no wrk runs on the machine (someone else benchmarking); seconds waited."""
    started = time.monotonic()
    announced = False
    while running := other_wrk():
        waited = time.monotonic() - started
        if waited >= OTHER_WRK_TIMEOUT:
            raise BenchError(
                f"another wrk still running after {OTHER_WRK_TIMEOUT:.0f}s: {'; '.join(running)}"
            )
        if not announced:
            print(f"  waiting for another wrk to finish: {'; '.join(running)}", flush=True)
            announced = True
        await asyncio.sleep(1.0)
    waited = round(time.monotonic() - started, 1)
    if announced:
        print(f"  ... it finished after {waited:.0f}s", flush=True)
    return waited


async def watch_other_wrk(ours: int, seen: list[str]) -> None:
    """Until cancelled: note every other wrk that runs while ours does."""
    while True:
        for found in await asyncio.to_thread(other_wrk, ours):
            if found not in seen:
                seen.append(found)
        await asyncio.sleep(1.0)


async def run_wrk(
    wrk: str, url: str, args: argparse.Namespace, out: Path, partners: set[int] | None = None
) -> WrkResult:
    """`partners`: this wrk runs side by side with others (their pids, shared): the
    caller waited for a quiet machine, and they don't count as someone else's wrk."""
    cmd = [wrk, f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency"]
    env = None
    if args.emails > 1:  # the same tenant, a random one of N emails per request
        cmd += ["-s", str(WRK_EMAILS)]
        env = dict(os.environ, BELFRY_BENCH_EMAILS=str(args.emails), BELFRY_BENCH_TENANT=TENANT)
    cmd += ["-H", f"User-Agent: {USER_AGENT}"]
    waited = 0.0 if partners is not None else await wait_for_no_other_wrk()
    print(f"  $ {' '.join([*cmd[:-2], '-H', repr(cmd[-1]), url])}", flush=True)
    proc = await asyncio.create_subprocess_exec(
        *cmd, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
    )
    if partners is not None:
        partners.add(proc.pid)
    overlapping: list[str] = []
    watcher = asyncio.create_task(watch_other_wrk(proc.pid, overlapping))
    busy_before = machine_cpu()
    try:
        # wrk stops itself after --duration; the margin covers its connection teardown.
        stdout, _ = await asyncio.wait_for(proc.communicate(), args.duration + 30)
        busy_after = machine_cpu()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise BenchError(f"wrk did not finish within {args.duration + 30}s") from None
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        if proc.returncode is None:  # cancelled (Ctrl-C): don't leave wrk loading a port
            proc.kill()
    if partners is not None:  # the pids are all in by now: a partner started with ours
        overlapping[:] = [o for o in overlapping if int(o.split(" ", 1)[0]) not in partners]
    text = stdout.decode(errors="replace")
    await asyncio.to_thread(out.write_text, text)
    if proc.returncode != 0:
        raise BenchError(f"wrk exited with {proc.returncode}: {text.strip()[-300:]}")
    result = parse_wrk(text)
    result.waited_for_other_wrk_s = waited
    result.other_wrk_during_run = overlapping
    result.machine_busy_s = round(busy_after[0] - busy_before[0], 2)
    result.machine_total_s = round(busy_after[1] - busy_before[1], 2)
    if overlapping:
        print(f"  WARNING: another wrk ran during this run: {'; '.join(overlapping)}", flush=True)
    return result


# --- processes under test --------------------------------------------------------------


async def start_proc(name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> Child:
    """A process under test (devtools: a session of its own, so a Ctrl-C on the terminal
    reaches only us and we stop them with SIGTERM: their shutdown is part of what is
    measured), its output in `<log_dir>/<name>.log`."""
    return await spawn(name, argv, env=env, log=log_dir / f"{name}.log")


async def stop_proc(proc: Child, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then wait for the exit (timed); SIGKILL if it hangs. Idempotent."""
    await proc.stop(timeout)


async def wait_http_200(http: aiohttp.ClientSession, url: str, proc: Child) -> float:
    """Poll `url` until it answers 200; NotReady at once if the process dies. Seconds."""
    return await wait_http_ok(url, proc, timeout=READY_TIMEOUT, session=http)


# --- Prometheus text -------------------------------------------------------------------


async def scrape(http: aiohttp.ClientSession, base: str) -> dict[str, float]:
    """`/metrics` as {'name{labels}': value} (label order as exposed)."""
    async with http.get(f"{base}/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[key] = float(value)
    return out


def open_counter(metrics: dict[str, float], outcome: str) -> int:
    return int(metrics.get(f'belfry_ingest_events_total{{kind="open",outcome="{outcome}"}}', 0))


# --- the Belfry run --------------------------------------------------------------------


@dataclass
class Persistence:
    wrk_2xx: int
    recorded: dict[str, int]  # ingest's open counter by outcome (published/spooled/dropped)
    rows: int = 0
    duplicates: int = 0
    all_landed: bool = False
    seconds_until_last_row: float | None = None  # observed by polling after wrk ended
    last_stored_at_s: float | None = None  # max(stored_at) - wrk end, from the database

    @property
    def recorded_total(self) -> int:
        return self.recorded["published"] + self.recorded["spooled"]


async def wait_for_rows(
    http: aiohttp.ClientSession, ingest: str, writer: str, db_url: str, wrk_end: float, wrk_2xx: int
) -> Persistence:
    """Poll until every open ingest recorded (and at least every 2xx wrk saw) is a row.

    The writer's row counter is cheap to read, so it paces the polling; `count(*)` on
    the table (the ground truth) runs when that counter says "done", or once a second,
    so the check itself doesn't slow the writer it is timing.
    """
    conn = await asyncpg.connect(db_url, timeout=5)
    try:
        result = Persistence(wrk_2xx, {})
        deadline = wrk_end + ROWS_TIMEOUT
        next_count = 0.0
        while True:
            metrics = await scrape(http, ingest)
            result.recorded = {o: open_counter(metrics, o) for o in ("published", "spooled")}
            result.recorded["dropped"] = open_counter(metrics, "dropped")
            target = max(result.recorded_total, wrk_2xx)
            inserted = (await scrape(http, writer)).get("belfry_writer_rows_inserted_total", 0)
            now = time.monotonic()
            if inserted >= target or now >= next_count or now >= deadline:
                result.rows = await conn.fetchval("SELECT count(*) FROM events")
                seen = time.monotonic()
                next_count = seen + 1.0
                # Re-read the counters: a late hit must not slip in between the reads.
                again = await scrape(http, ingest)
                recorded = open_counter(again, "published") + open_counter(again, "spooled")
                if result.rows >= target and recorded == result.recorded_total:
                    result.all_landed = True
                    result.seconds_until_last_row = round(seen - wrk_end, 3)
                    break
                if seen >= deadline:
                    break
            await asyncio.sleep(POLL)
        result.duplicates = await conn.fetchval("SELECT count(*) - count(DISTINCT id) FROM events")
        last = await conn.fetchval("SELECT extract(epoch FROM max(stored_at)) FROM events")
        if last is not None:
            # Same machine, same wall clock; stored_at is the insert transaction's start.
            wall_end = time.time() - (time.monotonic() - wrk_end)
            result.last_stored_at_s = round(float(last) - wall_end, 3)
        return result
    finally:
        await conn.close()


async def drop_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url, timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def delete_topology(amqp_url: str, prefix: str) -> None:
    if str(ROOT) not in sys.path:  # run as a file: the repo root is not on sys.path
        sys.path.insert(0, str(ROOT))
    from shared.topology import Topology, delete_all

    conn = await aio_pika.connect(amqp_url, timeout=5)
    try:
        await delete_all(await conn.channel(), Topology(prefix))
    finally:
        await conn.close()


def db_url_for(admin_url: str, name: str) -> str:
    return admin_url.rsplit("/", 1)[0] + "/" + name


def scan_log(path: Path | None, limit: int = 5) -> dict[str, Any]:
    """Warnings, errors and non-JSON lines (tracebacks) a service wrote during the run."""
    count, samples = 0, list[str]()
    try:
        lines = path.read_text(errors="replace").splitlines() if path else []
    except OSError:
        return {"count": 0, "samples": []}
    for line in lines:
        try:
            doc = orjson.loads(line)
            bad = not isinstance(doc, dict) or doc.get("level") in {"warning", "error", "critical"}
        except orjson.JSONDecodeError:
            bad = bool(line.strip())
        if bad:
            count += 1
            if len(samples) < limit:
                samples.append(line[:400])
    return {"count": count, "samples": samples}


# --- reporting -------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    value: float | int | None
    limit: str
    ok: bool
    digits: int = 1


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "dirty": bool(git("status", "--porcelain")),
    }


def fmt(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def print_report(report: dict[str, Any], targets: list[Target]) -> None:
    base, ing, e2e = report["baseline"], report["ingest"], report["persistence"]
    rows: list[tuple[str, str, str]] = [
        ("requests/s", fmt(base["requests_per_s"], 1), fmt(ing["requests_per_s"], 1)),
        ("latency p50 ms", fmt(base["p50_ms"]), fmt(ing["p50_ms"])),
        ("latency p99 ms", fmt(base["p99_ms"]), fmt(ing["p99_ms"])),
        ("requests", fmt(base["requests"]), fmt(ing["requests"])),
        ("non-2xx/3xx", fmt(base["non_2xx_3xx"]), fmt(ing["non_2xx_3xx"])),
        (
            "socket errors",
            fmt(sum(base["socket_errors"].values())),
            fmt(sum(ing["socket_errors"].values())),
        ),
    ]
    wrk = report["wrk"]
    print(
        f"\nwrk -t{wrk['threads']} -c{wrk['connections']} -d{wrk['duration_s']}s --latency"
        + (f" -s scripts/wrk_emails.lua ({wrk['emails']:,} emails)" if wrk["emails"] > 1 else "")
        + f"   (commit {report['git']['commit']}, {report['nproc']} cores,"
        f" load avg {report['loadavg_1m_at_start']} at start)"
    )
    print(f"{'':24}{'baseline':>14}{'ingest':>14}")
    for label, left, right in rows:
        print(f"{label:24}{left:>14}{right:>14}")
    rec = e2e["recorded"]
    shutdown = report["shutdown"]
    budget = report["machine_budget"]
    before, after = base["requests_per_s"], report["baseline_after"]["requests_per_s"]
    lines = [
        (
            "baseline requests/s",
            f"{fmt(before, 1)} before, {fmt(after, 1)} after the ingest run"
            f" (mean {fmt(report['baseline_mean_rps'], 1)}, drift {fmt(after / before - 1, 3)})",
        ),
        ("ingest / baseline mean", fmt(report["ratio"], 3)),
        (
            "naive peer",
            f"{fmt(report['naive_before_rps'], 1)} before, "
            f"{fmt(report['naive']['requests_per_s'], 1)} req/s after, p99"
            f" {fmt(report['naive']['p99_ms'])} ms, {fmt(report['naive']['rows'])} rows;"
            f" ingest ÷ naive mean {fmt(report['ingest_vs_naive'], 2)}",
        ),
        (
            "CPU µs per request",
            "baseline {baseline}, ingest {ingest} (+ per hit: writer {writer}, "
            "rabbitmq {rabbitmq}, postgres {postgres})".format(
                **{k: fmt(v, 0) for k, v in report["cpu_us_per_request"].items()}
            ),
        ),
        (
            "pipeline CPU per hit",
            pipeline_line(report["pipeline_cpu"]),
        ),
        (
            "CPU ceiling",
            f"{fmt(report['cpu_us_per_request']['ceiling'], 3)} = baseline µs ÷ ingest µs:"
            " the best ratio with a core to itself and no wait for confirms",
        ),
        (
            "machine CPU µs/request",
            f"baseline {fmt(budget['baseline_us'], 0)}, ingest {fmt(budget['ingest_us'], 0)}"
            " (the whole machine: wrk, services, servers, kernel)",
        ),
        (
            "machine ceiling",
            f"{fmt(budget['ceiling'], 3)} = the ratio with every core busy at that cost per hit",
        ),
        (
            f"budget for {MIN_RATIO}",
            f"{fmt(budget['target_us'], 0)} µs per hit: {fmt(budget['left_us'], 0)} beyond the"
            f" bare run's cost, for ingest's own work + writer, RabbitMQ and Postgres"
            f" (these three: {fmt(budget['downstream_us'], 0)})",
        ),
        ("2xx responses (wrk)", fmt(e2e["wrk_2xx"])),
        (
            "opens recorded (ingest)",
            f"{fmt(rec['published'] + rec['spooled'])} "
            f"(published {rec['published']:,}, spooled {rec['spooled']:,}, "
            f"dropped {rec['dropped']:,})",
        ),
        ("rows persisted", fmt(e2e["rows"])),
        ("duplicate rows", fmt(e2e["duplicates"])),
        ("last row after load, s", fmt(e2e["seconds_until_last_row"], 3)),
        ("  (max stored_at), s", fmt(e2e["last_stored_at_s"], 3)),
        ("events per AMQP message", fmt(report["ingest_batch_events_avg"], 1)),
        ("batch confirm avg ms", fmt(report["ingest_confirm_ms_avg"], 2)),
        ("ingest peak RSS MB", fmt(report["ingest_peak_rss_mb"], 1)),
        (
            "CPU s during load",
            ", ".join(f"{k} {v:.1f}" for k, v in report["cpu_seconds_during_load"].items()),
        ),
        ("writer peak RSS MB", fmt(report["writer_peak_rss_mb"], 1)),
    ]
    for name in ("ingest", "writer"):
        s = shutdown.get(name) or {}
        killed = " (SIGKILLed)" if s.get("killed") else ""
        lines.append(
            (
                f"{name} SIGTERM → exit",
                f"{fmt(s.get('seconds'), 3)} s, code {s.get('exit_code')}{killed}",
            )
        )
    print()
    for label, value in lines:
        print(f"{label:26}{value}")
    if high := report.get("high_connections"):
        print(f"\nwith -c{high['connections']}:")
        for label in ("baseline", "naive", "ingest"):
            run = high[label]
            print(
                f"  {label:10}{fmt(run['requests_per_s'], 1):>10} req/s"
                f"   p99 {fmt(run['p99_ms'])} ms"
            )
        print(
            f"  ingest ÷ baseline {fmt(high['ratio'], 3)}, ingest ÷ naive"
            f" {fmt(high['ingest_vs_naive'], 2)}; rows {fmt(high['persistence']['rows'])}"
            f", duplicates {fmt(high['persistence']['duplicates'])}"
        )
    print("\ntargets (hot path, bench/README.md)")
    for t in targets:
        verdict = "PASS" if t.ok else "FAIL"
        print(f"  {verdict}  {t.name:34}{fmt(t.value, t.digits):>12}  (want {t.limit})")
    issues = report["service_log_issues"]
    for name, found in issues.items():
        if found["count"]:
            print(f"\n{name} log: {found['count']} warning/error line(s), e.g.:")
            for sample in found["samples"]:
                print(f"    {sample}")


def print_tracing(report: dict[str, Any], targets: list[Target]) -> None:
    """Tracing off / 1 % / 100 % side by side, then the overhead target."""
    tracing = report["tracing"]
    # The tracing-off column is the main run, reported at the top level.
    off = {k: report[k] for k in TRACED_RUN_KEYS} | {"sink": None, "ratio_vs_off": 1.0}
    columns = [off] + [tracing["runs"][m.key] for m in TRACED]

    def row(label: str, get: Any, digits: int = 2) -> tuple[str, list[str]]:
        cells = []
        for col in columns:
            try:
                cells.append(fmt(get(col), digits))
            except (KeyError, TypeError):
                cells.append("-")
        return label, cells

    def cpu(name: str) -> Any:
        return lambda c: c["cpu_seconds_during_load"][name]

    rows = [
        row("requests/s", lambda c: c["ingest"]["requests_per_s"], 1),
        row("latency p50 ms", lambda c: c["ingest"]["p50_ms"]),
        row("latency p99 ms", lambda c: c["ingest"]["p99_ms"]),
        row("requests/s ÷ off, in turn", lambda c: c["ratio_vs_off"], 3),
        row("requests", lambda c: c["ingest"]["requests"]),
        row("non-2xx/3xx", lambda c: c["ingest"]["non_2xx_3xx"]),
        row("socket errors", lambda c: sum(c["ingest"]["socket_errors"].values())),
        row("sink: export requests", lambda c: c["sink"]["requests"]),
        row("sink: MB received", lambda c: c["sink"]["bytes"] / 1e6, 2),
        row(
            "opens recorded (ingest)",
            lambda c: (
                c["persistence"]["recorded"]["published"] + c["persistence"]["recorded"]["spooled"]
            ),
        ),
        row("rows persisted", lambda c: c["persistence"]["rows"]),
        row("duplicate rows", lambda c: c["persistence"]["duplicates"]),
        row("last row after load, s", lambda c: c["persistence"]["seconds_until_last_row"], 3),
        row("batch confirm avg ms", lambda c: c["ingest_confirm_ms_avg"]),
        row("ingest peak RSS MB", lambda c: c["ingest_peak_rss_mb"], 1),
        row("writer peak RSS MB", lambda c: c["writer_peak_rss_mb"], 1),
        row("CPU s: ingest", cpu("ingest"), 1),
        # Less noisy than requests/s: what tracing costs per request, whatever the latency.
        row(
            "ingest CPU µs per request",
            lambda c: 1e6 * c["cpu_seconds_during_load"]["ingest"] / c["ingest"]["requests"],
            0,
        ),
        row("CPU s: writer", cpu("writer"), 1),
        row("CPU s: otlp_sink", cpu("otlp_sink"), 1),
        row("CPU s: machine busy", cpu("machine_busy"), 1),
        row("ingest SIGTERM → exit s", lambda c: c["shutdown"]["ingest"]["seconds"], 3),
        row("writer SIGTERM → exit s", lambda c: c["shutdown"]["writer"]["seconds"], 3),
    ]
    print(
        f"\ntracing overhead: OTEL_TRACES_SAMPLER={tracing['sampler']}, OTLP http/protobuf"
        " to scripts/otlp_sink.py, same wrk"
    )
    print(f"{'':26}" + "".join(f"{'tracing ' + m.label:>14}" for m in (TRACING_OFF, *TRACED)))
    for label, cells in rows:
        print(f"{label:26}" + "".join(f"{cell:>14}" for cell in cells))
    print_side_by_side(tracing["side_by_side"])
    print("\ntargets (tracing overhead)")
    for t in targets:
        verdict = "PASS" if t.ok else "FAIL"
        print(f"  {verdict}  {t.name:40}{fmt(t.value, t.digits):>12}  (want {t.limit})")
    for mode in TRACED:
        for name, found in tracing["runs"][mode.key]["service_log_issues"].items():
            if found["count"]:
                print(
                    f"\n{name} log (tracing {mode.label}): {found['count']} warning/error"
                    " line(s), e.g.:"
                )
                for sample in found["samples"]:
                    print(f"    {sample}")
    if tracing["sink_log_issues"]["count"]:
        print("\notlp_sink log:")
        for sample in tracing["sink_log_issues"]["samples"]:
            print(f"    {sample}")


def print_side_by_side(side: dict[str, Any]) -> None:
    """The side-by-side runs behind the overhead target, one line per stack."""
    first = side["pairs"][0]
    print(
        f"\nside by side (two stacks loaded at once, wrk -c{first['connections_each']} each;"
        " twice, the order swapped):"
    )
    for number, pair in enumerate(side["pairs"], 1):
        cells = [
            f"{s['tracing']} {fmt(s['requests_per_s'], 1)} req/s,"
            f" {fmt(s['ingest_cpu_us_per_request'], 1)} ingest µs/req,"
            f" {fmt(s['writer_cpu_us_per_row'], 1)} writer µs/row"
            for s in (pair["sides"][key] for key in pair["order"])
        ]
        print(f"  {number}: " + "  |  ".join(cells))
    print(
        f"  {side['label']}: requests/s {fmt(side['rps_ratio'], 3)}, ingest CPU per request"
        f" {fmt(side['cpu_ratio'], 3)} (geometric means of the runs)"
    )


def overlapping_wrk(report: dict[str, Any]) -> dict[str, list[str]]:
    """Runs during which someone else's wrk ran too (their numbers are suspect)."""
    found = {
        name: report[name]["other_wrk_during_run"]
        for name in ("baseline", "ingest", "baseline_after")
    }
    for mode in TRACED if report.get("tracing") else ():
        found[f"ingest, tracing {mode.label}"] = report["tracing"]["runs"][mode.key]["ingest"][
            "other_wrk_during_run"
        ]
    pairs = report["tracing"]["side_by_side"]["pairs"] if report.get("tracing") else ()
    for number, pair in enumerate(pairs, 1):
        for key, side in pair["sides"].items():
            found[f"side by side {number}, {key}"] = side["other_wrk_during_run"]
    return {name: seen for name, seen in found.items() if seen}


def evaluate(report: dict[str, Any]) -> list[Target]:
    e2e = report["persistence"]
    rows, wrk_2xx = e2e["rows"], e2e["wrk_2xx"]
    recorded = e2e["recorded"]["published"] + e2e["recorded"]["spooled"]
    ratio, p99 = report["ratio"], report["ingest"]["p99_ms"]
    last, rss = e2e["seconds_until_last_row"], report["ingest_peak_rss_mb"]
    vs_naive = report["ingest_vs_naive"]
    pipe = report["pipeline_cpu"]["times_bare"]
    targets = [
        Target("ingest/baseline requests/s", ratio, f">= {MIN_RATIO}", ratio >= MIN_RATIO, 3),
        Target(
            "ingest/naive peer requests/s",
            vs_naive,
            f">= {MIN_VS_NAIVE}",
            vs_naive >= MIN_VS_NAIVE,
            2,
        ),
        Target("ingest p99 latency ms", p99, f"<= {MAX_P99_MS}", p99 <= MAX_P99_MS),
        # wrk doesn't count the responses still in flight when it stops, but ingest records
        # those hits too: every recorded open must be a row, and no 2xx may be missing.
        Target(
            "rows == 2xx (== recorded opens)",
            rows,
            f"== {recorded:,}, >= {wrk_2xx:,}",
            rows == recorded and rows >= wrk_2xx,
        ),
        Target("duplicate rows", e2e["duplicates"], "== 0", e2e["duplicates"] == 0),
        Target(
            "last row after load stops, s",
            last,
            f"<= {MAX_LAST_ROW_S}",
            last is not None and last <= MAX_LAST_ROW_S,
            3,
        ),
        Target(
            "ingest peak RSS MB", rss, f"<= {MAX_RSS_MB}", rss is not None and rss <= MAX_RSS_MB
        ),
        Target(
            "pipeline CPU per hit, x bare",
            pipe,
            f"<= {MAX_PIPELINE_CPU}",
            pipe is not None and pipe <= MAX_PIPELINE_CPU,
            2,
        ),
    ]
    high = report.get("high_connections")
    if high:
        c, vs = high["connections"], high["ingest_vs_naive"]
        targets.append(
            Target(f"ingest/naive at -c{c}", vs, f">= {MIN_VS_NAIVE}", vs >= MIN_VS_NAIVE, 2)
        )
    return targets


def evaluate_tracing(tracing: dict[str, Any]) -> list[Target]:
    runs = tracing["runs"]
    side = tracing["side_by_side"]
    ratio = side["rps_ratio"]
    targets = [
        Target(
            f"tracing {side['label']} req/s, side by side",
            ratio,
            f">= {MIN_TRACED_RATIO}",
            ratio >= MIN_TRACED_RATIO,
            3,
        )
    ]
    sides = [s for pair in side["pairs"] for s in pair["sides"].values()]
    targets.append(
        Target(
            "side by side: rows == recorded opens",
            sum(s["rows_ok"] for s in sides),
            f"== {len(sides)} stacks, 0 dup",
            all(s["rows_ok"] for s in sides),
            0,
        )
    )
    for mode in TRACED:
        run = runs[mode.key]
        e2e = run["persistence"]
        recorded = e2e["recorded"]["published"] + e2e["recorded"]["spooled"]
        rows = e2e["rows"]
        targets.append(
            Target(
                f"tracing {mode.label}: rows == recorded opens",
                rows,
                f"== {recorded:,}, >= {e2e['wrk_2xx']:,}, 0 dup",
                rows == recorded and rows >= e2e["wrk_2xx"] and e2e["duplicates"] == 0,
            )
        )
        # Otherwise the run did not measure tracing at all.
        exports = run["sink"]["requests"]
        targets.append(
            Target(f"tracing {mode.label}: exports at the sink", exports, "> 0", exports > 0)
        )
    return targets


# --- main ------------------------------------------------------------------------------


def wrk_summary(result: WrkResult) -> dict[str, Any]:
    out = asdict(result)
    out["wrk_output"] = out.pop("raw")
    out.update(
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        ok_responses=result.ok,
        server_cpu_us_per_request=result.server_cpu_us_per_request,
    )
    return out


@contextlib.contextmanager
def cleanup_step(name: str, failures: list[str]) -> Iterator[None]:
    """Run one clean-up step; a failure is reported, and the next steps still run."""
    try:
        yield
    except Exception as exc:
        failures.append(f"{name}: {type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class Mode:
    """One Belfry run: tracing off, or on with a trace-id ratio sampler."""

    key: str  # in the JSON: "off", "ratio_0.01", "ratio_1.0"
    label: str  # in the table: "off", "1%", "100%"
    sampler_arg: str | None  # OTEL_TRACES_SAMPLER_ARG; None: tracing off
    name: str = ""  # a run of its own besides these (e.g. "c512"): its logs' suffix

    @property
    def tag(self) -> str:
        """Suffix of this run's log files (empty for the tracing-off run, as before)."""
        if self.name:
            return f"-{self.name}"
        return "" if self.sampler_arg is None else f"-ratio{self.sampler_arg}"

    @property
    def short(self) -> str:
        """`1pct`, `100pct`: for the flat summary keys."""
        return self.label.replace("%", "pct")


TRACING_OFF = Mode("off", "off", None)
TRACED = (Mode("ratio_0.01", "1%", "0.01"), Mode("ratio_1.0", "100%", "1.0"))
# What a run reports; for the tracing-off run these are the report's top-level keys.
TRACED_RUN_KEYS = (
    "ingest",
    "persistence",
    "cpu_seconds_during_load",
    "ingest_confirm_ms_avg",
    "ingest_peak_rss_mb",
    "writer_peak_rss_mb",
    "shutdown",
)


@dataclass
class Ctx:
    """What every run shares: where logs go, which processes to stop, clean-up failures."""

    args: argparse.Namespace
    wrk: str
    http: aiohttp.ClientSession
    work: Path
    log_dir: Path
    procs: list[Child] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def service_env() -> dict[str, str]:
    """Our environment without any OTEL_* of the caller's: the runs decide about tracing."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}


async def sink_stats(http: aiohttp.ClientSession, sink_base: str) -> dict[str, int]:
    async with http.get(f"{sink_base}/stats") as resp:
        resp.raise_for_status()
        doc = await resp.json()
    return {k: int(v) for k, v in doc.items()}


@dataclass
class Pair:
    """Stacks loaded side by side: each waits at `gate` until all are ready, then their
    wrk runs start together, each with `args` (a share of the connections)."""

    gate: asyncio.Barrier
    args: argparse.Namespace
    wrk_pids: set[int] = field(default_factory=set)


async def run_belfry(
    ctx: Ctx,
    mode: Mode,
    sink: Child | None = None,
    sink_base: str | None = None,
    pair: Pair | None = None,
) -> tuple[WrkResult, dict[str, Any]]:
    """Ingest + writer on a database, topology prefix and spool of their own, under wrk.

    Everything the run creates is removed before it returns, also on failure.
    """
    suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(10))
    db_name, prefix = f"belfry_bench_{suffix}", f"bench{suffix}"
    db_url = db_url_for(ctx.args.postgres_url, db_name)
    spool = ctx.work / f"spool{mode.tag}"
    print(f"belfry, tracing {mode.label}: database {db_name}, prefix {prefix}", flush=True)
    ingest_port, writer_port = free_port(), free_port()
    env = dict(
        service_env(),
        DATABASE_URL=db_url,
        AMQP_URL=ctx.args.amqp_url,
        BELFRY_PREFIX=prefix,
        INGEST_HOST="127.0.0.1",
        INGEST_PORT=str(ingest_port),
        # One process: its RSS is what the target is about.
        INGEST_WORKERS="1",
        INGEST_SPOOL_DIR=str(spool),
        WRITER_HOST="127.0.0.1",
        WRITER_PORT=str(writer_port),
        CLICK_SIGNING_KEYS="bench:" + secrets.token_urlsafe(24)[:32],
        LOG_LEVEL="WARNING",
    )
    if mode.sampler_arg is not None:
        if sink_base is None:
            raise BenchError("a traced run needs the OTLP sink")
        # The standard variables, read by the SDK (shared/telemetry.py): both services.
        env.update(
            OTEL_EXPORTER_OTLP_ENDPOINT=sink_base,
            OTEL_TRACES_SAMPLER=SAMPLER,
            OTEL_TRACES_SAMPLER_ARG=mode.sampler_arg,
        )
    procs: list[Child] = []

    async def start(name: str, argv: list[str]) -> Child:
        proc = await start_proc(name + mode.tag, argv, env, ctx.log_dir)
        procs.append(proc)
        ctx.procs.append(proc)  # so that a failure shows its log tail
        return proc

    created_db = True  # from here on the database may exist: always drop it
    try:
        migrate = await start("migrate", [sys.executable, "-m", "shared.db", "migrate"])
        if await asyncio.wait_for(migrate.proc.wait(), READY_TIMEOUT) != 0:
            raise BenchError(f"python -m shared.db migrate failed: {migrate.tail(5)}")
        await stop_proc(migrate)
        # Exports are counted from before the services start until after they stopped
        # (they flush their last spans on SIGTERM).
        sink_before = await sink_stats(ctx.http, sink_base) if sink_base else None
        writer = await start("writer", [sys.executable, "-m", "services.writer"])
        ingest = await start("ingest", [sys.executable, "-m", "services.ingest"])
        ingest_base = f"http://127.0.0.1:{ingest_port}"
        writer_base = f"http://127.0.0.1:{writer_port}"
        await wait_http_200(ctx.http, f"{writer_base}/readyz", writer)
        await wait_http_200(ctx.http, f"{ingest_base}/readyz", ingest)

        # CPU shares during the load show which process the 2 cores went to.
        watched = {"ingest": ingest, "writer": writer}
        if sink is not None:
            watched["otlp_sink"] = sink
        # Peak RSS, sampled from here until the rows are in (psutil has no VmHWM).
        peaks = {"ingest": PeakRss(ingest.pid).start(), "writer": PeakRss(writer.pid).start()}
        try:
            if pair is not None:
                await pair.gate.wait()
            cpu_before = {name: cpu_seconds(p.pid) for name, p in watched.items()}
            servers_before = cpu_seconds_by_name(SERVER_COMMANDS)
            busy_before = machine_cpu()
            loaded = await run_wrk(
                ctx.wrk,
                ingest_base + PIXEL_PATH,
                ctx.args if pair is None else pair.args,
                ctx.log_dir / f"wrk-ingest{mode.tag}.txt",
                None if pair is None else pair.wrk_pids,
            )
            wrk_end = time.monotonic()
            busy_after = machine_cpu()
            servers_after = cpu_seconds_by_name(SERVER_COMMANDS)
            cpu_load = {
                name: round(b - a, 2)
                for name, p in watched.items()
                if (a := cpu_before[name]) is not None and (b := cpu_seconds(p.pid)) is not None
            }
            if (ingest_cpu := cpu_load.get("ingest")) is not None:
                loaded.server_cpu_s = ingest_cpu
            for command, label in SERVER_COMMANDS.items():
                cpu_load[label] = round(servers_after[command] - servers_before[command], 2)
            cpu_load["machine_busy"] = round(busy_after[0] - busy_before[0], 2)
            cpu_load["machine_total"] = round(busy_after[1] - busy_before[1], 2)
            print("  waiting for the rows", flush=True)
            e2e = await wait_for_rows(
                ctx.http, ingest_base, writer_base, db_url, wrk_end, loaded.ok
            )
        finally:
            peak_kb = {name: await peak.stop() // 1024 for name, peak in peaks.items()}
        metrics = await scrape(ctx.http, ingest_base)
        batches = metrics.get("belfry_ingest_batch_events_count", 0)
        events = metrics.get("belfry_ingest_batch_events_sum", 0)
        confirm = 'belfry_ingest_batch_confirm_seconds_{}{{outcome="published"}}'
        confirms = metrics.get(confirm.format("count"), 0)
        confirm_s = metrics.get(confirm.format("sum"), 0)

        # SIGTERM, timed: both must drain and exit on their own.
        await stop_proc(ingest)
        await stop_proc(writer)
        result: dict[str, Any] = {
            "tracing": mode.label,
            "env": {k: v for k, v in env.items() if k.startswith("OTEL_")},
            "database": db_name,
            "prefix": prefix,
            "persistence": asdict(e2e),
            "cpu_seconds_during_load": cpu_load,
            "ingest_batch_events_avg": round(events / batches, 2) if batches else None,
            # Flush to broker confirm: the floor under every pixel's latency.
            "ingest_confirm_ms_avg": round(1000 * confirm_s / confirms, 2) if confirms else None,
            "ingest_peak_rss_mb": round(peak_kb["ingest"] / 1024, 1) if peak_kb["ingest"] else None,
            "writer_peak_rss_mb": round(peak_kb["writer"] / 1024, 1) if peak_kb["writer"] else None,
            "shutdown": {
                name: {"exit_code": p.exit_code, "seconds": p.exit_seconds, "killed": p.killed}
                for name, p in (("ingest", ingest), ("writer", writer))
            },
            "service_log_issues": {"ingest": scan_log(ingest.log), "writer": scan_log(writer.log)},
        }
        if sink_base is not None and sink_before is not None:
            after = await sink_stats(ctx.http, sink_base)
            result["sink"] = {k: after[k] - sink_before.get(k, 0) for k in after}
        return loaded, result
    finally:
        for proc in procs:
            with cleanup_step(f"stop {proc.name}", ctx.failures):
                await stop_proc(proc)
        with cleanup_step(f"delete topology {prefix}", ctx.failures):
            await delete_topology(ctx.args.amqp_url, prefix)
        if created_db:
            with cleanup_step(f"drop database {db_name}", ctx.failures):
                await drop_database(ctx.args.postgres_url, db_name)
        with cleanup_step(f"remove spool {spool}", ctx.failures):
            if spool.exists():
                shutil.rmtree(spool)


async def run_tracing(ctx: Ctx, off: WrkResult, off_run: dict[str, Any]) -> dict[str, Any]:
    """The same ingest run with tracing on, exporting to scripts/otlp_sink.py."""
    port = free_port()
    sink = await start_proc(
        "otlp_sink",
        [sys.executable, str(ROOT / "scripts" / "otlp_sink.py"), "--port", str(port)],
        service_env(),
        ctx.log_dir,
    )
    ctx.procs.append(sink)
    sink_base = f"http://127.0.0.1:{port}"
    print(f"tracing: OTLP/HTTP sink {sink_base} (scripts/otlp_sink.py)", flush=True)
    await wait_http_200(ctx.http, f"{sink_base}/stats", sink)
    runs: dict[str, Any] = {
        # The tracing-off run is the report's top-level `ingest` / `persistence`.
        TRACING_OFF.key: {
            "tracing": TRACING_OFF.label,
            "ingest": {
                "requests_per_s": off.requests_per_s,
                "p50_ms": off.p50_ms,
                "p99_ms": off.p99_ms,
            },
            "ratio_vs_off": 1.0,
        }
    }
    # The table's columns, one after the other (100 % has no target: it shows what
    # tracing costs when every request is a trace).
    for mode in TRACED:
        loaded, run = await run_belfry(ctx, mode, sink, sink_base)
        run["ingest"] = wrk_summary(loaded)
        run["ratio_vs_off"] = round(loaded.requests_per_s / off.requests_per_s, 4)
        runs[mode.key] = run
    # The target: side by side, twice, the order swapped (see PAIR_OFF).
    base, other = (PAIR_OFF, PAIR_OFF_B) if ctx.args.side_by_side_aa else (PAIR_OFF, PAIR_ONE)
    pairs = [
        await run_side_by_side(ctx, modes, sink, sink_base, number)
        for number, modes in enumerate(((base, other), (other, base)), 1)
    ]
    await stop_proc(sink)
    return {
        "sampler": SAMPLER,
        "exporter": "otlp http/protobuf to scripts/otlp_sink.py (counts, does not decode)",
        "runs": runs,
        "side_by_side": side_by_side_ratios(pairs, base, other),
        "sink_log_issues": scan_log(sink.log),
    }


# Tracing's cost in ingest, measured side by side: two stacks (tracing off, and 1 %)
# loaded at the same time, each by a wrk with half the connections, so that both see
# the same machine. Runs one after the other can't resolve 10 %: with tracing
# configured and nothing ever sampled, two such comparisons gave 1.012 and 0.845.
PAIR_OFF = Mode("pair_off", "off", None, name="pair-off")
PAIR_ONE = Mode("pair_1pct", "1%", "0.01", name="pair-1pct")
# `--side-by-side-aa`: both sides off, what the comparison reads when there is nothing
# to find (its noise).
PAIR_OFF_B = Mode("pair_off_b", "off", None, name="pair-off-b")


def side_summary(loaded: WrkResult, run: dict[str, Any]) -> dict[str, Any]:
    """One side of a side-by-side run: its load, its CPU per request and its rows."""
    cpu = run["cpu_seconds_during_load"]
    e2e = run["persistence"]
    recorded = e2e["recorded"]["published"] + e2e["recorded"]["spooled"]
    rows = e2e["rows"]
    return {
        "tracing": run["tracing"],
        "requests_per_s": loaded.requests_per_s,
        "requests": loaded.requests,
        "p99_ms": loaded.p99_ms,
        "ingest_cpu_us_per_request": round(1e6 * cpu["ingest"] / max(loaded.requests, 1), 1),
        "writer_cpu_us_per_row": round(1e6 * cpu["writer"] / max(rows, 1), 1),
        "rows_ok": rows == recorded and rows >= e2e["wrk_2xx"] and e2e["duplicates"] == 0,
        "exports": (run.get("sink") or {}).get("requests"),
        "other_wrk_during_run": loaded.other_wrk_during_run,
    }


async def run_side_by_side(
    ctx: Ctx, modes: tuple[Mode, Mode], sink: Child | None, sink_base: str | None, number: int
) -> dict[str, Any]:
    """Two stacks under load at once (see PAIR_OFF), each side's figures; `number` keeps
    each run's logs apart (`wrk-ingest-pair-off-1.txt`, ...)."""
    await wait_for_no_other_wrk()
    share = max(1, ctx.args.connections // len(modes))
    pair = Pair(asyncio.Barrier(len(modes)), argparse.Namespace(**vars(ctx.args)))
    pair.args.connections = share
    print(f"side by side: {' and '.join(m.label for m in modes)}, -c{share} each", flush=True)
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(
                run_belfry(
                    ctx,
                    replace(m, name=f"{m.name}-{number}"),
                    sink if m.sampler_arg else None,
                    sink_base if m.sampler_arg else None,
                    pair=pair,
                )
            )
            for m in modes
        ]
    return {
        "connections_each": share,
        "order": [m.key for m in modes],
        "sides": {m.key: side_summary(*t.result()) for m, t in zip(modes, tasks, strict=True)},
    }


def side_by_side_ratios(pairs: list[dict[str, Any]], base: Mode, other: Mode) -> dict[str, Any]:
    """`other` ÷ `base` over the side-by-side runs: requests/s and ingest's CPU per
    request, each the geometric mean of the runs' ratios (the order alternates, so a
    side's advantage cancels)."""

    def mean_ratio(key: str) -> float:
        product = 1.0
        for pair in pairs:
            sides = pair["sides"]
            product *= sides[other.key][key] / sides[base.key][key]
        return round(product ** (1 / len(pairs)), 4)

    return {
        "base": base.key,
        "other": other.key,
        "label": f"{other.label} / {base.label}",
        "pairs": pairs,
        "rps_ratio": mean_ratio("requests_per_s"),
        "cpu_ratio": mean_ratio("ingest_cpu_us_per_request"),
    }


def cpu_per_request(
    before: WrkResult, after: WrkResult, loaded: WrkResult, cpu_load: dict[str, float]
) -> dict[str, float | None]:
    """CPU microseconds per request: the bare app's (mean of its two runs), ingest's, and
    what each hit also cost the writer, RabbitMQ and Postgres during the load.

    `ceiling` = bare ÷ ingest: the ratio one ingest process could reach with a core to
    itself and no wait for confirms, at this load (CPU per request falls somewhat as load
    rises, so it is an estimate). Well below the target, it says that less waiting for
    confirms alone can't reach the target; less CPU per hit is needed."""
    bare = [r for r in (before.server_cpu_us_per_request, after.server_cpu_us_per_request) if r]
    out: dict[str, float | None] = {
        "baseline": round(sum(bare) / len(bare), 1) if bare else None,
        "ingest": None
        if loaded.server_cpu_us_per_request is None
        else round(loaded.server_cpu_us_per_request, 1),
    }
    for name in ("writer", *SERVER_COMMANDS.values()):
        seconds = cpu_load.get(name)
        out[name] = (
            round(1e6 * seconds / loaded.requests, 1) if seconds and loaded.requests else None
        )
    base, ingest = out["baseline"], out["ingest"]
    out["ceiling"] = round(base / ingest, 3) if base and ingest else None
    return out


def pipeline_line(pipe: dict[str, Any]) -> str:
    """`pipeline CPU per hit` of the report: the multiple, then each part's share."""
    parts = pipe["parts_times_bare"]
    if parts is None:
        return "- (a part's CPU was not measured)"
    shares = ", ".join(f"{name} {fmt(v, 2)}" for name, v in parts.items())
    return (
        f"{fmt(pipe['us'], 0)} µs = {fmt(pipe['times_bare'], 2)}x the baseline's per request"
        f" ({shares})"
    )


def pipeline_cpu(cpu: dict[str, float | None]) -> dict[str, Any]:
    """The whole pipeline's CPU per stored hit as a multiple of the bare app's CPU per
    answered request, and each part's share of that multiple (None when a part was not
    measured)."""
    base = cpu.get("baseline")
    parts = {name: cpu.get(name) for name in PIPELINE_PARTS}
    if not base or any(v is None for v in parts.values()):
        return {"times_bare": None, "us": None, "parts_times_bare": None}
    us = sum(v for v in parts.values() if v is not None)
    return {
        "times_bare": round(us / base, 3),
        "us": round(us, 1),
        "parts_times_bare": {k: round(v / base, 3) for k, v in parts.items() if v is not None},
    }


def machine_budget(
    before: WrkResult, after: WrkResult, loaded: WrkResult, cpu: dict[str, float | None]
) -> dict[str, float | None]:
    """The whole machine's CPU per request, and what the ratio target leaves for a hit.

    The bare app needs wrk and itself; a hit also needs ingest's own work, RabbitMQ, the
    writer and Postgres, on the same cores. `ceiling` is the ratio ingest would reach if
    every core were busy at this run's machine CPU per hit (an estimate: no wait for
    confirms, and CPU per hit falls somewhat as load rises). `target_us` is the machine
    CPU per hit at which all cores serve MIN_RATIO x the baseline; `left_us` is what of
    it remains after the bare app's own cost per request (wrk + serving the GIF).
    Below `downstream_us` (writer + RabbitMQ + Postgres per hit), the target is out of
    reach even if ingest's work beyond the bare app's were free."""
    bare = [r for r in (before.machine_us_per_request, after.machine_us_per_request) if r]
    baseline_us = sum(bare) / len(bare) if bare else None
    ingest_us = loaded.machine_us_per_request
    mean_rps = (before.requests_per_s + after.requests_per_s) / 2
    cores = loaded.machine_total_s / loaded.seconds if loaded.machine_total_s else None
    out: dict[str, float | None] = {
        "cores": round(cores, 2) if cores else None,
        "baseline_us": round(baseline_us, 1) if baseline_us else None,
        "ingest_us": round(ingest_us, 1) if ingest_us else None,
        "ceiling": None,
        "target_us": None,
        "left_us": None,
        "downstream_us": None,
    }
    if cores and ingest_us and mean_rps:
        out["ceiling"] = round(cores * 1e6 / ingest_us / mean_rps, 3)
        target_us = cores * 1e6 / (MIN_RATIO * mean_rps)
        out["target_us"] = round(target_us, 1)
        if baseline_us:
            out["left_us"] = round(target_us - baseline_us, 1)
    parts = [cpu.get(name) for name in ("writer", *SERVER_COMMANDS.values())]
    if all(parts):
        out["downstream_us"] = round(sum(p for p in parts if p), 1)
    return out


async def run_baseline(ctx: Ctx, name: str) -> WrkResult:
    """wrk against scripts/bare_pixel.py, started for this run and stopped after it."""
    print(f"{name}: scripts/bare_pixel.py", flush=True)
    port = free_port()
    bare = await start_proc(
        name,
        [sys.executable, str(ROOT / "scripts" / "bare_pixel.py"), "--port", str(port)],
        service_env(),
        ctx.log_dir,
    )
    ctx.procs.append(bare)
    url = f"http://127.0.0.1:{port}{PIXEL_PATH}"
    await wait_http_200(ctx.http, url, bare)
    cpu_before = cpu_seconds(bare.pid)
    result = await run_wrk(ctx.wrk, url, ctx.args, ctx.log_dir / f"wrk-{name}.txt")
    if cpu_before is not None and (cpu_after := cpu_seconds(bare.pid)) is not None:
        result.server_cpu_s = cpu_after - cpu_before
    await stop_proc(bare)
    ctx.procs.remove(bare)
    return result


async def run_naive(ctx: Ctx, name: str) -> tuple[WrkResult, dict[str, Any]]:
    """wrk against scripts/naive_pixel.py (an INSERT per hit through an asyncpg pool of 16
    before the answer) on a database of its own, dropped after; its rows and the CPU that
    it and Postgres spent."""
    db_name = f"belfry_naive_{secrets.token_hex(5)}"
    admin = await asyncpg.connect(ctx.args.postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{db_name}"')
    finally:
        await admin.close()
    print(f"{name}: scripts/naive_pixel.py on database {db_name}", flush=True)
    try:
        port = free_port()
        url = db_url_for(ctx.args.postgres_url, db_name)
        argv = [sys.executable, str(ROOT / "scripts" / "naive_pixel.py"), "--port", str(port)]
        naive = await start_proc(name, [*argv, "--database-url", url], service_env(), ctx.log_dir)
        ctx.procs.append(naive)
        target = f"http://127.0.0.1:{port}{PIXEL_PATH}"
        await wait_http_200(ctx.http, target, naive)
        cpu_before, servers_before = cpu_seconds(naive.pid), cpu_seconds_by_name(SERVER_COMMANDS)
        result = await run_wrk(ctx.wrk, target, ctx.args, ctx.log_dir / f"wrk-{name}.txt")
        cpu_after, servers_after = cpu_seconds(naive.pid), cpu_seconds_by_name(SERVER_COMMANDS)
        if cpu_before is not None and cpu_after is not None:
            result.server_cpu_s = cpu_after - cpu_before
        await stop_proc(naive)
        ctx.procs.remove(naive)
        conn = await asyncpg.connect(url)
        try:
            rows = int(await conn.fetchval("SELECT count(*) FROM naive_hits"))
        finally:
            await conn.close()
    finally:
        await drop_database(ctx.args.postgres_url, db_name)
    postgres = servers_after.get("postgres", 0.0) - servers_before.get("postgres", 0.0)
    return result, {"rows": rows, "postgres_cpu_s": round(postgres, 2)}


async def run_high_connections(ctx: Ctx, connections: int) -> dict[str, Any]:
    """The bare app, the naive peer and Belfry again at `connections` (mail clients are
    many independent connections): requests/s, p99 and the two ratios."""
    args = argparse.Namespace(**{**vars(ctx.args), "connections": connections})
    high = Ctx(args, ctx.wrk, ctx.http, ctx.work, ctx.log_dir, ctx.procs, ctx.failures)
    tag = f"c{connections}"
    baseline = await run_baseline(high, f"baseline-{tag}")
    naive, naive_info = await run_naive(high, f"naive-{tag}")
    loaded, run = await run_belfry(high, Mode(f"off_{tag}", f"off, -c{connections}", None, tag))
    return {
        "connections": connections,
        "baseline": wrk_summary(baseline),
        "naive": {**wrk_summary(naive), **naive_info},
        "ingest": wrk_summary(loaded),
        "persistence": run["persistence"],
        "ratio": round(loaded.requests_per_s / baseline.requests_per_s, 4),
        "ingest_vs_naive": round(loaded.requests_per_s / max(naive.requests_per_s, 1e-9), 3),
    }


async def bench(args: argparse.Namespace, wrk: str, work: Path) -> dict[str, Any]:
    log_dir = work / "logs"
    log_dir.mkdir()
    report: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_info(),
        "nproc": len(os.sched_getaffinity(0)),
        # Anything else running skews a 2-core benchmark; this shows whether it was quiet.
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),
        "wrk": {
            "threads": args.threads,
            "connections": args.connections,
            "duration_s": args.duration,
            "path": PIXEL_PATH,
            "emails": args.emails,
        },
        "logs": str(log_dir),
    }
    timeout = aiohttp.ClientTimeout(total=5)

    async with aiohttp.ClientSession(timeout=timeout) as http:
        ctx = Ctx(args, wrk, http, work, log_dir)
        try:
            # 1. Baseline; 2. Belfry, tracing off (a fresh database, topology prefix and
            # spool of its own); then the baseline again. A shared 2-core VM drifts: the
            # ratio is taken against the mean of the two baselines around the ingest run,
            # and both are reported, so the drift shows.
            # The naive peer runs first and last around them: its speed swings with the
            # disk's commit latency more than the VM drifts, so ingest is compared with
            # the mean of its two runs.
            naive_before, _ = await run_naive(ctx, "naive-before")
            baseline = await run_baseline(ctx, "baseline")
            loaded, off = await run_belfry(ctx, TRACING_OFF)
            after = await run_baseline(ctx, "baseline-after")
            naive, naive_info = await run_naive(ctx, "naive")
            mean_rps = (baseline.requests_per_s + after.requests_per_s) / 2
            naive_mean = (naive_before.requests_per_s + naive.requests_per_s) / 2
            cpu = cpu_per_request(baseline, after, loaded, off["cpu_seconds_during_load"])
            budget = machine_budget(baseline, after, loaded, cpu)
            report.update(
                baseline=wrk_summary(baseline),
                baseline_after=wrk_summary(after),
                baseline_mean_rps=round(mean_rps, 1),
                ingest=wrk_summary(loaded),
                ratio=round(loaded.requests_per_s / mean_rps, 4),
                naive={**wrk_summary(naive), **naive_info},
                naive_before_rps=round(naive_before.requests_per_s, 1),
                naive_mean_rps=round(naive_mean, 1),
                ingest_vs_naive=round(loaded.requests_per_s / max(naive_mean, 1e-9), 3),
                persistence=off["persistence"],
                cpu_seconds_during_load=off["cpu_seconds_during_load"],
                cpu_us_per_request=cpu,
                pipeline_cpu=pipeline_cpu(cpu),
                machine_budget=budget,
                ingest_batch_events_avg=off["ingest_batch_events_avg"],
                ingest_confirm_ms_avg=off["ingest_confirm_ms_avg"],
                ingest_peak_rss_mb=off["ingest_peak_rss_mb"],
                writer_peak_rss_mb=off["writer_peak_rss_mb"],
                shutdown=off["shutdown"],
            )
            report["service_log_issues"] = off["service_log_issues"]

            # 3. The same with tracing on: 1 % and 100 % sampling, each on fresh resources.
            report["tracing"] = None if args.no_tracing else await run_tracing(ctx, loaded, off)
            # 4. Bare, naive and Belfry again with many more connections.
            high = args.high_connections
            report["high_connections"] = await run_high_connections(ctx, high) if high else None
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
                for proc in ctx.procs:
                    if tail := proc.tail():
                        print(
                            f"\n--- {proc.name} log tail ({proc.log}) ---\n{tail}", file=sys.stderr
                        )
            raise
        finally:
            for proc in ctx.procs:
                with cleanup_step(f"stop {proc.name}", ctx.failures):
                    await stop_proc(proc)
            for failure in ctx.failures:
                print(f"bench: clean-up failed: {failure}", file=sys.stderr)
    report["cleanup_failures"] = ctx.failures
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="wrk seconds per run (15)")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c (64)")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t (1)")
    parser.add_argument(
        "--emails",
        type=int,
        default=1,
        help="hits go to this many emails, one drawn at random per request (1: all to e1)",
    )
    parser.add_argument(
        "--high-connections",
        type=int,
        default=512,
        help="wrk -c of the second round of bare, naive and Belfry runs (512; 0 skips it)",
    )
    parser.add_argument(
        "--no-tracing",
        action="store_true",
        help="skip the runs with tracing on",
    )
    parser.add_argument(
        "--side-by-side-aa",
        action="store_true",
        help="compare tracing off with tracing off side by side (the comparison's noise)",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="admin connection; the bench database is created beside it",
    )
    parser.add_argument(
        "--amqp-url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="belfry-bench-"))
    try:
        wrk = ensure_wrk()
        report = asyncio.run(bench(args, wrk, work))
    except (BenchError, NotReady) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        print(f"bench: service logs in {work / 'logs'}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        shutil.rmtree(work, ignore_errors=True)
        print("bench: interrupted (cleaned up)", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print(f"bench: failed; service logs in {work / 'logs'}", file=sys.stderr)
        return 1
    targets = evaluate(report)
    e2e = report["persistence"]
    # The headline numbers, flat, for comparing runs over time.
    report["summary"] = {
        "baseline_rps": report["baseline_mean_rps"],
        "baseline_rps_before": report["baseline"]["requests_per_s"],
        "baseline_rps_after": report["baseline_after"]["requests_per_s"],
        "ingest_rps": report["ingest"]["requests_per_s"],
        "ratio": report["ratio"],
        "naive_rps": report["naive_mean_rps"],
        "naive_rps_before": report["naive_before_rps"],
        "naive_rps_after": report["naive"]["requests_per_s"],
        "ingest_vs_naive": report["ingest_vs_naive"],
        "baseline_p50_ms": report["baseline"]["p50_ms"],
        "baseline_p99_ms": report["baseline"]["p99_ms"],
        "ingest_p50_ms": report["ingest"]["p50_ms"],
        "ingest_p99_ms": report["ingest"]["p99_ms"],
        "responses_2xx": e2e["wrk_2xx"],
        "opens_recorded": e2e["recorded"]["published"] + e2e["recorded"]["spooled"],
        "rows_persisted": e2e["rows"],
        "duplicates": e2e["duplicates"],
        "seconds_until_last_row": e2e["seconds_until_last_row"],
        "ingest_peak_rss_mb": report["ingest_peak_rss_mb"],
        "cpu_us_per_request": report["cpu_us_per_request"],
        "pipeline_cpu_times_bare": report["pipeline_cpu"]["times_bare"],
        "machine_budget": report["machine_budget"],
    }
    tracing_targets: list[Target] = []
    if report["tracing"]:
        tracing_targets = evaluate_tracing(report["tracing"])
        side = report["tracing"]["side_by_side"]
        report["summary"].update(
            tracing_side_by_side=side["label"],
            tracing_side_by_side_rps_ratio=side["rps_ratio"],
            tracing_side_by_side_cpu_ratio=side["cpu_ratio"],
        )
        for mode in TRACED:
            run = report["tracing"]["runs"][mode.key]
            report["summary"].update(
                {
                    f"ingest_rps_tracing_{mode.short}": run["ingest"]["requests_per_s"],
                    f"ingest_p50_ms_tracing_{mode.short}": run["ingest"]["p50_ms"],
                    f"ingest_p99_ms_tracing_{mode.short}": run["ingest"]["p99_ms"],
                    f"tracing_{mode.short}_ratio_vs_off": run["ratio_vs_off"],
                    f"sink_requests_tracing_{mode.short}": run["sink"]["requests"],
                    f"sink_bytes_tracing_{mode.short}": run["sink"]["bytes"],
                }
            )
    report["targets"] = {
        t.name: {"value": t.value, "want": t.limit, "pass": t.ok}
        for t in (*targets, *tracing_targets)
    }
    report["other_wrk_during_runs"] = overlapping_wrk(report)
    print_report(report, targets)
    if report["tracing"]:
        print_tracing(report, tracing_targets)
    for name, seen in report["other_wrk_during_runs"].items():
        print(f"\nWARNING: another wrk ran during the {name} run: {'; '.join(seen)}")
    # Service logs are worth keeping only when they say something.
    issues = list(report["service_log_issues"].values())
    if report["tracing"]:
        issues.append(report["tracing"]["sink_log_issues"])
        for mode in TRACED:
            issues.extend(report["tracing"]["runs"][mode.key]["service_log_issues"].values())
    return save_report(report, "bench", work, noisy=any(found["count"] for found in issues))


def save_report(report: dict[str, Any], name: str, work: Path, noisy: bool) -> int:
    """Write `bench/results/<name>-<UTC timestamp>.json`; keep the service logs (`work`)
    only when they say something or clean-up failed. The exit status: 1 when clean-up
    failed, else 0 (the figures never decide it)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    if not (noisy or report["cleanup_failures"]):
        shutil.rmtree(work, ignore_errors=True)
        report["logs"] = None
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"\nresults: {path.relative_to(ROOT)}")
    if report["logs"]:
        print(f"service logs: {report['logs']}")
    return 1 if report["cleanup_failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
