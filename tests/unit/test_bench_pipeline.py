"""The pure parts of `make bench`'s hot-path report (scripts/bench.py) that decide a
target: the whole pipeline's CPU per hit against the bare app's, and the ABBA tracing
ratio's order, so the report can't rot silently."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import bench  # noqa: E402


def test_the_pipeline_is_the_sum_of_its_parts_per_bare_request() -> None:
    cpu: dict[str, float | None] = {
        "baseline": 80.0,
        "ingest": 72.0,
        "writer": 32.0,
        "rabbitmq": 28.0,
        "postgres": 28.0,
        "ceiling": 1.1,
    }
    pipe = bench.pipeline_cpu(cpu)
    assert pipe["us"] == 160.0
    assert pipe["times_bare"] == 2.0
    assert pipe["parts_times_bare"] == {
        "ingest": 0.9,
        "writer": 0.4,
        "rabbitmq": 0.35,
        "postgres": 0.35,
    }
    assert "2.00x the baseline's" in bench.pipeline_line(pipe)
    assert "rabbitmq 0.35" in bench.pipeline_line(pipe)


def test_a_part_not_measured_gives_no_figure_rather_than_a_low_one() -> None:
    cpu: dict[str, float | None] = {
        "baseline": 80.0,
        "ingest": 72.0,
        "writer": None,
        "rabbitmq": 28.0,
        "postgres": 28.0,
    }
    pipe = bench.pipeline_cpu(cpu)
    assert pipe["times_bare"] is None
    assert "not measured" in bench.pipeline_line(pipe)


def test_the_tracing_comparison_alternates_so_a_steady_drift_cancels() -> None:
    # 1 %, off, off, 1 %: both pairs sit at the same mean position in time.
    order = bench.ABBA
    traced = [i for i, mode in enumerate(order) if mode.sampler_arg == "0.01"]
    off = [i for i, mode in enumerate(order) if mode.sampler_arg is None]
    assert sum(traced) / len(traced) == sum(off) / len(off)
    # Each run logs under its own name.
    assert len({mode.tag for mode in order}) == 4
