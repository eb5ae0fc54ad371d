"""The pure parts of the metric intake benchmark (scripts/bench_intake.py), so it can't rot
silently: its bodies are what ingest's own decoders read, with a fresh timestamp per
request, and its report computes what it says."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import bench_intake as bench  # noqa: E402

from services.alerting.files import load_rules_file  # noqa: E402
from services.ingest.intake import otlp  # noqa: E402
from services.ingest.intake import remote_write as rw  # noqa: E402

T0 = 1_764_560_000_123


def _decode(template: bench.BodyTemplate, ts: int) -> list[Any]:
    body = template.render(ts)
    if template.protocol == "otlp":
        result = otlp.decode_otlp_metrics(body, otlp.PROTOBUF)
    else:
        result = rw.decode_remote_write(body, max_uncompressed=rw.MAX_UNCOMPRESSED)
    assert not result.rejected, result.message
    return result.samples


@pytest.mark.parametrize("make", [bench.otlp_template, bench.remote_write_template])
def test_bodies_decode_to_the_series_with_each_requests_timestamp(make: Any) -> None:
    template = make(bench.series_set(1990, 20))
    assert template.samples == 20
    first, second = _decode(template, T0), _decode(template, T0 + 1)
    assert {s.ts for s in first} == {T0} and {s.ts for s in second} == {T0 + 1}
    assert [(s.name, s.labels) for s in first] == [(s.name, s.labels) for s in second]
    # 20 distinct series across two metrics; OTLP and remote_write name them the same.
    assert {s.name for s in first} == {"bench_metric_1", "bench_metric_2"}
    assert len({(s.name, tuple(sorted(s.labels.items()))) for s in first}) == 20
    assert first[0].labels == {"service": "bench", "instance": "host-1990", "job": "bench"}


def test_a_timestamp_that_would_change_the_body_length_is_refused() -> None:
    with pytest.raises(ValueError, match="6 varint bytes"):
        bench.ts_varint(1 << 42)


def test_the_clock_never_repeats_nor_goes_back() -> None:
    times = iter([100.0, 100.0, 99.0, 100.5])
    clock = bench.Clock(lambda: next(times))
    assert [clock(), clock(), clock(), clock()] == [100_000, 100_001, 100_002, 100_500]


def test_each_sender_owns_its_series() -> None:
    seen: list[set[str]] = []
    for sender in range(3):
        series = set()
        for template in bench.templates_for("otlp", sender, per_sender=2, batch=5):
            series |= {s.labels["instance"] for s in _decode(template, T0)}
        seen.append(series)
    assert all(len(s) == 10 for s in seen)
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2])


def test_track_bodies_are_batches_of_hits() -> None:
    template = bench.track_template(3, first=7)
    items = orjson.loads(template.render(T0))
    assert template.samples == 3
    assert [i["email_id"] for i in items] == ["e7", "e8", "e9"]
    assert {i["tenant"] for i in items} == {bench.TENANT}


def test_the_rules_watch_every_metric_sent(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(bench.rules_yaml(3))
    rules = load_rules_file(str(path))
    assert sorted(r.metric for r in rules) == ["bench_metric_0", "bench_metric_1", "bench_metric_2"]
    assert {r.tenant for r in rules} == {bench.TENANT}


def test_percentile_and_counter() -> None:
    assert bench.percentile([], 0.5) is None
    assert bench.percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0
    assert bench.percentile([float(i) for i in range(1, 101)], 0.99) == 99.0
    scraped = {
        'belfry_ingest_samples_total{protocol="otlp",outcome="published"}': 10.0,
        'belfry_ingest_samples_total{protocol="remote_write",outcome="published"}': 5.0,
        'belfry_ingest_samples_total{protocol="otlp",outcome="spooled"}': 1.0,
    }
    assert bench.counter(scraped, "belfry_ingest_samples_total", outcome="published") == 15.0
    assert bench.counter(scraped, "belfry_ingest_samples_total") == 16.0


def _load(samples_ok: int, seconds: float, p99: float, cpu_s: float = 1.0) -> bench.LoadResult:
    result = bench.LoadResult("otlp", 5, 2000, 10_000, seconds=seconds, samples_ok=samples_ok)
    result.requests = result.ok = samples_ok // 2000
    result.latency_ms = {"p50": p99 / 2, "p99": p99}
    result.cpu_s = cpu_s
    return result


def test_the_phase_counts_the_lag_in_the_end_to_end_rate() -> None:
    cpu = {"ingest": 2.0, "alerting": 3.0, "machine_busy": 19.0, "machine_total": 20.0}
    phase = bench.summarize_phase(
        load=_load(1_000_000, 10.0, 40.0),
        stored=1_000_000,
        delivered=1_000_000,
        delivered_at_load_end=800_000,
        load_wall_s=10.0,
        lag_s=2.5,
        caught_up=True,
        cpu_load=cpu,
        cpu_total=cpu,
    )
    assert phase["accepted_per_s"] == 100_000.0
    assert phase["delivered_per_s_during_load"] == 80_000.0
    assert phase["end_to_end_per_s"] == 80_000.0  # 1M in 10 s + 2.5 s of lag
    assert phase["all_delivered"] is True
    assert phase["kept_up"] is False  # 2.5 s behind the load
    assert phase["excess_delivered"] == 0
    assert phase["cpu_us_per_sample"]["alerting"] == 3.0
    assert phase["cpu_us_per_sample"]["generator"] == 1.0
    # What the machine spent beyond the bench's processes: 19 - (2 + 3 + 1).
    assert phase["cpu_seconds_during_load"]["others"] == 13.0


def _phase(accepted: float, e2e: float, p99: float, delivered: bool = True) -> dict[str, Any]:
    return {
        "accepted_per_s": accepted,
        "end_to_end_per_s": e2e,
        "lag_s": 0.5,
        "all_delivered": delivered,
        "load": {"seconds": 10.0, "latency_ms": {"p50": 1.0, "p99": p99}},
        "cpu_seconds_during_load": {"machine_busy": 15.0, "machine_total": 20.0},
    }


def test_the_report_compares_with_the_ceiling_track_and_the_targets() -> None:
    def bare(per_s: float) -> dict[str, Any]:
        return {"accepted_per_s": per_s, "load": {"latency_ms": {"p99": 2.0}}}

    report = {
        "belfry": {
            "otlp": _phase(60_000, 55_000, 30.0),
            "remote_write": _phase(50_000, 45_000, 80.0),
            "track": _phase(20_000, 11_000, 90.0),
        },
        "ceiling": {p: bare(1_000_000) for p in bench.PROTOCOLS},
    }
    summary = bench.summarize(report)
    otlp_, rw_ = summary["otlp"], summary["remote_write"]
    assert otlp_["of_ceiling"] == 0.06
    assert otlp_["vs_track_hits"] == 5.0
    assert otlp_["machine_busy_share"] == 0.75
    assert otlp_["targets"]["end_to_end_samples_per_s"]["pass"] is True
    assert otlp_["targets"]["p99_intake_ms"]["pass"] is True
    assert rw_["targets"]["end_to_end_samples_per_s"]["pass"] is False
    assert rw_["targets"]["p99_intake_ms"]["pass"] is False
    assert "targets" not in summary["track"]
    # Paced at --rate: the rate taken counts when alerting kept pace with it.
    report["load"] = {"rate": 60_000}
    report["belfry"]["remote_write"] = _phase(60_000, 59_000, 30.0) | {"kept_up": True}
    paced = bench.summarize(report)["remote_write"]["targets"]["end_to_end_samples_per_s"]
    assert paced["value"] == 60_000 and paced["pass"] is True
    report["belfry"]["remote_write"]["kept_up"] = False
    paced = bench.summarize(report)["remote_write"]["targets"]["end_to_end_samples_per_s"]
    assert paced["value"] == 59_000
    report["load"] = {}
    # Not every sample kept: no pass, whatever the rate.
    report["belfry"]["otlp"] = _phase(60_000, 55_000, 30.0, delivered=False)
    assert bench.summarize(report)["otlp"]["targets"]["end_to_end_samples_per_s"]["pass"] is False
