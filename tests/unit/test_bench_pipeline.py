"""The pure parts of `make bench`'s hot-path report (scripts/bench.py) that decide a
target: the whole pipeline's CPU per hit against the bare app's, and the ABBA tracing
ratio's order, so the report can't rot silently."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))


def _script(name: str) -> ModuleType:
    """scripts/<name>.py, by path: `bench` alone would also name the bench/ folder."""
    spec = importlib.util.spec_from_file_location(
        f"_script_{name}", ROOT / "scripts" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


bench = _script("bench")
confirm_cycle = _script("confirm_cycle")


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


def test_the_confirm_cycle_splits_into_the_brokers_part_and_ingests() -> None:
    ingest, writer, broker = "127.0.0.1.40000", "127.0.0.1.40001", "127.0.0.1.5672"
    rows = [
        (0.000, ingest, broker, 11_000),  # publish
        (0.001, broker, writer, 11_000),  # delivery to the writer: not ours
        (0.003, broker, ingest, 21),  # its confirm: 3 ms at the broker
        (0.004, ingest, broker, 9_000),  # the next publish: 1 ms in ingest
        (0.0045, writer, broker, 40),  # the writer's ack: not ours
        (0.006, broker, ingest, 21),
        (0.0065, ingest, broker, 8),  # a heartbeat: no publish
        (0.0075, ingest, broker, 10_000),
    ]
    parts = confirm_cycle.cycle(rows)
    assert [round(v, 3) for v in parts["broker"]] == [3.0, 2.0]
    assert [round(v, 3) for v in parts["ingest"]] == [1.0, 1.5]
