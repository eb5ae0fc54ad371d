"""The pure parts of `make bench`'s hot-path report (scripts/bench.py) that decide a
target: the whole pipeline's CPU per hit against the bare app's, and the tracing ratio of
the side-by-side runs, so the report can't rot silently."""

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


def side(rps: float, cpu: float) -> dict[str, float]:
    return {"requests_per_s": rps, "ingest_cpu_us_per_request": cpu}


def test_the_side_by_side_ratio_is_the_geometric_mean_of_both_orders() -> None:
    off, one = bench.PAIR_OFF, bench.PAIR_ONE
    pairs = [
        # The first side ran 10 % faster in both runs: swapping the order cancels it.
        {"sides": {off.key: side(1100, 50), one.key: side(900, 60)}},
        {"sides": {one.key: side(990, 55), off.key: side(1000, 50)}},
    ]
    ratios = bench.side_by_side_ratios(pairs, off, one)
    assert ratios["rps_ratio"] == round(((900 / 1100) * (990 / 1000)) ** 0.5, 4)
    assert ratios["cpu_ratio"] == round((1.2 * 1.1) ** 0.5, 4)
    assert ratios["label"] == "1% / off"
    # Each side of a run logs under its own name, and so does the off-against-off check.
    assert len({off.tag, one.tag, bench.PAIR_OFF_B.tag, bench.TRACING_OFF.tag}) == 4


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
